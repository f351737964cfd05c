"""What a run shows on the console: progress bars only on a terminal."""

from __future__ import annotations

import sys


def show_bars(progress: bool) -> bool:
    """Whether to draw progress bars: asked for (``progress``) and stderr is a terminal (in a
    log file the bars' carriage returns and escape codes are noise; runs log lines instead)."""
    return progress and sys.stderr.isatty()
