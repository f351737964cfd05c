import csv

from subdistill.demo import DEMO_METHODS, run_demo


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
