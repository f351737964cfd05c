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
