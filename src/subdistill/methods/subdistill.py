"""SubDistill: the student reproduces the teacher's task-relevant subspace at each layer pair."""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from ..distributed import is_main
from ..errors import BasisError, ConfigError
from ..fingerprint import model_fingerprint
from ..losses import channel_moments, subspace_loss, subspace_loss_from_moments
from ..models.restricted import RestrictedTeacher
from ..subspace.basis import BASIS_METHODS, Basis, check_k
from ..subspace.fit import SubspaceStatistics, solve_bases
from ..subspace.io import load_bases, save_bases
from ..taps import align, channel_matmul
from .base import PrepareContext, register_method
from .layerwise import LayerwiseMethod

NORMALIZATIONS = ("standardize", "center", "none")
SCALES = ("learned", "none")


class ChannelNormalization(nn.Module):
    """Per-channel normalisation of the student map before the rotation.

    ``standardize`` (the authors' behaviour): batch mean and variance in training, only the
    running mean subtracted in eval. ``center``: batch mean in training, running mean in eval.
    ``none``: identity.
    """

    running_mean: Tensor
    _running_var: Tensor

    def __init__(self, channels: int, mode: str = "standardize", momentum: float = 0.1,
                 eps: float = 1e-5):
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalization {mode!r}; choose one of {NORMALIZATIONS}")
        self.mode, self.momentum, self.eps = mode, momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        # F.batch_norm updates a running variance too; it is never used, so it is not saved
        self.register_buffer("_running_var", torch.ones(channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "none":
            return x
        if not self.training:
            return x - self.running_mean[:, None, None]
        if self.mode == "standardize":  # the fused kernel: batch statistics, biased variance
            return F.batch_norm(x, self.running_mean, self._running_var, training=True,
                                momentum=self.momentum, eps=self.eps)
        mean = x.mean(dim=(0, 2, 3))
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
        return x - mean[:, None, None]

    def moments(self, x: Tensor, raw: Tensor, offset: Tensor,
                raw_sum: Tensor) -> tuple[Tensor, Tensor]:
        """``(Σ t nᵀ, Σ‖n‖²)`` of the training-mode normalised map ``n = self(x)`` and the
        target ``t = raw − offset`` (maps (B, k, H, W), offset per channel; sums over batch and
        positions; ``raw_sum``: Σ raw per channel), from the batch's channel moments without
        forming ``n`` or ``t``; updates the running mean as :meth:`forward` does."""
        cross, sums, squares = channel_moments(raw, x)  # Σ raw xᵀ, Σ x, Σ x²
        if self.mode == "none":
            return cross - torch.outer(offset, sums), squares.sum()
        positions = x.numel() // x.shape[1]
        mean = sums / positions
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
        # Σ t (x − mean)ᵀ = Σ raw (x − mean)ᵀ: the offset term vanishes on centred maps
        cross = cross - torch.outer(raw_sum, mean)
        centred = squares - positions * mean.square()  # positions · variance
        if self.mode == "center":
            return cross, centred.sum()
        inv_std = torch.rsqrt(centred / positions + self.eps)
        return cross * inv_std, (centred * inv_std.square()).sum()


def initial_log_scale(energy: float, k: int, normalization: str) -> float:
    """``log √(E / k)``: the scale at which a standardised k-channel prediction (total variance
    k) has the target's total variance E. 0 for the other normalisations."""
    return 0.5 * math.log(energy / k) if normalization == "standardize" and energy > 0 else 0.0


NEARLY_CONSTANT = 1e-8
"""A teacher layer whose captured variance per kept direction is below this fraction of its
squared mean activation is nearly constant: float32 cannot resolve its subspace."""


def check_informative(bases: dict[str, Basis]) -> dict[str, Basis]:
    """``bases``, after checking that no teacher layer is (nearly) constant over the data."""
    for layer, basis in bases.items():
        offset = float(basis.mean.double().pow(2).mean())
        if not basis.energy > NEARLY_CONSTANT * basis.k * offset or not basis.energy > 1e-30:
            raise BasisError(f"teacher layer {layer!r} is nearly constant over the training "
                             f"images (captured variance {basis.energy:.3g}, squared mean "
                             f"{offset:.3g} per channel): its subspace is rounding noise; pair "
                             "another teacher layer")
    return bases


class SubspaceHead(nn.Module):
    """Training-only head of one pair: fixed teacher projection ``Uᵀ(T − μ)`` and learnable
    ``s · Q · n(S)`` with Q a k × k orthogonal matrix and s > 0 a learned scale
    (``scale: learned``, initialised by :func:`initial_log_scale`) or 1 (``scale: none``, the
    authors' head: with ``standardize`` its loss cannot fall below ``(1 − √(k/E))²``)."""

    U: Tensor
    mean: Tensor
    energy: Tensor
    rotation: nn.Module  # an nn.Linear with an orthogonal weight parametrisation

    def __init__(self, basis: Basis, student_channels: int, normalization: str = "standardize",
                 energy_norm: bool = True, scale: str = "learned"):
        super().__init__()
        if basis.k != student_channels:
            raise BasisError(f"the basis keeps k={basis.k} directions but the student layer has "
                             f"{student_channels} channels; fit the basis with k={student_channels}")
        self.register_buffer("U", basis.U.to(torch.float32))
        self.register_buffer("mean", basis.mean.to(torch.float32))
        energy = basis.energy if energy_norm else 1.0
        if not energy > 0:
            raise BasisError(f"the captured teacher energy is {basis.energy}; cannot normalise by it")
        self.register_buffer("energy", torch.tensor(float(energy)))
        self.norm = ChannelNormalization(student_channels, normalization)
        self.rotation = orthogonal(nn.Linear(student_channels, student_channels, bias=False))
        self.log_scale = nn.Parameter(torch.tensor(
            initial_log_scale(basis.energy, basis.k, normalization))) if scale == "learned" else None

    def target(self, teacher_map: Tensor) -> Tensor:
        """Teacher coordinates ``Uᵀ(T − μ)`` at every position, (B, k, H, W), computed as a
        channel-wise matrix product (:func:`~subdistill.taps.channel_matmul`)."""
        raw, offset = self._projection(teacher_map)
        return raw - offset[:, None, None]

    def _projection(self, teacher_map: Tensor) -> tuple[Tensor, Tensor]:
        """``(Uᵀ T, Uᵀ μ)``: the target is their difference."""
        return channel_matmul(teacher_map, self.U), self.mean @ self.U

    def prediction(self, student_map: Tensor) -> Tensor:
        """Student coordinates ``s · Q · n(S)`` at every position, (B, k, H, W)."""
        rotation = cast(Tensor, self.rotation.weight)
        if self.log_scale is not None:
            rotation = self.log_scale.exp() * rotation
        return channel_matmul(self.norm(student_map), rotation.t())

    def forward(self, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        """The layer loss; in training computed from k × k moments
        (:func:`~subdistill.losses.subspace_loss_from_moments`, exact for the orthogonal Q),
        which spares forming the normalised map and the prediction."""
        teacher_map, student_map = align(teacher_map, student_map)
        if not self.training:
            return subspace_loss(self.prediction(student_map), self.target(teacher_map),
                                 self.energy)
        raw, offset = self._projection(teacher_map)  # target t = raw − offset
        raw_sum = raw.sum(dim=(0, 2, 3))
        cross, norm_sq = self.norm.moments(student_map, raw, offset, raw_sum)
        positions = raw.numel() // raw.shape[1]
        target_sq = (torch.linalg.vector_norm(raw).square() - 2 * offset @ raw_sum
                     + positions * offset.square().sum())
        scale = 1.0 if self.log_scale is None else self.log_scale.exp()
        return subspace_loss_from_moments(cross, norm_sq, target_sq,
                                          cast(Tensor, self.rotation.weight), scale, positions,
                                          self.energy)


@register_method
class SubDistill(LayerwiseMethod):
    name = "subdistill"
    description = "match the teacher's task-relevant subspace per layer pair (+ KD), the paper's method"
    hparams = {
        **LayerwiseMethod.hparams,
        "basis": "subdistill",
        "normalization": "standardize",
        "scale": "learned",
        "energy_norm": True,
        "positions": 20,
        "bases_file": "",
    }
    choices = {**LayerwiseMethod.choices, "basis": BASIS_METHODS.names,
               "normalization": lambda: NORMALIZATIONS, "scale": lambda: SCALES}

    def __init__(self, pairs, **options):
        super().__init__(pairs, **options)
        for pair in self.pairs:  # fail before the fit, not after it
            try:
                check_k(pair.student_channels, pair.teacher_channels)
            except BasisError as err:
                raise BasisError(f"pair {pair.teacher} -> {pair.student}: {err}") from None
        self.heads = nn.ModuleList()
        self.bases: dict[str, Basis] = {}
        self.bases_path: Path | None = None

    def prepare(self, context: PrepareContext) -> None:
        """Fit (or load) one basis per teacher layer, k = the paired student layer's width."""
        self.bases = self._bases(context)
        self.heads = nn.ModuleList(
            SubspaceHead(self.bases[p.teacher], p.student_channels, self.options["normalization"],
                         self.options["energy_norm"], self.options["scale"])
            for p in self.pairs
        ).to(context.device)

    def _bases(self, context: PrepareContext) -> dict[str, Basis]:
        if context.teacher is None:
            raise ConfigError("method subdistill fits its bases on the teacher: give a teacher")
        positions = self.options["positions"]
        expected = {
            "teacher": model_fingerprint(context.teacher),
            "method": self.options["basis"],
            "pairs": ";".join(f"{p.teacher}->{p.student}:{p.student_channels}@"
                              f"{p.compared_size[0]}x{p.compared_size[1]}" for p in self.pairs),
            "positions": str(positions),
            "seed": str(context.seed),
            "data": context.data,
            **({"precision": context.precision} if context.precision != "fp32" else {}),
        }
        if isinstance(context.teacher, RestrictedTeacher):
            expected["subtask"] = ",".join(str(c) for c in context.teacher.indices.tolist())
        path = self.options["bases_file"] or (
            Path(context.run_dir) / "bases.safetensors" if context.run_dir else "")
        self.bases_path = Path(path) if path else None
        if path and Path(path).is_file():
            return check_informative(load_bases(path, expected))
        ks = {p.teacher: p.student_channels for p in self.pairs}
        devices = [context.device] if torch.device(context.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # fitted or loaded: the same run after
            stats = SubspaceStatistics(
                ks, positions=positions if positions > 0 else None, seed=context.seed,
                compared_sizes={p.teacher: p.compared_size for p in self.pairs},
                device=context.device, shard=context.shard)
            if context.teacher_pass is None or not context.teacher_pass(stats):
                stats.feed(context.teacher, context.fit_loader, device=context.device,
                           precision=context.precision, channels_last=context.channels_last,
                           progress=context.progress)
            bases = solve_bases(stats.result(), ks, self.options["basis"], context.seed)
        check_informative(bases)
        if path and is_main():
            save_bases(path, bases, expected)
        return bases

    def layer_loss(self, index: int, teacher_map: Tensor, student_map: Tensor) -> Tensor:
        return self.heads[index](teacher_map, student_map)
