"""Heatmaps of the true-class logit gap: LRP (zennit), Integrated Gradients and Shapley value
sampling (captum). Every method returns per-pixel attributions summed over colour channels."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from subdistill.explain.canonizers import CanonizerSpec, canonizers_for, check_same_outputs
from subdistill.explain.errors import ExplainError
from subdistill.explain.patches import grid_shape, patch_ids, shapley_patch_size
from subdistill.explain.target import gap_function, gap_output_relevance
from subdistill.extras import missing_extra
from subdistill.models.restricted import RestrictedTeacher
from subdistill.modes import frozen
from subdistill.registry import Registry

try:
    from captum.attr import IntegratedGradients, ShapleyValueSampling
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox
except ImportError as err:  # the `explain` extra
    raise missing_extra(err.name or "zennit", "explain", "heatmaps (LRP, IG, SVS)") from None

__all__ = ["ATTRIBUTIONS", "attribute", "box_bounds", "integrated_gradients", "list_attributions",
           "lrp", "register_attribution", "shapley_patches"]

log = logging.getLogger(__name__)


def box_bounds(mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Normalised values of pixel 0 and pixel 1 per channel, each shaped (1, C, 1, 1)."""
    mean_t = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return (0.0 - mean_t) / std_t, (1.0 - mean_t) / std_t


def lrp(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    gamma: float = 1.0,
    epsilon: float = 1e-6,
    canonizer: CanonizerSpec | None = None,
) -> Tensor:
    """LRP with zennit's EpsilonGammaBox: ZBox on the first conv (bounds from ``mean``/``std``),
    Gamma on the other convs, Epsilon on dense layers; output relevance = the logit gap.

    ``canonizer``: the user's zennit canonizer(s) (see :func:`canonizers_for`) instead of the
    built-in one of the architecture. A RestrictedTeacher is explained through its ``.module``
    with the subtask's logit columns. Returns (B, C, H, W) relevance; for bias-free ReLU
    networks it sums to the gap per image.
    """
    if not len(mean) == len(std) == images.shape[1]:
        raise ExplainError(
            f"mean/std have {len(mean)}/{len(std)} entries for {images.shape[1]} input channels."
        )
    net, columns = model, None
    if isinstance(model, RestrictedTeacher):
        net, columns = model.module, model.indices
    low, high = (bound.to(images) for bound in box_bounds(mean, std))
    composite = EpsilonGammaBox(low=low, high=high, epsilon=epsilon, gamma=gamma,
                                canonizers=canonizers_for(net, images, canonizer))
    with torch.no_grad():
        expected = net(images)
    with Gradient(net, composite) as attributor:
        output, relevance = attributor(images, gap_output_relevance(labels, columns))
    check_same_outputs(expected, output.detach(), net)
    return relevance


def integrated_gradients(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    n_steps: int = 50,
    internal_batch_size: int = 64,
) -> Tensor:
    """Integrated Gradients of the logit gap from the all-zero baseline (the dataset mean colour
    in normalised space); (B, C, H, W). Sums to ``gap(x) - gap(0)`` up to the quadrature error."""
    explainer = IntegratedGradients(gap_function(model))
    return explainer.attribute(
        images,
        baselines=torch.zeros_like(images),
        additional_forward_args=(labels,),
        n_steps=n_steps,
        internal_batch_size=internal_batch_size,
    )


def shapley_patches(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    n_samples: int = 25,
    patch: int | None = None,
    perturbations_per_eval: int = 8,
) -> Tensor:
    """Shapley value sampling of the logit gap with square patches as players (absent = zero,
    the dataset mean colour); ``patch`` defaults to :func:`shapley_patch_size` (an 8x8 grid).

    Cost: ``n_samples`` x patches + 1 forwards per image (logged at INFO before starting).
    Each patch's value is spread evenly over its pixels and channels, so a heatmap sums to
    ``gap(x) - gap(0)`` (captum accumulates in float32). Sampling uses torch's global RNG.
    """
    channels, height, width = images.shape[1:]
    patch = patch or shapley_patch_size(height, width)
    rows, cols = grid_shape(height, width, patch)
    log.info("Shapley value sampling: %d samples x %d patches of %d px + 1 = %d forwards per "
             "image, %d images", n_samples, rows * cols, patch, n_samples * rows * cols + 1,
             len(images))
    ids = patch_ids(height, width, patch).to(images.device)
    mask = ids.expand(1, channels, height, width).contiguous()
    values = ShapleyValueSampling(gap_function(model)).attribute(
        images,
        baselines=0.0,
        feature_mask=mask,
        n_samples=n_samples,
        additional_forward_args=(labels,),
        perturbations_per_eval=perturbations_per_eval,
    )
    sizes = torch.bincount(ids.flatten()).to(values) * channels
    return (values / sizes[ids]).to(images.dtype)


Attribution = Callable[..., Tensor]
ATTRIBUTIONS: Registry[Attribution] = Registry("attribution method", ExplainError)
ATTRIBUTIONS.register("lrp", lrp)
ATTRIBUTIONS.register("ig", integrated_gradients)
ATTRIBUTIONS.register("svs", shapley_patches)


def register_attribution(name: str) -> Callable[[Attribution], Attribution]:
    """Register ``fn(model, images, labels, **options) -> (B, C, H, W) relevance`` as ``name``."""
    return ATTRIBUTIONS.register(name)


def list_attributions() -> list[str]:
    """Names of the registered attribution methods."""
    return ATTRIBUTIONS.names()


def attribute(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    method: str = "lrp",
    *,
    batch_size: int = 64,
    **options: object,
) -> Tensor:
    """(B, H, W) heatmaps of the logit gap of ``model`` (eval mode) summed over colour channels.

    ``images`` (B, C, H, W) are normalised; ``labels`` are in the model's output label space
    (subtask labels for a RestrictedTeacher). ``options`` go to the method: :func:`lrp`
    (``mean``, ``std`` required), :func:`integrated_gradients` or :func:`shapley_patches`.
    """
    explain = ATTRIBUTIONS.get(method)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ExplainError(
            f"expected images (B, C, H, W) and labels (B,), got {tuple(images.shape)} and "
            f"{tuple(labels.shape)}."
        )
    with frozen(model):
        maps = [
            explain(model, x, y, **options).detach().sum(1)
            for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True)
        ]
    return torch.cat(maps)
