import os
import stat

import pytest

from subdistill.atomic import atomic_path, write_text


def test_write_replaces_and_keeps_usual_permissions(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    write_text(path, "one")
    write_text(path, "two")
    assert path.read_text() == "two"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


def test_failure_leaves_previous_file(tmp_path):
    path = tmp_path / "file.txt"
    write_text(path, "good")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_safetensors_files_get_the_usual_permissions(tmp_path):
    from torch import nn

    from subdistill.models import save_weights

    mask = os.umask(0o022)
    try:
        save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    from subdistill.atomic import remove_stale_temporaries

    dead = tmp_path / ".metrics.jsonl.999999999.abcd1234.tmp"
    live = tmp_path / f".results.csv.{os.getpid()}.efgh5678.tmp"
    other = tmp_path / ".notes.tmp"
    for path in (dead, live, other):
        path.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
