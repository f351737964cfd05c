"""Streaming estimation of the relevant subspaces of several teacher layers in one pass."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..distributed import all_reduce_sum
from ..errors import BasisError, NonFiniteError
from ..modes import frozen
from ..taps import LayerTaps, as_grid, flatten_positions
from .basis import Basis, basis_from_moments
from .moments import MomentAccumulator


def logit_margin(logits: Tensor) -> Tensor:
    """Explained scalar per sample: top-1 minus runner-up logit (the teacher's own prediction)."""
    if logits.shape[-1] < 2:
        raise BasisError("the explained logit margin needs at least two logits")
    top2 = logits.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


@dataclass
class LayerStatistics:
    """Streaming sums of one layer: sampled (activation, gradient) pairs for the basis and,
    when the loss compares a pooled map, activation moments of that pooled map for the energy."""

    pairs: MomentAccumulator
    compared: MomentAccumulator | None = None
    compared_size: tuple[int, int] | None = None

    def basis(self, method: str, k: int | None, seed: int = 0) -> Basis:
        """Solve for the layer's basis; its energy is measured on the map the loss compares."""
        moments = self.pairs.moments()
        energy_cov = None
        if self.compared is not None:
            pooled = self.compared.moments()
            shift = pooled.mean - moments.mean
            energy_cov = pooled.cov_a + torch.outer(shift, shift)
        basis = basis_from_moments(moments, method, k, seed=seed, energy_cov=energy_cov)
        where = "sampled positions" if self.compared_size is None else (
            "all positions of the map pooled to %dx%d" % self.compared_size)
        basis.metadata.update(samples=str(moments.count), energy_on=where)
        return basis


_MASK32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    """A bijective integer hash of the low 32 bits of each element (int64 in, [0, 2³²) out)."""
    x = x & _MASK32
    for _ in range(2):  # ((x >> 16) ^ x) * 0x45d9f3b, twice; products stay below 2⁶³
        x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _position_key(seed: int, layer: str) -> int:
    """The key of a layer's position draws: seed and layer name combined."""
    return int(_mix32(torch.tensor(seed))) ^ zlib.crc32(layer.encode())


def _sample_positions(vectors: Tensor, count: int | None, image_ids: Tensor, key: int) -> Tensor:
    """``count`` distinct random positions per image from (B, P, d), flattened to (B·count, d).

    The positions of an image depend only on ``key`` (seed and layer) and its index in
    ``image_ids``, not on the batch it comes in or the process that handles it."""
    b, p, d = vectors.shape
    if count is None or count >= p:
        return vectors.reshape(b * p, d)
    image = _mix32(_mix32(torch.tensor(key)) ^ image_ids.to(torch.int64).cpu())
    scores = _mix32(image[:, None] ^ torch.arange(p))  # distinct per image: no ties
    order = scores.argsort(dim=1)[:, :count]
    index = order.to(vectors.device)[:, :, None].expand(b, count, d)
    return vectors.gather(1, index).reshape(b * count, d)


def accumulate_statistics(
    teacher: nn.Module,
    loader: Iterable,
    layers: Iterable[str],
    *,
    positions: int | None = 20,
    seed: int = 0,
    compared_sizes: Mapping[str, tuple[int, int]] | None = None,
    prefix_tokens: Mapping[str, int] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, LayerStatistics]:
    """One pass of the frozen teacher over ``loader`` accumulating every layer's moments.

    Per image, ``positions`` random spatial positions (or tokens; ``None`` = all) give pairs
    (a, ∂f/∂a) with f the teacher's logit margin; they are drawn from the seed, the layer and
    the image's index. ``compared_sizes[layer]`` is the spatial size the loss pools the teacher
    map to, if smaller. Memory is independent of the dataset size.

    ``shard = (rank, world_size)``: ``loader`` yields images rank, rank + world_size, ... of the
    fit set, in order; with world_size > 1 the sums are then added over the process group, so
    every process gets the statistics one process would get from the whole set.
    """
    layers = list(dict.fromkeys(layers))
    compared_sizes = dict(compared_sizes or {})
    prefix_tokens = dict(prefix_tokens or {})
    keys = {layer: _position_key(seed, layer) for layer in layers}
    first, stride = shard
    seen = 0
    stats: dict[str, LayerStatistics] = {}
    with frozen(teacher), LayerTaps(teacher, layers) as taps:
        batches = tqdm(loader, desc="fitting subspaces", disable=not progress, leave=False)
        for index, batch in enumerate(batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x.to(device).requires_grad_(True)
            image_ids = first + stride * torch.arange(seen, seen + len(x))
            seen += len(x)
            margin = logit_margin(teacher(x)).sum()
            outputs = [taps.outputs[layer] for layer in layers]
            grads = torch.autograd.grad(margin, outputs, allow_unused=True)
            for layer, act, grad in zip(layers, outputs, grads):
                _check_finite(layer, act, grad, index)
                a_grid = as_grid(act.detach(), prefix_tokens.get(layer))
                c_grid = as_grid(grad, prefix_tokens.get(layer))
                if layer not in stats:
                    stats[layer] = _new_statistics(a_grid, compared_sizes.get(layer), device)
                _update(stats[layer], a_grid, c_grid, positions, image_ids, keys[layer])
    if not stats:
        raise BasisError("the data loader yielded no batches; cannot fit subspaces")
    if stride > 1:
        _all_reduce(stats[layer] for layer in layers)
    return stats


def _check_finite(layer: str, act: Tensor, grad: Tensor | None, batch: int) -> None:
    """The layer reaches the logits and its activations and gradients are finite."""
    if grad is None:
        raise BasisError(f"the teacher's logits do not depend on layer {layer!r}")
    for what, value in (("activations", act), ("gradients", grad)):
        if not torch.isfinite(value).all():
            raise NonFiniteError(f"non-finite {what} at teacher layer {layer!r} in batch "
                                 f"{batch + 1} of the subspace fit; check the input data and "
                                 "the teacher's weights")


def _update(entry: LayerStatistics, a_grid: Tensor, c_grid: Tensor, positions: int | None,
            image_ids: Tensor, key: int) -> None:
    """Add one batch's (activation, gradient) pairs at ``positions`` sampled positions (drawn
    from ``key`` and the images' ids), and its pooled activations."""
    d = a_grid.shape[1]
    both = torch.cat([flatten_positions(a_grid), flatten_positions(c_grid)], dim=-1)
    sampled = _sample_positions(both, positions, image_ids, key)
    entry.pairs.update(sampled[:, :d], sampled[:, d:])
    if entry.compared is not None:
        pooled = F.adaptive_avg_pool2d(a_grid, entry.compared_size)
        entry.compared.update(flatten_positions(pooled).reshape(-1, d))


def _all_reduce(stats: Iterable[LayerStatistics]) -> None:
    """Add the moment sums of every process (one collective for all layers)."""
    accumulators = [acc for entry in stats for acc in (entry.pairs, entry.compared)
                    if acc is not None]
    sums = [acc.sums() for acc in accumulators]
    all_reduce_sum([t for group in sums for t in group])
    for acc, group in zip(accumulators, sums):
        acc.load_sums(group)


def _new_statistics(grid: Tensor, size: tuple[int, int] | None, device) -> LayerStatistics:
    d, h, w = grid.shape[1:]
    pairs = MomentAccumulator(d, with_gradients=True, device=device)
    if size is None or size[0] * size[1] >= h * w:
        return LayerStatistics(pairs)
    size = (int(size[0]), int(size[1]))
    return LayerStatistics(pairs, MomentAccumulator(d, with_gradients=False, device=device), size)


def fit_subspaces(
    teacher: nn.Module,
    loader: Iterable,
    layers: Iterable[str] | Mapping[str, int | None],
    *,
    method: str = "subdistill",
    positions: int | None = 20,
    seed: int = 0,
    compared_sizes: Mapping[str, tuple[int, int]] | None = None,
    prefix_tokens: Mapping[str, int] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Basis]:
    """Relevant subspace of each teacher layer from one streaming pass over ``loader``.

    ``teacher`` must output the subtask's logits (see :func:`subdistill.restrict_teacher`);
    ``loader`` yields unaugmented batches ``(x, y)`` or ``x``. ``layers`` is a list of module
    paths, or a mapping path -> k (the paired student layer's width; None keeps all d).
    ``shard``: see :func:`accumulate_statistics`; every process solves for the same bases.
    """
    ks = dict(layers) if isinstance(layers, Mapping) else dict.fromkeys(layers)
    stats = accumulate_statistics(
        teacher, loader, ks, positions=positions, seed=seed, compared_sizes=compared_sizes,
        prefix_tokens=prefix_tokens, device=device, progress=progress, shard=shard,
    )
    bases = {}
    for layer, entry in stats.items():
        try:
            bases[layer] = entry.basis(method, ks[layer], seed=seed)
        except BasisError as err:
            raise BasisError(f"layer {layer!r}: {err}") from None
        bases[layer].metadata["layer"] = layer
    return bases
