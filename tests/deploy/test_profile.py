import json

from subdistill.cli import main
from subdistill.deploy.expert import build_expert, load_spec


def test_profile_measures_teacher_and_student(tiny_run, capsys):
    assert main(["profile", str(tiny_run), "--repeats", "5", "--batch", "8"]) == 0
    assert "| student | onnx int8 |" in capsys.readouterr().out
    record = json.loads((tiny_run / "profile.json").read_text())
    rows = {(r["model"], r["runtime"]): r for r in record["rows"]}
    assert set(rows) == {("teacher", "pytorch"), ("student", "pytorch"), ("student", "onnx fp32"),
                         ("student", "onnx int8")}
    student = build_expert(load_spec(tiny_run))
    assert rows[("student", "pytorch")]["parameters"] == sum(p.numel() for p in student.parameters())
    for row in rows.values():
        assert row["macs"] > 0 and row["file_bytes"] > 0 and row["latency_ms_median"] > 0
        assert row["latency_ms_p90"] >= row["latency_ms_median"] and row["images_per_s_batch8"] > 0
        assert 0 <= row["accuracy"] <= 1
    assert rows[("teacher", "pytorch")]["macs"] > rows[("student", "pytorch")]["macs"]
    assert (tiny_run / "profile.md").is_file()
