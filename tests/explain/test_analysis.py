import math

import pytest
import torch
import yaml
from torch import nn

from subdistill.atomic import write_csv
from subdistill.cli import main
from subdistill.explain.analysis import (
    TEACHER,
    agreement_rows,
    paired_differences,
    shared_scale_auc,
    summarize,
)
from subdistill.explain.canonizers import canonizer_for
from subdistill.models import create_model, save_weights


class PatchReader(nn.Module):
    """Two-class linear model on 4×4 single-channel images whose evidence is pixel (0, 0)."""

    def forward(self, x):
        evidence = x[:, 0, 0, 0] * 3.0 + x[:, 0].mean(dim=(1, 2)) * 0.1
        return torch.stack([evidence, -evidence], dim=1)


def test_shared_scale_auc():
    gaps = torch.tensor([[2.0, 1.0, 0.0], [0.1, 0.1, 0.1], [-1.0, 0.0, 0.0]])
    auc = shared_scale_auc(gaps)
    base = (2.0 + 0.1) / 2
    assert auc[0].item() == pytest.approx(1.0 / base) and auc[1].item() == pytest.approx(0.1 / base)
    assert math.isnan(auc[2].item())


def test_agreement_rows_of_identical_models():
    torch.manual_seed(0)
    images = torch.rand(3, 1, 4, 4) + 0.5
    labels = torch.zeros(3, dtype=torch.long)
    model = PatchReader()
    maps = {TEACHER: torch.rand(3, 4, 4), "same": None}
    maps["same"] = maps[TEACHER].clone()
    rows = agreement_rows({TEACHER: model, "same": model}, maps, images, labels, "test", patch=1)
    same = [r for r in rows if r["model"] == "same"]
    assert all(r["pearson"] == pytest.approx(1.0) and r["cosine"] == pytest.approx(1.0) for r in same)
    assert all(r["auc_own_order"] == pytest.approx(r["auc_teacher_order"]) for r in same)
    summary = summarize(rows)
    assert {s["model"] for s in summary} == {TEACHER, "same"}
    assert all(s["pearson_n"] == 3 for s in summary)


def test_paired_differences_pair_the_images():
    r = {("ref", 0): 0.9, ("ref", 1): 0.2, ("ref", 2): 0.5,
         ("other", 0): 0.7, ("other", 1): 0.1, ("other", 2): float("nan"),
         (TEACHER, 0): 1.0, (TEACHER, 1): 1.0, (TEACHER, 2): 1.0}
    rows = [{"attribution": "lrp", "model": m, "image": i, "pearson": v} for (m, i), v in r.items()]
    rows.append({"attribution": "ig", "model": "other", "image": 0, "pearson": 0.3})  # no ref
    (entry,) = paired_differences(rows, "ref")
    assert (entry["attribution"], entry["model"], entry["n"]) == ("lrp", "other", 2)
    assert entry["mean"] == pytest.approx(0.15)  # (0.2 + 0.1) / 2; image 2 is not finite
    assert entry["se"] == pytest.approx(math.sqrt(0.005) / math.sqrt(2))


def test_explain_command_writes_figures_and_tables(tmp_path, capsys):
    teacher_args, student_args = {"depth": 8, "widths": [8, 16, 16]}, {"depth": 8, "widths": [4, 8, 8]}
    save_weights(create_model("cifar_resnet", 10, 1, **teacher_args), tmp_path / "t.safetensors")
    save_weights(create_model("cifar_resnet", 4, 1, **student_args), tmp_path / "s.safetensors")
    config = {"teacher": {"name": "cifar_resnet", "args": teacher_args,
                          "weights": str(tmp_path / "t.safetensors")},
              "student": {"name": "cifar_resnet", "args": student_args},
              "students": {"random": str(tmp_path / "s.safetensors")},
              "data": {"dataset": "digits", "subtask": "confusable"},
              "attributions": ["lrp", "ig"], "images": 3, "out_dir": str(tmp_path / "out")}
    path = tmp_path / "explain.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["explain", str(path)]) == 0
    out = tmp_path / "out"
    for name in ("heatmaps_lrp.png", "heatmaps_ig.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    text = (out / "summary.md").read_text()
    assert "| lrp | teacher | 1.000 ± 0.000 | 1.000 ± 0.000" in text and "| ig | random |" in text
    assert len((out / "per_image.csv").read_text().splitlines()) == 1 + 2 * 2 * 3


canonized: list[str] = []


def teacher_canonizer(model, example):
    """A user's LRP canonizer, named in the explain config: records the model it serves."""
    canonized.append(type(model).__name__)
    return canonizer_for(model, example)


def test_explain_gives_lrp_the_configured_canonizer(tmp_path, capsys):
    args = {"depth": 8, "widths": [4, 8, 8]}
    save_weights(create_model("cifar_resnet", 10, 1, **args), tmp_path / "t.safetensors")
    save_weights(create_model("mobile_student", 4, 1), tmp_path / "s.safetensors")
    config = {"teacher": {"name": "cifar_resnet", "args": args,
                          "weights": str(tmp_path / "t.safetensors")},
              "student": {"name": "mobile_student"},
              "students": {"random": str(tmp_path / "s.safetensors")},
              "canonizer": {"teacher": f"{__name__}:teacher_canonizer"},
              "data": {"dataset": "digits", "subtask": "confusable"},
              "attributions": ["lrp"], "images": 2, "out_dir": str(tmp_path / "out")}
    path = tmp_path / "explain.yaml"
    path.write_text(yaml.safe_dump(config))
    canonized.clear()
    assert main(["explain", str(path)]) == 0
    assert canonized == ["CifarResNet"]  # the teacher's; the student keeps the built-in one
    config["canonizer"] = {"students": "x:y"}
    path.write_text(yaml.safe_dump(config))
    assert main(["explain", str(path)]) == 2
    assert "canonizer: the keys are teacher and student, got ['students']" in capsys.readouterr().err
    config["canonizer"] = {"student": f"{__name__}:no_such"}
    path.write_text(yaml.safe_dump(config))
    assert main(["check", str(path)]) == 2
    assert "has no attribute 'no_such'" in capsys.readouterr().err


def test_explain_takes_its_students_from_a_benchmark(tmp_path, capsys):
    teacher_args, student_args = {"depth": 8, "widths": [8, 16, 16]}, {"depth": 8, "widths": [4, 8, 8]}
    save_weights(create_model("cifar_resnet", 10, 1, **teacher_args), tmp_path / "t.safetensors")
    bench = tmp_path / "bench"
    rows = []
    for method, rho in (("kd", 0.8), ("subdistill", 0.8), ("fitnet", 0.1)):
        run = bench / "final" / "confusable" / method / f"rho{rho:g}" / "seed0"
        run.mkdir(parents=True)
        save_weights(create_model("cifar_resnet", 4, 1, **student_args),
                     run / "model_best.safetensors")
        rows.append({"stage": "final", "subtask": "confusable", "method": method, "rho": rho,
                     "seed": 0, "run_dir": str(run.relative_to(bench))})
    write_csv(bench / "results.csv", rows)
    models = {"teacher": {"name": "cifar_resnet", "args": teacher_args,
                          "weights": str(tmp_path / "t.safetensors")},
              "student": {"name": "cifar_resnet", "args": student_args}}
    (bench / "bench.yaml").write_text(yaml.safe_dump(models))
    config = {**models, "bench": str(bench), "bench_seed": 0,
              "data": {"dataset": "digits", "subtask": "confusable", "rho": 0.8},
              "attributions": ["ig"], "images": 2, "out_dir": str(tmp_path / "out")}
    path = tmp_path / "explain.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["explain", str(path)]) == 0
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| ig | kd |" in text and "| ig | subdistill |" in text
    assert "fitnet" not in text  # another rho
    assert "r of subdistill minus r of the other student" in text
    assert text.split("Paired differences")[1].count("| ig | kd | ") == 1

    config["bench_seed"] = 1
    path.write_text(yaml.safe_dump(config))
    assert main(["explain", str(path)]) == 2
    assert "no finished final run" in capsys.readouterr().err

    config["bench_seed"] = 0
    config["student"] = {"name": "cifar_resnet", "args": {"depth": 8, "widths": [8, 8, 8]}}
    path.write_text(yaml.safe_dump(config))
    assert main(["explain", str(path)]) == 2
    assert "student.args" in capsys.readouterr().err


def test_grid_captions_name_each_prediction_and_the_students_agreement(tmp_path):
    from torch import nn

    from subdistill.explain.figure import heatmap_grid
    from subdistill.explain.run import grid_captions

    class Fixed(nn.Module):  # predicts class 1 for every image
        def forward(self, x):
            return torch.tensor([[0.0, 1.0]]).repeat(len(x), 1)

    images = torch.randn(2, 1, 8, 8)
    rows = [{"attribution": "lrp", "model": "kd", "image": i, "pearson": r}
            for i, r in enumerate((0.5, -0.25))]
    captions = grid_captions({TEACHER: Fixed(), "kd": Fixed()}, images, rows, "lrp", ["cat", "dog"])
    assert captions == {TEACHER: ["pred: dog", "pred: dog"],
                        "kd": ["pred: dog, r 0.50", "pred: dog, r -0.25"]}
    maps = {TEACHER: torch.randn(2, 8, 8), "kd": torch.randn(2, 8, 8)}
    heatmap_grid(tmp_path / "grid.png", images, maps, [0.5], [0.25], truths=["cat", "dog"],
                 captions=captions)
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
