"""Smoke tests of the benchmark scripts on tiny sizes: output fields and basis agreement.

No timing is asserted: these only check that the comparisons are computed correctly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import lambda_sweep  # noqa: E402
import plateau_check  # noqa: E402
import pretraining  # noqa: E402
import step_time  # noqa: E402
import student_throughput  # noqa: E402
import subspace_fit  # noqa: E402
import teacher_cache  # noqa: E402
import teacher_tta  # noqa: E402

MACHINE_FIELDS = {"platform", "cpu_count", "torch", "torch_threads", "date"}


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The scripts set torch's thread count for timing; later tests must not inherit it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_subspace_fit_bases_agree_across_approaches(tmp_path):
    out = tmp_path / "fit.json"
    result = subspace_fit.main([64], teacher="resnet8", repeats=1, batch_size=32, threads=1,
                               in_process=True, out=out, verbose=False)
    saved = json.loads(out.read_text())
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    assert MACHINE_FIELDS <= set(saved["machine"])
    assert {s["approach"] for s in saved["summary"]} == set(subspace_fit.APPROACHES)
    for row in saved["summary"]:
        assert row["n"] == 64 and row["seconds_median"] > 0 and row["cpu_seconds_median"] > 0
        assert row["peak_rss_growth_mb_median"] is not None
    assert {a["approach"] for a in saved["agreement"]} == {"stream_bf16", "per_layer",
                                                            "store_all", "per_layer_ref"}
    for entry in saved["agreement"]:
        assert set(entry["layers"]) == set(saved["config"]["layers"])
        if entry["approach"] == "stream_bf16":  # another precision: close, not equal
            assert all(v["projector_max_abs_diff"] < 0.5 for v in entry["layers"].values())
            continue
        for layer in entry["layers"].values():
            assert layer["max_abs_u_diff"] < 1e-8
            assert layer["projector_max_abs_diff"] < 1e-8
            assert layer["eigenvalue_max_rel_diff"] < 1e-8
    assert "| stream | 64 |" in subspace_fit.format_table(saved)


def test_subspace_fit_worker_runs_in_a_subprocess(tmp_path):
    spec = dict(approach="stream", n=16, teacher_name="resnet8", batch_size=16, threads=1,
                save_bases=str(tmp_path / "b.pt"))
    row = subspace_fit._worker(spec, in_process=False)
    assert row["approach"] == "stream" and row["n"] == 16
    assert row["seconds"] > 0 and row["peak_rss_growth_mb"] is not None
    assert (tmp_path / "b.pt").is_file()


def test_compare_bases_is_sign_invariant():
    import torch
    u = torch.linalg.qr(torch.randn(6, 3, dtype=torch.float64))[0]
    ref = {"l": {"U": u, "eigenvalues": torch.arange(6.0), "energy": 1.0}}
    flipped = {"l": {"U": u * torch.tensor([1.0, -1.0, 1.0]), "eigenvalues": torch.arange(6.0),
                     "energy": 1.0}}
    diff = subspace_fit.compare_bases(ref, flipped)["l"]
    assert diff["max_abs_u_diff"] == pytest.approx(0.0, abs=1e-12)
    assert diff["projector_max_abs_diff"] == pytest.approx(0.0, abs=1e-12)


def test_step_time_reports_every_method(tmp_path):
    out = tmp_path / "step.json"
    step_time.main(teacher="resnet20", batch_size=8, rounds=1, steps_per_round=3, warmup=1,
                   fit_images=16, threads=1, profile=False, breakdown_repeats=2, out=out,
                   verbose=False)
    saved = json.loads(out.read_text())
    assert MACHINE_FIELDS <= set(saved["machine"])
    assert set(saved["summary"]) == set(step_time.METHODS)
    for label, row in saved["summary"].items():
        assert row["steps"] == 3 and row["ms_median"] > 0
        assert len(saved["times_ms"][label]) == 3
    assert saved["summary"]["kd"]["ratio_to_kd"] == pytest.approx(1.0)
    parts = saved["subdistill_breakdown"]["ms_per_step"]
    assert any(name.startswith("orthogonal") for name in parts)
    assert len(saved["subdistill_breakdown"]["shapes"]) == 3


def test_step_time_on_the_cifar10_benchmark_pair(tmp_path):
    out = tmp_path / "step.json"
    step_time.main(teacher="bench-resnet18", student="bench-resnet10", batch_size=4,
                   methods=("kd", "subdistill"), rounds=1, steps_per_round=2, warmup=1,
                   fit_images=10, threads=1, profile=False, breakdown_repeats=1, out=out,
                   verbose=False)
    saved = json.loads(out.read_text())
    assert saved["config"]["pairs"] == {"layer3": "layer3", "layer4": "layer4"}
    assert len(saved["subdistill_breakdown"]["shapes"]) == 2


def test_teacher_cache_benchmark_compares_live_and_cached_epochs(tmp_path):
    out = tmp_path / "cache.json"
    teacher_cache.main(images=48, epochs=2, batch_size=16, methods=("kd", "subdistill"),
                       threads=1, out=out, verbose=False)
    saved = json.loads(out.read_text())
    assert MACHINE_FIELDS <= set(saved["machine"])
    assert saved["cache_build_s"] > 0
    assert [row["method"] for row in saved["summary"]] == ["kd", "subdistill"]
    for row in saved["summary"]:
        assert len(row["live_epochs_s"]) == len(row["cached_epochs_s"]) == 2
        assert row["speedup"] == pytest.approx(row["live_epoch_s"] / row["cached_epoch_s"])
    assert "| subdistill |" in teacher_cache.format_table(saved)


@pytest.mark.parametrize("teacher", sorted(pretraining.TEACHERS))
def test_pretraining_benchmark_times_every_approach(tmp_path, teacher):
    out = tmp_path / "pretraining.json"
    pretraining.main(teacher=teacher, images=24, repeats=2, batch_size=16, threads=1, out=out,
                     verbose=False)
    saved = json.loads(out.read_text())
    assert MACHINE_FIELDS <= set(saved["machine"])
    assert [row["approach"] for row in saved["summary"]] == list(pretraining.APPROACHES)
    assert all(len(runs) == 2 for runs in saved["timings"].values())
    cache = saved["summary"][0]
    assert cache["cpu_vs_cache"] == 1.0
    for row in saved["summary"]:
        assert row["cpu_vs_cache"] == pytest.approx(row["cpu_s"] / cache["cpu_s"])
    assert "| one_pass |" in pretraining.format_table(saved)


def test_lambda_sweep_ledger_table_and_resume(tmp_path):
    from subdistill.demo import SETTINGS
    from subdistill.models import create_model, save_weights

    weights = tmp_path / "teacher.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **SETTINGS["digits"].teacher_args), weights)
    out = tmp_path / "sweep.csv"
    argv = ["--out", str(out), "--teacher-weights", str(weights), "--methods", "fitnet,kd",
            "--seeds", "0", "--sweep", "1,10", "--epochs", "1"]
    table = lambda_sweep.main(argv)
    rows = lambda_sweep.read_ledger(out)
    assert sorted((r["teacher"], r["method"], r["setting"]) for r in rows) == sorted(
        (t, m, s) for t in ("demo", "rescaled") for m, s in
        [("fitnet", "default"), ("fitnet", "lambda=1"), ("fitnet", "lambda=10"), ("kd", "default")])
    weights_of = {(r["teacher"], r["setting"]): json.loads(r["layer_weights"]) for r in rows
                  if r["method"] == "fitnet"}
    assert weights_of[("demo", "lambda=10")] == {f"layer/layer{i}": 10.0 for i in (1, 2, 3)}
    calibrated = weights_of[("demo", "default")], weights_of[("rescaled", "default")]
    assert calibrated[1]["layer/layer2"] < calibrated[0]["layer/layer2"] / 10  # 100x larger map
    assert calibrated[1]["layer/layer1"] == pytest.approx(calibrated[0]["layer/layer1"], rel=1e-5)
    assert "| demo | fitnet |" in table and out.with_suffix(".md").is_file()
    lambda_sweep.main(argv)  # a rerun finds every run in the ledger
    assert len(lambda_sweep.read_ledger(out)) == len(rows)


def test_rescaled_teacher_predicts_the_same():
    import torch

    from subdistill.models import create_model

    torch.manual_seed(0)
    teacher = create_model("cifar_resnet", 10, 1, depth=8, widths=[8, 16, 16]).eval()
    scaled = lambda_sweep.rescaled(teacher, "layer2", "layer3", 100.0).eval()
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(scaled(x), teacher(x), rtol=1e-4, atol=1e-5)
    maps = {}
    for name, model in (("plain", teacher), ("scaled", scaled)):
        model.layer2.register_forward_hook(lambda m, a, o, n=name: maps.__setitem__(n, o))
        model(x)
    torch.testing.assert_close(maps["scaled"], 100 * maps["plain"], rtol=1e-4, atol=1e-4)


def test_student_throughput_measures_flops_and_speed():
    import torch

    from subdistill.models import create_model

    model = create_model("cifar_resnet", 4, 1, depth=8, widths=[4, 4, 8]).train()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    assert student_throughput.step_flops(model, x, y) > 0
    assert all(p.grad is None for p in model.parameters())  # the count leaves no gradients
    assert student_throughput.images_per_second(model, x, y, "bf16", True, steps=1) > 0
    assert student_throughput.peak_gflops(torch.float32, n=64, repeats=1) > 0


def test_student_throughput_times_a_trainer_epoch_from_the_cache():
    assert student_throughput.epoch_images_per_second(channels_last=True, images=64) > 0


def test_teacher_tta_scores_a_teacher_plainly_and_flip_averaged(tmp_path):
    import torch
    import yaml
    from safetensors.torch import save_file

    from subdistill.models import create_model

    args = {"depth": 8, "widths": [4, 4, 8]}
    config = tmp_path / "teacher.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "cifar_resnet", "args": args},
                                      "data": {"dataset": "digits"}}))
    torch.manual_seed(0)
    save_file(create_model("cifar_resnet", 10, 1, **args).state_dict(), str(tmp_path / "w.st"))
    result = teacher_tta.measure(str(config), str(tmp_path / "w.st"), "fp32")
    assert result["images"] > 0 and MACHINE_FIELDS <= set(result["machine"])
    assert set(result["results"]) == {"plain", "flip"}
    assert all(0.0 <= row["test_accuracy"] <= 1.0 for row in result["results"].values())

    model = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    torch.testing.assert_close(teacher_tta.FlipAveraged(model)(x),
                               0.5 * (model(x) + model(x.flip(-1))))


def test_plateau_check_pairs_each_long_run_with_the_grids_cell(tmp_path):
    from subdistill.bench.ledger import Ledger

    def row(method: str, epochs: int, test: float, seed: int = 0) -> dict:
        teacher = "" if method == "student-only" else 0.9  # the label-only run has no teacher
        curve = [[e, e * 2.0, 0.5 + e / (400 * epochs)] for e in range(epochs // 4, epochs + 1,
                                                                     epochs // 4)]
        return {"stage": "final", "subtask": "pets", "method": method, "rho": 0.8,
                "seed": seed, "lambda": "", "best_epoch": epochs, "best_val_accuracy": 0.75,
                "test_accuracy": test, "teacher_test_accuracy": teacher, "epochs": epochs,
                "seconds": 60.0 * epochs, "plateau_gain": 0.001, "plateaued": "yes",
                "curve": json.dumps(curve), "fingerprint": "f"}

    grid, long = Ledger(tmp_path / "grid.csv"), Ledger(tmp_path / "long.csv")
    for method, test in (("kd", 0.80), ("student-only", 0.78)):
        grid.record(row(method, 40, test))
    grid.record({**row("subdistill", 40, 0.82), "stage": "select", "lambda": 10.0})
    grid.record({**row("subdistill", 40, 0.5), "stage": "select", "lambda": 1.0})
    long.record(row("kd", 120, 0.83))
    long.record(row("student-only", 120, 0.81))
    long.record({**row("subdistill", 120, 0.84), "lambda": 10.0})  # the grid's run: select
    long.record(row("kd", 120, 0.83, seed=1))  # not in the grid: left out
    pairs = plateau_check.compare(Ledger(grid.path), Ledger(long.path))
    assert [(p["method"], p["seed"]) for p in pairs] == [("kd", 0), ("student-only", 0),
                                                          ("subdistill", 0)]
    assert [p["teacher"] for p in pairs] == [0.9] * 3  # the subtask's, for the label-only run too
    assert pairs[2]["grid"]["test_accuracy"] == 0.82  # the selection run of the same λ
    assert (pairs[0]["grid"]["epochs"], pairs[0]["long"]["epochs"]) == (40, 120)
    assert pairs[0]["long"]["minutes"] == pytest.approx(120.0)
    table = plateau_check.format_table({"pairs": pairs})
    assert "| pets | kd |  | 120 | 0.7500 (120) | 0.8300 | 92.2% | +0.10 pt | yes | +3.00 pt |" in table
    paths = plateau_check.draw(pairs, tmp_path, "x")
    assert [Path(p).name for p in paths] == ["x-pets-plateau.png"] and Path(paths[0]).is_file()
