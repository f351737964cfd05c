import json

from subdistill.bench.students import (
    finished_fingerprint,
    keep_student,
    kept_fingerprint,
    kept_students_dir,
)


def _run(tmp_path, content=b"weights"):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "model_best.safetensors").write_bytes(content)
    (run / "cell.json").write_text(json.dumps({"config_hash": "abc"}))
    return run


def test_kept_students_lie_in_a_folder_named_after_the_ledger(tmp_path):
    assert kept_students_dir(tmp_path / "ledger-cifar10.csv") == tmp_path / "ledger-cifar10-students"


def test_a_kept_student_carries_its_fingerprint_and_is_replaced_when_it_changes(tmp_path):
    run, kept = _run(tmp_path), tmp_path / "kept" / "final" / "kd"
    assert kept_fingerprint(kept) is None
    keep_student(run, kept, "abc")
    assert kept_fingerprint(kept) == "abc"
    assert (kept / "model_best.safetensors").read_bytes() == b"weights"
    _run(tmp_path, b"other")
    keep_student(run, kept, "def")
    assert kept_fingerprint(kept) == "def"
    assert (kept / "model_best.safetensors").read_bytes() == b"other"
    assert sorted(p.name for p in kept.iterdir()) == ["cell.json", "model_best.safetensors"]


def test_weights_without_a_stamp_are_not_a_kept_student(tmp_path):
    run = _run(tmp_path)
    (run / "cell.json").unlink()
    assert kept_fingerprint(run) is None


def test_an_interrupted_run_is_not_a_finished_student(tmp_path):
    run = _run(tmp_path)  # best weights of its first epochs, no summary yet
    assert kept_fingerprint(run) == "abc" and finished_fingerprint(run) is None
    (run / "summary.json").write_text("{}")
    assert finished_fingerprint(run) == "abc"


def test_a_copy_killed_midway_leaves_nothing_taken_for_a_kept_student(tmp_path, monkeypatch):
    import shutil

    import pytest

    run, kept = _run(tmp_path), tmp_path / "kept"

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", killed)
    with pytest.raises(KeyboardInterrupt):
        keep_student(run, kept, "abc")
    assert kept_fingerprint(kept) is None and not list(kept.glob("*.tmp"))
