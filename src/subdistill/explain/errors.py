"""The error of the explainability analysis."""

from __future__ import annotations

from subdistill.errors import SubdistillError


class ExplainError(SubdistillError):
    """A model cannot be explained as asked (architecture, method or inputs)."""
