import csv
from urllib.error import URLError

import pytest
import torchvision.datasets.utils as tv_utils

from subdistill.cli import main
from subdistill.demo import DEMO_METHODS, run_demo
from subdistill.errors import ConfigError


def test_demo_writes_table_and_plot(tmp_path, capsys):
    rows = run_demo(out_dir=tmp_path, epochs_scale=0.05, progress=False)
    assert [r["method"] for r in rows[2:]] == list(DEMO_METHODS)
    assert rows[2]["parameters"] < rows[0]["parameters"] / 10
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    assert rows[0]["test_accuracy"] > 0.5  # even two teacher epochs learn the digits
    with open(tmp_path / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "| student | subdistill |" in capsys.readouterr().out
    assert (tmp_path / "subdistill" / "bases.safetensors").is_file()


def test_demo_reads_the_public_datasets(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "out")
    assert main(["demo", "--dataset", "cifar10", "--data-root", str(tmp_path), "--out", out]) == 2
    assert "--download for the demo" in capsys.readouterr().err

    def offline(*args, **kwargs):
        raise URLError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)  # --download reaches torchvision
    assert main(["demo", "--dataset", "cifar10", "--download", "--data-root", str(tmp_path),
                 "--out", out]) == 2
    assert "cannot download CIFAR10" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="no dataset 'cifar'"):
        run_demo("cifar", out_dir=out)
