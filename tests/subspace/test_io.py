import pytest
import torch

from subdistill.errors import BasisError
from subdistill.subspace import relevant_basis
from subdistill.subspace.io import load_bases, read_bases, save_bases


def _bases():
    generator = torch.Generator().manual_seed(0)
    a, c = torch.randn(200, 5, generator=generator), torch.randn(200, 5, generator=generator)
    basis = relevant_basis(a, c, k=2)
    basis.metadata["layer"] = "layer1"
    return {"layer1": basis, "encoder.layers.8": relevant_basis(a, c, method="pca", k=3)}


def test_round_trip(tmp_path):
    bases = _bases()
    path = tmp_path / "bases.safetensors"
    save_bases(path, bases, {"teacher": "abc", "subtask": "0,1"})
    loaded = load_bases(path, {"teacher": "abc"})
    assert list(loaded) == list(bases)
    for layer, basis in bases.items():
        torch.testing.assert_close(loaded[layer].U, basis.U)
        torch.testing.assert_close(loaded[layer].mean, basis.mean)
        torch.testing.assert_close(loaded[layer].eigenvalues, basis.eigenvalues)
        assert loaded[layer].energy == basis.energy
        assert loaded[layer].method == basis.method
    assert loaded["layer1"].metadata == {"layer": "layer1"}
    assert read_bases(path)[1] == {"teacher": "abc", "subtask": "0,1"}


def test_fingerprint_mismatch(tmp_path):
    path = tmp_path / "b.safetensors"
    save_bases(path, _bases(), {"teacher": "abc"})
    with pytest.raises(BasisError, match="another run.*teacher"):
        load_bases(path, {"teacher": "xyz"})


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "b.safetensors"
    save_bases(path, _bases(), {"teacher": "abc"})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BasisError, match="corrupted or truncated"):
        load_bases(path, {})
    with pytest.raises(BasisError, match="does not exist"):
        load_bases(tmp_path / "none.safetensors", {})
