import torch

from subdistill.subspace.moments import MomentAccumulator, moments_of


def test_streaming_equals_one_shot():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(1000, 7, generator=generator) * 3 + 2
    c = torch.randn(1000, 7, generator=generator) + a[:, :1]
    acc = MomentAccumulator(7)
    for chunk_a, chunk_c in zip(a.split(37), c.split(37)):
        acc.update(chunk_a, chunk_c)
    streamed, whole = acc.moments(), moments_of(a, c)
    assert streamed.count == 1000
    for name in ("mean", "cov_a", "cov_c", "cov_ac"):
        torch.testing.assert_close(getattr(streamed, name), getattr(whole, name), rtol=1e-10, atol=1e-10)


def test_moments_match_definitions():
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(500, 4, generator=generator, dtype=torch.float64) + 5
    c = torch.randn(500, 4, generator=generator, dtype=torch.float64) + 1
    m = moments_of(a, c)
    centred = a - a.mean(0)
    torch.testing.assert_close(m.mean, a.mean(0))
    torch.testing.assert_close(m.cov_a, centred.T @ centred / 500)
    torch.testing.assert_close(m.cov_c, c.T @ c / 500)  # gradients are not centred
    torch.testing.assert_close(m.cov_ac, centred.T @ c / 500)


def test_memory_does_not_grow_with_samples():
    acc = MomentAccumulator(3)
    before = [t.numel() for t in acc.sums()]
    for _ in range(50):
        acc.update(torch.randn(100, 3), torch.randn(100, 3))
    assert [t.numel() for t in acc.sums()] == before
