import json

from subdistill.bench.students import keep_student, kept_students_dir, stamped_fingerprint


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
    assert stamped_fingerprint(kept) is None
    keep_student(run, kept, "abc")
    assert stamped_fingerprint(kept) == "abc"
    assert (kept / "model_best.safetensors").read_bytes() == b"weights"
    _run(tmp_path, b"other")
    keep_student(run, kept, "def")
    assert stamped_fingerprint(kept) == "def"
    assert (kept / "model_best.safetensors").read_bytes() == b"other"
    assert sorted(p.name for p in kept.iterdir()) == ["cell.json", "model_best.safetensors"]


def test_weights_without_a_stamp_are_not_a_kept_student(tmp_path):
    run = _run(tmp_path)
    (run / "cell.json").unlink()
    assert stamped_fingerprint(run) is None
