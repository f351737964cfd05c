"""Saving and loading bases as safetensors files with metadata."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..errors import BasisError
from .basis import Basis

FORMAT = "subdistill-bases-v1"


def save_bases(path: str | Path, bases: Mapping[str, Basis], metadata: Mapping[str, str]) -> None:
    """Write ``bases`` (layer -> Basis) and run ``metadata`` (teacher fingerprint, subtask,
    seed, ...) to one safetensors file, atomically."""
    tensors, meta = {}, {"format": FORMAT, "layers": "\n".join(bases), **metadata}
    for i, basis in enumerate(bases.values()):
        tensors[f"{i}.U"] = basis.U.contiguous()
        tensors[f"{i}.mean"] = basis.mean.contiguous()
        tensors[f"{i}.eigenvalues"] = basis.eigenvalues.contiguous()
        meta[f"{i}.energy"] = repr(basis.energy)
        meta[f"{i}.method"] = basis.method
        for key, value in basis.metadata.items():
            meta[f"{i}.meta.{key}"] = str(value)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_bases(path: str | Path) -> tuple[dict[str, Basis], dict[str, str]]:
    """Read a bases file: (layer -> Basis, run metadata)."""
    path = Path(path)
    if not path.is_file():
        raise BasisError(f"basis file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise BasisError(f"basis file {path} is corrupted or truncated ({err}); delete it and "
                         "fit the subspaces again") from None
    if meta.get("format") != FORMAT:
        raise BasisError(f"{path} is not a subdistill basis file")
    bases = {}
    for i, layer in enumerate(meta["layers"].split("\n")):
        prefix = f"{i}.meta."
        bases[layer] = Basis(
            U=tensors[f"{i}.U"], mean=tensors[f"{i}.mean"], energy=float(meta[f"{i}.energy"]),
            eigenvalues=tensors[f"{i}.eigenvalues"], method=meta[f"{i}.method"],
            metadata={k[len(prefix):]: v for k, v in meta.items() if k.startswith(prefix)},
        )
    run_meta = {k: v for k, v in meta.items() if not k[:1].isdigit() and k not in ("format", "layers")}
    return bases, run_meta


def load_bases(path: str | Path, expected: Mapping[str, str]) -> dict[str, Basis]:
    """Read a bases file and check that its metadata matches ``expected`` (teacher
    fingerprint, subtask, layers, method, ...); a mismatch is a :class:`BasisError`."""
    bases, meta = read_bases(path)
    wrong = [f"{key}: file has {meta.get(key)!r}, run needs {value!r}"
             for key, value in expected.items() if meta.get(key) != str(value)]
    if wrong:
        raise BasisError(f"basis file {path} was made for another run ({'; '.join(wrong)}); "
                         "delete it or point the run elsewhere to fit new subspaces")
    return bases
