import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch
import yaml

import subdistill
from subdistill import __version__
from subdistill.cli import main
from subdistill.training.provenance import git_commit, invoked_as, provenance


def _provenance(run):
    return yaml.safe_load((run / "config.yaml").read_text())["provenance"]


def test_config_records_the_command_start_time_version_and_commit(tiny_run):
    found = _provenance(tiny_run)
    assert found["command"] == f"subdistill distill {tiny_run.parent / 'config.yaml'}"
    started = datetime.fromisoformat(found["started"])
    assert started.utcoffset() == timedelta(0)
    assert datetime.now(timezone.utc) - started < timedelta(hours=1)
    assert found["subdistill"] == __version__
    checkout = Path(subdistill.__file__).parents[2]
    if (checkout / ".git").exists() and shutil.which("git"):  # run from this repository
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True,
                              text=True, check=True).stdout.strip()
        assert found["git"]["commit"] == head and isinstance(found["git"]["dirty"], bool)


def test_provenance_is_no_setting_a_resume_checks(tiny_run, tmp_path):
    run = tmp_path / "run"
    args = ["distill", str(tiny_run.parent / "config.yaml"), "--set", f"run_dir={run}"]
    assert main(args) == 0
    recorded = _provenance(run)
    assert main([*args, "--resume"]) == 0  # another command line and start time
    assert _provenance(run) == recorded  # the run's origin, kept
    settings = torch.load(run / "checkpoint.pt", weights_only=True)["settings"]
    assert not [k for k in settings if k.startswith(("provenance", "environment"))]


def test_no_command_outside_the_cli():
    assert "command" not in provenance()
    with invoked_as(["distill", "my config.yaml"]):
        assert provenance()["command"] == "subdistill distill 'my config.yaml'"
    assert "command" not in provenance()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_of_a_checkout_dirty_flag_and_none_outside(tmp_path, monkeypatch):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    source = tmp_path / "pkg.py"
    source.write_text("x = 1\n")
    git("init", "-q")
    git("add", "pkg.py")
    git("commit", "-q", "-m", "one")
    assert git_commit(source) == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    source.write_text("x = 2\n")
    assert git_commit(source)["dirty"] is True
    untracked = tmp_path / "copy.py"  # a file in a repo that does not track it
    untracked.write_text("")
    assert git_commit(untracked) is None
    monkeypatch.setenv("PATH", "")  # no git at all
    assert git_commit(source) is None
