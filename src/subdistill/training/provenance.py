"""Where a run comes from: the command line, the start time, the subdistill version and the git
commit of the checkout the package runs from (``provenance:`` in ``config.yaml``; not a
setting, so it never blocks a resume)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_command: list[str] = []  # the running command line, set by the CLI


@contextmanager
def invoked_as(argv: Sequence[str]) -> Iterator[None]:
    """Record ``subdistill ARGV...`` as the command line of the runs started inside."""
    _command[:] = ["subdistill", *argv]
    try:
        yield
    finally:
        _command.clear()


def provenance() -> dict[str, Any]:
    """The command line (when run from the CLI), the time now (ISO 8601, UTC), the subdistill
    version and, in a git checkout, its commit and whether it has uncommitted changes."""
    from .. import __version__

    found: dict[str, Any] = {"command": shlex.join(_command)} if _command else {}
    found |= {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "subdistill": __version__}
    git = git_commit()
    return found | ({"git": git} if git else {})


def git_commit(source: Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout that tracks ``source`` (default:
    this package's files); None without git, outside a checkout, or for an installed copy."""
    source = source or Path(__file__).resolve().parents[1] / "__init__.py"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=source.parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", source.name)  # tracked here, not a copy in a repo
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}
