"""Errors a user can fix. Every one derives from :class:`SubdistillError`; the CLI prints its
message on one line and exits non-zero instead of showing a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SubdistillError(Exception):
    """Base class of every error caused by input the user can correct."""


class ConfigError(SubdistillError):
    """A configuration key, type or value is invalid."""


class LayerNotFoundError(SubdistillError):
    """A module path does not name a layer of the model."""


class SubtaskError(SubdistillError):
    """A subtask's classes are invalid or missing from the data."""


class BasisError(SubdistillError):
    """A subspace cannot be estimated, or a saved one does not fit the run."""


class DataError(SubdistillError):
    """A dataset cannot be found or read."""


class ModelError(SubdistillError):
    """A model cannot be built or does not fit the task."""


class NonFiniteError(SubdistillError):
    """An activation, gradient or loss became NaN or infinite."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message, or its type's name (for one-line errors
    that quote a library's complaint)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def closest(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean ...?' hint naming the closest candidates, or '' when none is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    if not matches:
        return ""
    return " Did you mean " + ", ".join(repr(m) for m in matches) + "?"
