"""``train.log``: a run's log records, appended as plain text with timestamps while it runs."""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

PACKAGE_LOGGER = "subdistill"
FORMAT = "%(asctime)s %(levelname)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class _Forward(logging.Handler):
    """Hands records on to the root logger's handlers (what propagation would have done)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


class RunLog:
    """A context manager that appends the package's log records (INFO and up) to ``path``
    (None: nothing is written) and removes its handler on exit, also on an error.

    What the console shows does not change: where the package logs less than INFO (a Python
    session without logging set up), records below that level go to the file only. Lines the
    console shows otherwise (progress bars, the CLI's printed result) are added with
    :meth:`note`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.handler: logging.FileHandler | None = None
        self._restore: tuple[int, bool] | None = None
        self._forward: _Forward | None = None

    def __enter__(self) -> RunLog:
        if self.path is None:
            return self
        self.handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        self.handler.setLevel(logging.INFO)
        logger = logging.getLogger(PACKAGE_LOGGER)
        shown = logger.getEffectiveLevel()
        if shown > logging.INFO:  # record INFO for the file, show the console what it showed
            self._restore = (logger.level, logger.propagate)
            self._forward = _Forward(shown)
            logger.setLevel(logging.INFO)
            logger.propagate = False
            logger.addHandler(self._forward)
        logger.addHandler(self.handler)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.handler is None:
            return
        logger = logging.getLogger(PACKAGE_LOGGER)
        logger.removeHandler(self.handler)
        self.handler.close()
        if self._forward is not None and self._restore is not None:
            logger.removeHandler(self._forward)
            logger.setLevel(self._restore[0])
            logger.propagate = self._restore[1]
        self.handler = self._forward = self._restore = None

    def note(self, message: str) -> None:
        """Add ``message`` to the file only (an INFO record)."""
        if self.handler is not None:
            self.handler.handle(logging.getLogger(PACKAGE_LOGGER).makeRecord(
                PACKAGE_LOGGER, logging.INFO, __file__, 0, message, (), None))
