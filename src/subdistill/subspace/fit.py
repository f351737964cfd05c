"""Streaming estimation of the relevant subspaces of several teacher layers in one pass."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..console import show_bars
from ..distributed import all_reduce_sum
from ..errors import BasisError, NonFiniteError
from ..modes import frozen
from ..precision import autocast, to_layout
from ..taps import LayerTaps, as_grid, flatten_positions
from .basis import Basis, basis_from_moments
from .moments import MomentAccumulator

log = logging.getLogger(__name__)

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
        basis.metadata.update(samples=str(moments.count), energy_on=where,
                              rank_limited=str(moments.count < moments.dim).lower())
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


class SubspaceStatistics:
    """The streaming sums of a subspace fit, fed one batch of teacher outputs at a time
    (by :func:`accumulate_statistics`, or by the pass that builds the teacher-output cache).

    Per image, ``positions`` random spatial positions (or tokens; ``None`` = all) give pairs
    (a, ∂f/∂a) with f the teacher's logit margin; they are drawn from the seed, the layer and
    the image's index. ``compared_sizes[layer]`` is the spatial size the loss pools the teacher
    map to, if smaller. ``shard = (rank, world_size)``: the batches hold images rank,
    rank + world_size, ... of the fit set, in order; with world_size > 1 :meth:`result` adds the
    sums over the process group. Memory is independent of the number of images.
    """

    def __init__(self, layers: Iterable[str], *, positions: int | None = 20, seed: int = 0,
                 compared_sizes: Mapping[str, tuple[int, int]] | None = None,
                 prefix_tokens: Mapping[str, int] | None = None,
                 device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1)) -> None:
        self.layers = list(dict.fromkeys(layers))
        self.positions, self.device, self.shard = positions, device, shard
        self.compared_sizes = dict(compared_sizes or {})
        self.prefix_tokens = dict(prefix_tokens or {})
        self.keys = {layer: _position_key(seed, layer) for layer in self.layers}
        self.entries: dict[str, LayerStatistics] = {}
        self.seen = self.batches = 0

    def add(self, logits: Tensor, outputs: Mapping[str, Tensor]) -> None:
        """Add one batch: the teacher's ``logits`` and its tapped ``outputs``, still in the
        autograd graph that led to the logits (see ``LayerTaps(grad_leaves=True)``)."""
        first, stride = self.shard
        image_ids = first + stride * torch.arange(self.seen, self.seen + len(logits))
        self.seen += len(logits)
        acts = [outputs[layer] for layer in self.layers]
        grads = torch.autograd.grad(logit_margin(logits.float()).sum(), acts, allow_unused=True)
        for layer, act, grad in zip(self.layers, acts, grads):
            if grad is None:
                raise BasisError(f"the teacher's logits do not depend on layer {layer!r}")
            a_grid = as_grid(act.detach().float(), self.prefix_tokens.get(layer))
            c_grid = as_grid(grad.float(), self.prefix_tokens.get(layer))
            if layer not in self.entries:
                self.entries[layer] = _new_statistics(a_grid, self.compared_sizes.get(layer),
                                                      self.device)
            _update(self.entries[layer], a_grid, c_grid, self.positions, image_ids,
                    self.keys[layer], (layer, self.batches))
        self.batches += 1

    def result(self) -> dict[str, LayerStatistics]:
        """Every layer's sums (added over the process group when sharded)."""
        if not self.entries:
            raise BasisError("the data loader yielded no batches; cannot fit subspaces")
        if self.shard[1] > 1:
            _all_reduce(self.entries[layer] for layer in self.layers)
        return self.entries

    def feed(self, teacher: nn.Module, loader: Iterable, *, device: torch.device | str = "cpu",
             precision: str = "fp32", channels_last: bool = False,
             progress: bool = False) -> None:
        """One pass of the frozen teacher over ``loader`` (batches ``(x, y)`` or ``x``):
        forward under ``precision`` (the sums are float64 whatever it is), backward from the
        logit margin down to the shallowest tapped layer only."""
        with frozen(teacher), LayerTaps(teacher, self.layers, grad_leaves=True) as taps:
            to_layout(teacher, channels_last)
            for batch in tqdm(loader, desc="fitting subspaces", disable=not show_bars(progress),
                              leave=False):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                with autocast(device, precision):
                    logits = teacher(to_layout(x.to(device), channels_last))
                self.add(logits, taps.outputs)


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
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, LayerStatistics]:
    """Every layer's moments from one pass of the frozen teacher over ``loader``
    (:class:`SubspaceStatistics`, :meth:`SubspaceStatistics.feed`)."""
    stats = SubspaceStatistics(layers, positions=positions, seed=seed,
                               compared_sizes=compared_sizes, prefix_tokens=prefix_tokens,
                               device=device, shard=shard)
    stats.feed(teacher, loader, device=device, precision=precision,
               channels_last=channels_last, progress=progress)
    return stats.result()


def _update(entry: LayerStatistics, a_grid: Tensor, c_grid: Tensor, positions: int | None,
            image_ids: Tensor, key: int, where: tuple[str, int]) -> None:
    """Add one batch's (activation, gradient) pairs at ``positions`` sampled positions (drawn
    from ``key`` and the images' ids), and its pooled activations; ``where``: (layer, 0-based
    batch) for the error on a non-finite value."""
    d = a_grid.shape[1]
    both = torch.cat([flatten_positions(a_grid), flatten_positions(c_grid)], dim=-1)
    sampled = _sample_positions(both, positions, image_ids, key)
    pooled = (None if entry.compared is None else
              flatten_positions(F.adaptive_avg_pool2d(a_grid, entry.compared_size)).reshape(-1, d))
    _check_finite(sampled, pooled, where)
    entry.pairs.update(sampled[:, :d], sampled[:, d:])
    if entry.compared is not None and pooled is not None:
        entry.compared.update(pooled)


def _check_finite(sampled: Tensor, pooled: Tensor | None, where: tuple[str, int]) -> None:
    """What enters the sums (the sampled pairs, the pooled map) is finite."""
    if not (torch.isfinite(sampled).all() and (pooled is None or torch.isfinite(pooled).all())):
        layer, batch = where
        raise NonFiniteError(f"non-finite activations or gradients at teacher layer {layer!r} "
                             f"in batch {batch + 1} of the subspace fit; check the input data "
                             "and the teacher's weights")


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
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, Basis]:
    """Relevant subspace of each teacher layer from one streaming pass over ``loader``.

    ``teacher`` must output the subtask's logits (see :func:`subdistill.restrict_teacher`);
    ``loader`` yields unaugmented batches ``(x, y)`` or ``x``. ``layers`` is a list of module
    paths, or a mapping path -> k (the paired student layer's width; None keeps all d).
    ``shard``: see :class:`SubspaceStatistics`; every process solves for the same bases.
    ``precision``/``channels_last``: the teacher's forward (see :func:`accumulate_statistics`).
    """
    ks = dict(layers) if isinstance(layers, Mapping) else dict.fromkeys(layers)
    stats = accumulate_statistics(
        teacher, loader, ks, positions=positions, seed=seed, compared_sizes=compared_sizes,
        prefix_tokens=prefix_tokens, device=device, progress=progress, shard=shard,
        precision=precision, channels_last=channels_last,
    )
    return solve_bases(stats, ks, method, seed)


def solve_bases(stats: Mapping[str, LayerStatistics], ks: Mapping[str, int | None],
                method: str = "subdistill", seed: int = 0) -> dict[str, Basis]:
    """Each layer's basis from its accumulated statistics (``ks``: layer -> k, None keeps d)."""
    bases = {}
    for layer, entry in stats.items():
        try:
            bases[layer] = entry.basis(method, ks[layer], seed=seed)
        except BasisError as err:
            raise BasisError(f"layer {layer!r}: {err}") from None
        bases[layer].metadata["layer"] = layer
        if bases[layer].metadata["rank_limited"] == "true":
            log.warning("layer %r: basis fitted from %d vectors for d = %d dimensions: it is "
                        "rank-limited (directions outside the span of the vectors are "
                        "arbitrary); use more images or positions per image",
                        layer, entry.pairs.count, bases[layer].dim)
    return bases
