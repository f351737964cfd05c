"""Resumable training checkpoints: weights, heads, optimiser, schedule, RNG states and history.

Written atomically with ``torch.save`` and read with ``torch.load(weights_only=True)``, so a
checkpoint file can only hold tensors and plain containers, never executable pickles.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import SubdistillError


class CheckpointError(SubdistillError):
    """A checkpoint is missing, unreadable or belongs to another run."""


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch global RNG states as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss}}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))


def config_hash(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings a resumed run must share with the interrupted one."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a checkpoint atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_checkpoint(path: str | Path, expected_hash: str,
                    explain: Callable[[Mapping[str, str]], list[str]] | None = None,
                    accept: Callable[[Mapping[str, str]], bool] | None = None
                    ) -> dict[str, Any]:
    """Read a checkpoint safely and check it was written by a run with the same settings,
    or settings that ``accept(recorded settings)`` allows; ``explain(recorded settings)``
    names the ones that changed in the error."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({err}); delete it to "
                              "start the run again") from None
    if not isinstance(state, dict) or "config_hash" not in state:
        raise CheckpointError(f"{path} is not a subdistill training checkpoint")
    if state["config_hash"] != expected_hash and not (
            accept is not None and "settings" in state and accept(state["settings"])):
        changed = explain(state["settings"]) if explain and "settings" in state else []
        what = f" ({'; '.join(changed[:6])})" if changed else ""
        raise CheckpointError(f"checkpoint {path} was written by a run with other settings"
                              f"{what}; resume with the same settings, or start again with "
                              "--overwrite or in another run directory")
    return state
