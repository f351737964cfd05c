import csv

import yaml

from subdistill.cli import main
from subdistill.models import create_model, save_weights


def _config(tmp_path, pairs):
    args = {"depth": 8, "widths": [8, 8, 8]}
    weights = tmp_path / "teacher.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **args), weights)
    config = {"teacher": {"name": "cifar_resnet", "args": args, "weights": str(weights)},
              "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 4, 8]}},
              "data": {"dataset": "digits", "subtask": "confusable"}, "pairs": pairs,
              "train": {"epochs": 1, "batch_size": 64, "progress": False},
              "run_dir": str(tmp_path / "run")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_analyze_writes_curves_a_table_and_plots(tmp_path, capsys):
    path = _config(tmp_path, {"layer2": "layer2", "layer3": "layer3"})
    assert main(["analyze", str(path), "--images", "60", "--bases", "subdistill,pca"]) == 0
    report = capsys.readouterr().out
    assert "| layer3 | 8 |" in report
    assert "Validation images: 60 (" in report and " 0," not in report  # every class sampled
    out = tmp_path / "run" / "analysis"
    with open(out / "analysis.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["layer"], r["basis"]) for r in rows} == {
        (layer, basis) for layer in ("layer2", "layer3") for basis in ("subdistill", "pca")}
    assert [r["k"] for r in rows if r["layer"] == "layer3" and r["basis"] == "pca"] == ["1", "2", "4", "8"]
    assert (out / "layer3.png").read_bytes()[:4] == b"\x89PNG" and (out / "analysis.md").is_file()


def test_pairs_auto_is_resolved_checked_and_recorded(tmp_path, capsys):
    path = _config(tmp_path, "auto")
    assert main(["check", str(path)]) == 0
    assert "pairs: auto -> {'layer1': 'layer1', 'layer2': 'layer2', 'layer3': 'layer3'}" in \
        capsys.readouterr().out
    assert main(["distill", str(path)]) == 0
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["pairs"] == {"layer1": "layer1", "layer2": "layer2", "layer3": "layer3"}
    path.write_text(path.read_text().replace("pairs: auto", "pairs: automatic"))
    assert main(["check", str(path)]) == 2
