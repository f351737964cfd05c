import csv
import json

import pytest
import yaml

from subdistill.bench import BenchConfig
from subdistill.cli import main
from subdistill.errors import ConfigError
from subdistill.models import create_model, save_weights

TEACHER_ARGS = {"depth": 8, "widths": [8, 16, 16]}


@pytest.fixture
def bench_file(tmp_path):
    weights = tmp_path / "teacher.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **TEACHER_ARGS), weights)
    config = {
        "teacher": {"name": "cifar_resnet", "args": TEACHER_ARGS, "weights": str(weights)},
        "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 8, 8]}},
        "data": {"dataset": "digits"},
        "pairs": {"layer3": "layer3"},
        "train": {"epochs": 1, "batch_size": 64, "progress": False,
                  "teacher_cache": str(tmp_path / "cache")},
        "grid": {"methods": ["subdistill", "kd"], "subtasks": ["confusable"], "rhos": [0.8, 0.2],
                 "seeds": [0, 1], "lambdas": [1.0, 10.0], "epochs": {0.2: 2}},
        "out_dir": str(tmp_path / "bench"),
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _rows(out):
    with open(out / "results.csv") as handle:
        return list(csv.DictReader(handle))


def _stamps(out):
    return {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}


def test_grid_runs_reports_and_resumes_without_rerunning(bench_file, capsys):
    out = bench_file.parent / "bench"
    assert main(["bench", str(bench_file)]) == 0
    rows = _rows(out)
    select = [r for r in rows if r["stage"] == "select"]
    final = [r for r in rows if r["stage"] == "final"]
    assert len(select) == 2 and len(final) == 2 * 2 * 2
    # the λ candidates and the final runs of one (subtask, rho, seed) share one basis fit
    shared = sorted(p.relative_to(out) for p in out.rglob("bases.safetensors"))
    assert all(p.parts[0] == "bases" for p in shared) and len(shared) == len(
        {(r["subtask"], r["rho"], r["seed"]) for r in rows if r["method"] == "subdistill"})
    assert {r["lambda"] for r in final if r["method"] == "kd"} == {""}
    chosen = {r["lambda"] for r in final if r["method"] == "subdistill"}
    assert len(chosen) == 1
    best = max(select, key=lambda r: (float(r["best_val_accuracy"]), -float(r["lambda"])))
    assert chosen == {best["lambda"]}
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    summary = (out / "summary.md").read_text()
    assert "confusable, rho = 0.8" in summary and "confusable, rho = 0.2" in summary
    assert "**" in summary and "teacher on the subtask" in summary
    assert "λ selection: confusable (validation accuracy, rho 0.8, seed 0)" in summary
    assert f"**{float(best['best_val_accuracy']):.4f}**" in summary  # the choice and its score
    weights = [json.loads(r["layer_weights"]) for r in final if r["method"] == "subdistill"]
    assert all(set(w) == {"layer/layer3"} and w["layer/layer3"] > 0 for w in weights)
    assert "raw layer weights of the chosen run" in summary
    assert "### confusable, rho = 0.8: test accuracy per class" in summary
    assert "(rows: true class, columns: prediction; test images summed over 2 seeds)" in summary
    for row in final:
        per_class, confusion = (json.loads(row[k]) for k in ("test_per_class_accuracy",
                                                              "test_confusion"))
        assert len(per_class) == len(confusion) >= 2
        assert sum(map(sum, confusion)) > 0
    for name in ("confusable_bars.png", "confusable_rho.png", "confusable_latency.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    deployment = json.loads((out / "deployment.json").read_text())["figures"]
    assert "## Deployment" in summary
    assert deployment["teacher"]["macs"] > deployment["student"]["macs"] > 0
    assert len(list(out.rglob("summary.json"))) == 2 + 8 - 1  # one final run reuses a selection run
    epochs = {(p.parent.parent.name, json.loads(p.read_text())["epochs"])
              for p in out.glob("final/*/*/*/*/summary.json")}
    assert epochs == {("rho0.8", 1), ("rho0.2", 2)}  # grid.epochs sets rho 0.2's epochs
    # the teacher's outputs are computed once per (rho, seed) and per layer set (kd: none)
    caches = [p for p in (bench_file.parent / "cache").iterdir()
              if not p.name.startswith(".") and p.name != "accuracy"]
    assert len(caches) == 2 * 2 * 2
    # the teacher is scored once per validation split (one per seed) and once on the test set
    assert len(list((bench_file.parent / "cache" / "accuracy").glob("*.json"))) == 2 + 1

    # an interrupted grid: one cell lost its summary (it was killed mid-run); a rerun trains only it
    before = _stamps(out)
    lost = out / "final" / "confusable" / "kd" / "rho0.2" / "seed1" / "summary.json"
    lost.unlink()
    assert main(["bench", str(bench_file)]) == 0
    after = _stamps(out)
    assert lost in after
    assert {p: t for p, t in after.items() if p != lost} == {p: t for p, t in before.items() if p != lost}

    def timeless(table):  # the resumed process timed its own (empty) preparation
        return [{k: v for k, v in r.items() if k != "prepare_seconds"} for r in table]

    assert timeless(_rows(out)) == timeless(rows)


def test_a_wrong_teacher_path_fails_before_data_and_a_failed_start_blocks_nothing(
        bench_file, monkeypatch, capsys):
    import subdistill.bench.runner as runner

    config = yaml.safe_load(bench_file.read_text())
    good = config["teacher"]["weights"]
    config["teacher"]["weights"] = good + ".missing"
    bench_file.write_text(yaml.safe_dump(config))

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the teacher path was checked")

    with monkeypatch.context() as patch:
        patch.setattr(runner, "load_full_data", no_data)
        assert main(["bench", str(bench_file)]) == 2
    assert "teacher.weights" in capsys.readouterr().err
    # an attempt that fails inside its first cell, before training, then a changed config
    def broken(*args, **kwargs):
        raise ConfigError("failed before training")

    config["teacher"]["weights"] = good
    bench_file.write_text(yaml.safe_dump(config))
    with monkeypatch.context() as patch:
        patch.setattr(runner, "run_distill", broken)
        assert main(["bench", str(bench_file)]) == 2
    config["train"]["lr"] = 0.003
    bench_file.write_text(yaml.safe_dump(config))
    assert main(["bench", str(bench_file)]) == 0  # not "was run with other settings"
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("9 trainings (8 final runs, 1 more for the λ selection); 9 trained now")
    assert main(["bench", str(bench_file)]) == 0
    assert "0 trained now, 0 taken from the ledger" in capsys.readouterr().out


def test_changed_grid_settings_are_refused(bench_file, capsys):
    assert main(["bench", str(bench_file)]) == 0
    capsys.readouterr()
    config = yaml.safe_load(bench_file.read_text())
    config["train"]["lr"] = 0.5
    bench_file.write_text(yaml.safe_dump(config))
    assert main(["bench", str(bench_file)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_agreement_columns_join_the_tables_and_are_reused(bench_file):
    config = yaml.safe_load(bench_file.read_text())
    config["grid"].update(rhos=[0.8], seeds=[0], lambdas=[1.0], epochs={})
    config["agreement"] = {"attributions": ["ig", "lrp"], "images": 3, "rho": 0.8, "seed": 0}
    bench_file.write_text(yaml.safe_dump(config))
    out = bench_file.parent / "bench"
    assert main(["bench", str(bench_file)]) == 0
    summary = (out / "summary.md").read_text()
    assert "| heatmap r (ig) | heatmap r (lrp) |" in summary
    rows = [line for line in summary.splitlines()
            if line.startswith(("| kd |", "| subdistill |")) and "±" in line]
    assert len(rows) == 2
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(-1.0 <= float(c) <= 1.0 for c in cells[-2:])
    done = out / "agreement" / "confusable" / "agreement.json"
    stamp = done.stat().st_mtime_ns
    assert main(["bench", str(bench_file)]) == 0
    assert done.stat().st_mtime_ns == stamp  # finished explanations are not recomputed
    assert (out / "summary.md").read_text() == summary


def test_agreement_needs_a_rho_and_seed_of_the_grid(bench_file, capsys):
    config = yaml.safe_load(bench_file.read_text())
    config["agreement"] = {"attributions": ["ig"], "rho": 0.5}
    bench_file.write_text(yaml.safe_dump(config))
    assert main(["bench", str(bench_file)]) == 2
    assert "agreement: rho 0.5" in capsys.readouterr().err
    config["agreement"] = {"attributions": ["gradcam"]}
    bench_file.write_text(yaml.safe_dump(config))
    assert main(["bench", str(bench_file)]) == 2
    assert "unknown attribution method 'gradcam'" in capsys.readouterr().err


def test_a_grid_split_by_subtask_is_assembled_by_the_whole_grid(bench_file):
    config = yaml.safe_load(bench_file.read_text())
    config["grid"].update(methods=["kd"], subtasks=["confusable", "low"], rhos=[0.8], seeds=[0],
                          epochs={})
    bench_file.write_text(yaml.safe_dump(config))
    out = bench_file.parent / "bench"
    assert main(["bench", str(bench_file), "--set", "grid.subtasks=[confusable]"]) == 0
    share = _stamps(out)
    assert len(share) == 1 and {r["subtask"] for r in _rows(out)} == {"confusable"}
    assert main(["bench", str(bench_file)]) == 0
    assert {p: t for p, t in _stamps(out).items() if p in share} == share  # not rerun
    assert {r["subtask"] for r in _rows(out)} == {"confusable", "low"}
    assert "### low, rho = 0.8" in (out / "summary.md").read_text()


def _with_ledger(bench_file):
    config = yaml.safe_load(bench_file.read_text())
    config["ledger"] = str(bench_file.parent / "ledger.csv")
    bench_file.write_text(yaml.safe_dump(config))
    return bench_file.parent / "ledger.csv"


def test_ledger_lets_a_fresh_machine_skip_finished_cells_and_rebuild_the_report(
        bench_file, monkeypatch, capsys):
    import shutil

    import subdistill.bench.runner as runner

    ledger = _with_ledger(bench_file)
    config = yaml.safe_load(bench_file.read_text())
    config["train"]["test_curve"] = True
    bench_file.write_text(yaml.safe_dump(config))
    out = bench_file.parent / "bench"
    assert main(["bench", str(bench_file)]) == 0
    rows = _rows(out)
    with open(ledger) as handle:
        recorded = list(csv.DictReader(handle))
    assert len(recorded) == 2 + 8 - 1  # one final run is a selection run
    for row in recorded:
        assert len(row["fingerprint"]) > 8 and row["plateaued"] in ("yes", "no", "")
        curve, test_curve = json.loads(row["curve"]), json.loads(row["test_curve"])
        assert curve and all(len(point) == 3 for point in curve)
        assert [p[:2] for p in test_curve] == [p[:2] for p in curve]  # same epochs and times
        assert all(0 <= p[2] <= 1 for p in test_curve)
        assert int(row["epochs_to_95"]) >= 1 and float(row["prepare_seconds"]) >= 0
    summary = (out / "summary.md").read_text()
    assert "| / teacher |" in summary and "epochs to 95 %" in summary
    assert "within one standard error of the best mean" in summary
    for name in ("confusable_time.png", "confusable_time_test.png", "confusable_bars.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    # a fresh machine: no run directory, no cache; nothing is trained again
    shutil.rmtree(out)
    shutil.rmtree(bench_file.parent / "cache")

    def no_training(*args, **kwargs):
        raise AssertionError("a cell recorded in the ledger was trained again")

    monkeypatch.setattr(runner, "run_distill", no_training)
    monkeypatch.setattr(runner, "measure_deployment", lambda *args: None)
    assert main(["bench", str(bench_file)]) == 0
    assert [r["fingerprint"] for r in _rows(out)] == [r["fingerprint"] for r in rows]

    # the report from the ledger alone, with no data loaded
    shutil.rmtree(out)
    monkeypatch.setattr(runner, "load_full_data", no_training)
    assert main(["bench", str(bench_file), "--report-only"]) == 0
    rebuilt = (out / "summary.md").read_text()
    assert rebuilt.split("## Deployment")[0] == summary.split("## Deployment")[0]

    # a ledger that lacks a cell: the report says which
    kept = [r for r in recorded if not (r["method"] == "kd" and r["seed"] == "1")]
    with open(ledger, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(recorded[0]))
        writer.writeheader()
        writer.writerows(kept)
    assert main(["bench", str(bench_file), "--report-only"]) == 0
    summary = (out / "summary.md").read_text()
    assert "2 cells of the grid are not in the ledger yet" in summary
    assert "final confusable kd rho 0.8 seed 1" in summary


def test_ledger_rows_of_other_settings_are_not_reused(bench_file, capsys):
    ledger = _with_ledger(bench_file)
    assert main(["bench", str(bench_file)]) == 0
    with open(ledger) as handle:
        first = {r["fingerprint"] for r in csv.DictReader(handle)}
    config = yaml.safe_load(bench_file.read_text())
    config["train"]["lr"] = 0.5
    config["out_dir"] = str(bench_file.parent / "other")
    bench_file.write_text(yaml.safe_dump(config))
    assert main(["bench", str(bench_file), "--report-only"]) == 2
    assert "no final run of this grid's settings" in capsys.readouterr().err
    assert main(["bench", str(bench_file)]) == 0  # runs every cell again, then records them
    with open(ledger) as handle:
        second = {r["fingerprint"] for r in csv.DictReader(handle)}
    assert len(second) == 2 + 8 - 1 and not first & second  # every row replaced


def test_bold_marks_every_method_within_one_standard_error_of_the_best():
    from subdistill.bench.report import format_report

    def rows(method, values):
        return [{"stage": "final", "subtask": "s", "method": method, "rho": 0.8, "seed": i,
                 "test_accuracy": v, "teacher_test_accuracy": 0.9} for i, v in enumerate(values)]

    # best mean 0.80 (std 0.03, SE 0.017): 0.79 is within, 0.70 is not
    table = format_report(rows("a", [0.77, 0.80, 0.83]) + rows("b", [0.79, 0.79, 0.79])
                          + rows("c", [0.70, 0.70, 0.70]), {})
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()
             if line.startswith("| ") and "±" in line}
    assert "**0.8000" in lines["a"] and "**0.7900" in lines["b"] and "**" not in lines["c"]
    assert "88.9%" in lines["a"]  # the student / teacher ratio


def test_per_class_table_averages_seeds_and_sums_the_best_confusion():
    from subdistill.bench.report import format_per_class

    def row(method, seed, accuracy, shares, confusion):
        return {"stage": "final", "subtask": "s", "method": method, "rho": 0.8, "seed": seed,
                "test_accuracy": accuracy, "test_per_class_accuracy": json.dumps(shares),
                "test_confusion": json.dumps(confusion)}

    table = format_per_class([
        row("a", 0, 0.75, {"cat": 1.0, "dog": 0.5}, [[2, 0], [1, 1]]),
        row("a", 1, 0.75, {"cat": 0.5, "dog": 1.0}, [[1, 1], [0, 2]]),
        row("b", 0, 0.5, {"cat": 0.5, "dog": 0.5}, [[1, 1], [1, 1]])])
    assert "| a | 0.750 | 0.750 |" in table and "| b | 0.500 | 0.500 |" in table
    assert "Confusion matrix of a" in table and "summed over 2 seeds" in table
    assert "| cat | 3 | 1 |" in table and "| dog | 1 | 3 |" in table
    assert format_per_class([{k: v for k, v in r.items() if k != "test_per_class_accuracy"}
                             for r in [row("a", 0, 0.7, {}, [])]]) == ""


def test_cell_fingerprint_ignores_where_files_lie_but_not_the_teacher(bench_file, tmp_path):
    import shutil

    from subdistill.bench.grid import final_cells
    from subdistill.bench.runner import cell_fingerprint
    from subdistill.config import load_config

    config = load_config(bench_file, cls=BenchConfig)
    cell = final_cells(config.grid, {("confusable", "subdistill"): 1.0})[0]
    out = tmp_path / "bench"
    moved = tmp_path / "moved.safetensors"
    shutil.copy(config.teacher.weights, moved)
    elsewhere = load_config(bench_file, [f"teacher.weights={moved}", "data.root=/elsewhere"],
                            cls=BenchConfig)
    assert cell_fingerprint(elsewhere, cell, out) == cell_fingerprint(config, cell, out)
    save_weights(create_model("cifar_resnet", 10, 1, **TEACHER_ARGS), moved)  # other weights
    assert cell_fingerprint(elsewhere, cell, out) != cell_fingerprint(config, cell, out)


def test_a_named_custom_subtask_labels_folders_rows_and_tables(bench_file):
    config = yaml.safe_load(bench_file.read_text())
    config["grid"].update(methods=["kd"], subtasks=[{"name": "loops", "classes": [0, 6, 8, 9]}],
                          rhos=[0.8], seeds=[0], epochs={})
    bench_file.write_text(yaml.safe_dump(config))
    out = bench_file.parent / "bench"
    assert main(["bench", str(bench_file)]) == 0
    assert {r["subtask"] for r in _rows(out)} == {"loops"}
    assert (out / "final" / "loops" / "kd" / "rho0.8" / "seed0" / "summary.json").is_file()
    summary = (out / "summary.md").read_text()
    assert "### loops, rho = 0.8" in summary and (out / "loops_bars.png").is_file()


def test_a_fresh_machine_explains_the_students_kept_beside_the_ledger(
        bench_file, monkeypatch, caplog):
    import logging
    import shutil

    import subdistill.bench.runner as runner

    _with_ledger(bench_file)
    config = yaml.safe_load(bench_file.read_text())
    config["grid"].update(rhos=[0.8], seeds=[0], lambdas=[1.0], epochs={})
    config["agreement"] = {"attributions": ["ig"], "images": 3, "rho": 0.8, "seed": 0}
    bench_file.write_text(yaml.safe_dump(config))
    out = bench_file.parent / "bench"
    assert main(["bench", str(bench_file)]) == 0
    tables = (out / "summary.md").read_text().split("## Deployment")[0]
    kept = bench_file.parent / "ledger-students"
    explained = {r["run_dir"] for r in _rows(out) if r["stage"] == "final"}
    weights = {str(p.parent.relative_to(kept)): p.read_bytes()
               for p in kept.rglob("model_best.safetensors")}
    assert set(weights) == explained  # kd's final run, subdistill's reused selection run
    assert all(weights[d] == (out / d / "model_best.safetensors").read_bytes() for d in weights)

    # a fresh machine: the kept students are explained, nothing is trained
    shutil.rmtree(out)
    shutil.rmtree(bench_file.parent / "cache")

    def no_training(*args, **kwargs):
        raise AssertionError("a cell recorded in the ledger was trained again")

    monkeypatch.setattr(runner, "run_distill", no_training)
    assert main(["bench", str(bench_file)]) == 0
    assert (out / "summary.md").read_text().split("## Deployment")[0] == tables
    assert not any(out.rglob("model_best.safetensors"))

    # nothing kept either: the explained students are trained again, the same ones
    shutil.rmtree(out)
    shutil.rmtree(kept)
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="subdistill.bench.runner"):
        assert main(["bench", str(bench_file)]) == 0
    assert sum("training it again" in r.getMessage() for r in caplog.records) == 2
    assert not any(r.levelname == "WARNING" for r in caplog.records)  # the same accuracy
    assert {str(p.parent.relative_to(kept)): p.read_bytes()
            for p in kept.rglob("model_best.safetensors")} == weights
    assert (out / "summary.md").read_text().split("## Deployment")[0] == tables

    # other settings: new students replace the kept ones
    config["train"]["lr"] = 0.5
    config["out_dir"] = str(bench_file.parent / "other")
    bench_file.write_text(yaml.safe_dump(config))
    assert main(["bench", str(bench_file)]) == 0
    stamps = {str(p.parent.relative_to(kept)): json.loads(p.read_text())["config_hash"]
              for p in kept.rglob("cell.json")}
    assert stamps == {r["run_dir"]: r["fingerprint"] for r in _rows(bench_file.parent / "other")
                      if r["stage"] == "final"}
