import pytest
import torch

from subdistill.errors import BasisError
from subdistill.subspace import BASIS_METHODS, moments_of, relevant_basis, subdistill_matrix


def _data(n=2000, d=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=generator, dtype=torch.float64)
    a = torch.randn(n, d, generator=generator, dtype=torch.float64) @ mixing + 1.5
    w = torch.randn(d, 2, generator=generator, dtype=torch.float64)
    c = torch.tanh(a @ w) @ w.T + 0.1 * torch.randn(n, d, generator=generator, dtype=torch.float64)
    return a, c


def _same_subspace_vectors(u, v, atol=1e-8):
    """Columns equal up to sign."""
    signs = torch.sign((u * v).sum(0))
    torch.testing.assert_close(u, v * signs, atol=atol, rtol=0)


def test_matrix_is_positive_semidefinite():
    for seed in range(5):
        a, c = _data(seed=seed)
        m = subdistill_matrix(moments_of(a, c))
        torch.testing.assert_close(m, m.T)
        assert torch.linalg.eigvalsh(m).min() > -1e-10


def test_plain_prca_matrix_is_indefinite_but_subdistill_is_not():
    a, c = _data(seed=3)
    m = moments_of(a, c)
    prca = torch.linalg.eigvalsh(m.cov_ac + m.cov_ac.T)
    assert prca.min() < 0 < prca.max()
    assert torch.linalg.eigvalsh(subdistill_matrix(m)).min() > -1e-10


@pytest.mark.parametrize("scale_a, scale_c", [(10.0, 1.0), (1.0, 0.01), (3.0, 7.0)])
def test_eigenvectors_invariant_to_rescaling(scale_a, scale_c):
    a, c = _data(seed=4)
    base = relevant_basis(a, c, k=3)
    scaled = relevant_basis(a * scale_a, c * scale_c, k=3)
    _same_subspace_vectors(base.U, scaled.U, atol=1e-7)


def test_agrees_with_direct_eigendecomposition():
    a, c = _data(seed=5)
    n = a.shape[0]
    mu = a.mean(0)
    ab = a - mu
    sa, sc, sac = ab.T @ ab / n, c.T @ c / n, ab.T @ c / n
    alpha = torch.sqrt(torch.trace(sc) / torch.trace(sa))
    m = sac + sac.T + 2 * alpha * sa + (2 / alpha) * sc
    values, vectors = torch.linalg.eigh(m)
    values, vectors = values.flip(0), vectors.flip(1)
    basis = relevant_basis(a, c, k=4)
    torch.testing.assert_close(basis.eigenvalues, values)
    _same_subspace_vectors(basis.U, vectors[:, :4])
    expected_energy = sum(float(vectors[:, i] @ sa @ vectors[:, i]) for i in range(4))
    assert basis.energy == pytest.approx(expected_energy)
    torch.testing.assert_close(basis.mean, mu)


@pytest.mark.parametrize("method", BASIS_METHODS.names())
def test_every_method_gives_orthonormal_columns(method):
    a, c = _data(seed=6)
    basis = relevant_basis(a, c, method=method, k=3)
    assert basis.U.shape == (6, 3)
    torch.testing.assert_close(basis.U.T @ basis.U, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)
    assert basis.method == method


def test_methods_order_their_eigenvalues():
    a, c = _data(seed=7)
    pca = relevant_basis(a, c, method="pca")
    assert torch.all(pca.eigenvalues[:-1] >= pca.eigenvalues[1:])
    prca_abs = relevant_basis(a, c, method="prca-abs")
    assert torch.all(prca_abs.eigenvalues.abs()[:-1] >= prca_abs.eigenvalues.abs()[1:])
    sa = moments_of(a, c).cov_a
    torch.testing.assert_close(pca.eigenvalues, torch.linalg.eigvalsh(sa).flip(0))


def test_random_basis_is_seeded_and_identity_is_axes():
    a, c = _data()
    r1 = relevant_basis(a, c, method="random", k=2, seed=3)
    r2 = relevant_basis(a, c, method="random", k=2, seed=3)
    r3 = relevant_basis(a, c, method="random", k=2, seed=4)
    torch.testing.assert_close(r1.U, r2.U)
    assert not torch.allclose(r1.U, r3.U)
    ident = relevant_basis(a, c, method="identity", k=2)
    torch.testing.assert_close(ident.U, torch.eye(6, dtype=torch.float64)[:, :2])


def test_k_larger_than_d_is_an_error():
    a, c = _data(d=6)
    with pytest.raises(BasisError, match="k=7"):
        relevant_basis(a, c, k=7)


def test_signs_are_deterministic():
    a, c = _data(seed=8)
    basis = relevant_basis(a, c, k=3)
    rows = basis.U.abs().argmax(0)
    assert torch.all(basis.U[rows, torch.arange(3)] > 0)


def test_reconstruction_is_identity_at_full_rank():
    a, c = _data(seed=9)
    basis = relevant_basis(a, c)
    torch.testing.assert_close(basis.reconstruct(a), a)


def test_constant_gradients_are_rejected():
    a, _ = _data()
    with pytest.raises(BasisError, match="constant"):
        relevant_basis(a, torch.zeros_like(a))


def test_unknown_method_suggests():
    a, c = _data()
    with pytest.raises(BasisError, match="Did you mean 'pca'"):
        relevant_basis(a, c, method="pcaa")
