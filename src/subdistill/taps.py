"""Layer taps: capture intermediate outputs by module path, and bring them to a common grid.

Layers are named by their module path (``layer3``, ``blocks.2.3``, ``encoder.layers.8``).
:class:`LayerTaps` attaches forward hooks for the duration of a ``with`` block and always
removes them. :func:`as_grid` turns CNN maps (B, C, H, W), transformer tokens (B, N, C) and
vectors (B, C) into maps (B, C, H, W); :func:`align` pools the larger of two maps to the
smaller one's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import LayerNotFoundError, ModelError, closest

MAX_PREFIX_TOKENS = 8


def _candidates(model: nn.Module) -> Iterable[nn.Module]:
    """The model and the models it wraps through ``.module`` (DDP, RestrictedTeacher, ...)."""
    while True:
        yield model
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return
        model = inner


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at ``path``, looked up in ``model`` and in the models it wraps."""
    for candidate in _candidates(model):
        try:
            return candidate.get_submodule(path)
        except AttributeError:
            continue
    innermost = list(_candidates(model))[-1]
    names = [name for name, _ in innermost.named_modules() if name]
    raise LayerNotFoundError(
        f"{type(innermost).__name__} has no layer {path!r}.{closest(path, names)} "
        "List the layers with `subdistill layers MODEL`."
    )


class LayerTaps:
    """Context manager recording the outputs of the named layers on every forward pass.

    ``taps.outputs[path]`` holds the latest output. A layer whose output the layers after it
    modify in place (``ReLU(inplace=True)``, ``x += ...``) would alter the captured tensor, so
    the downstream network may receive a copy instead; gradients still flow through the copy.
    ``clone=None`` (the default) copies on the first pass in each mode (train / eval) of the
    tapped layer, checks through the copy's version counter whether anything wrote to it, and
    from then on copies only the outputs that were written to (a copy of a 64-channel 32 × 32
    map of 64 images is 16 MB per step); the others are handed down as an alias, which gives the
    same gradients, bit for bit, as a copy. Reading ``outputs`` checks, by the version counter,
    that no uncopied capture was modified since its layer ran (:class:`ModelError` if it was).
    ``clone=True`` always copies, ``clone=False`` never does. With ``grad_leaves=True`` a
    captured output outside the autograd graph (a frozen model's, on inputs without gradients)
    becomes a leaf that requires one: gradients with respect to the tapped outputs are then
    computed by a backward pass that stops at the first tapped layer.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], clone: bool | None = None,
                 grad_leaves: bool = False):
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        self.clone, self.grad_leaves = clone, grad_leaves
        self._outputs: dict[str, Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # (path, training) -> whether the downstream layers write to that output in that mode
        self._written: dict[tuple[str, bool], bool] = {}
        self._probes: dict[str, tuple[tuple[str, bool], Tensor, int]] = {}
        self._uncopied: dict[str, int] = {}  # path -> version of the capture when its layer ran

    def __enter__(self) -> LayerTaps:
        try:
            for path in self.paths:
                module = resolve_module(self.model, path)
                self._handles.append(module.register_forward_hook(self._hook(path)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @property
    def outputs(self) -> dict[str, Tensor]:
        """The latest output of every tapped layer, by path."""
        for key, copy, version in self._probes.values():
            self._written[key] = copy._version != version
        self._probes.clear()
        for path, version in self._uncopied.items():
            if self._outputs[path]._version != version:
                raise ModelError(
                    f"the output of layer {path!r} was modified in place after it was captured, "
                    "and no copy was kept: tap it with LayerTaps(..., clone=True)")
        self._uncopied.clear()
        return self._outputs

    def remove(self) -> None:
        """Detach all hooks and forget the captured outputs."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._outputs.clear()
        self._probes.clear()
        self._uncopied.clear()

    def _hook(self, path: str):
        def hook(module: nn.Module, inputs, output):
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(tensor, Tensor):
                raise LayerNotFoundError(
                    f"layer {path!r} returns {type(output).__name__}, not a tensor; "
                    "tap a layer whose output is a tensor"
                )
            if self.grad_leaves and not tensor.requires_grad and torch.is_grad_enabled():
                tensor.requires_grad_(True)
            self._outputs[path] = tensor
            if tensor is not output:  # a tuple's first element: handed down as it is
                return None
            key = (path, module.training)
            copy = self._written.get(key) if self.clone is None else self.clone
            if copy is False:  # an alias, so that autograd sums the gradients as with a copy
                self._uncopied[path] = tensor._version
                return tensor.view_as(tensor)
            handed_down = tensor.clone()
            if copy is None:
                self._probes[path] = (key, handed_down, handed_down._version)
            return handed_down

        return hook


def prefix_token_count(num_tokens: int) -> int:
    """Number of leading class/register tokens: the fewest whose removal leaves a square grid."""
    for prefix in range(MAX_PREFIX_TOKENS + 1):
        side = math.isqrt(num_tokens - prefix) if num_tokens > prefix else 0
        if side > 0 and side * side == num_tokens - prefix:
            return prefix
    raise LayerNotFoundError(
        f"cannot arrange {num_tokens} tokens as a square grid after dropping up to "
        f"{MAX_PREFIX_TOKENS} class/register tokens; set prefix_tokens for this layer"
    )


def as_grid(x: Tensor, prefix_tokens: int | None = None) -> Tensor:
    """A layer output as a map (B, C, H, W).

    Maps pass through; vectors (B, C) become (B, C, 1, 1); tokens (B, N, C) lose their
    leading class/register tokens (``prefix_tokens``, inferred when None) and the patch
    tokens are laid out row-major on a square grid.
    """
    if x.ndim == 4:
        return x
    if x.ndim == 2:
        return x[:, :, None, None]
    if x.ndim == 3:
        b, n, c = x.shape
        prefix = prefix_token_count(n) if prefix_tokens is None else prefix_tokens
        side = math.isqrt(n - prefix)
        if side * side != n - prefix:
            raise LayerNotFoundError(
                f"{n} tokens minus {prefix} prefix tokens do not form a square grid"
            )
        return x[:, prefix:].transpose(1, 2).reshape(b, c, side, side)
    raise LayerNotFoundError(
        f"cannot interpret a layer output of shape {tuple(x.shape)}: expected (B, C), "
        "(B, N, C) tokens or (B, C, H, W) maps"
    )


def align(teacher: Tensor, student: Tensor) -> tuple[Tensor, Tensor]:
    """Adaptive-average-pool the spatially larger of two maps to the other's resolution."""
    t_size, s_size = teacher.shape[-2:], student.shape[-2:]
    if t_size == s_size:
        return teacher, student
    if t_size[0] * t_size[1] > s_size[0] * s_size[1]:
        return F.adaptive_avg_pool2d(teacher, (s_size[0], s_size[1])), student
    return teacher, F.adaptive_avg_pool2d(student, (t_size[0], t_size[1]))


def flatten_positions(grid: Tensor) -> Tensor:
    """A map (B, C, H, W) as per-position vectors (B, H·W, C)."""
    return grid.flatten(2).transpose(1, 2)


def _channels_last(x: Tensor) -> bool:
    """Whether a map is laid out channels-last (and not also plainly contiguous)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def channel_matmul(x: Tensor, weight: Tensor) -> Tensor:
    """``einsum("bchw,cj->bjhw", x, weight)``, a 1×1 convolution without bias, as one matrix
    product in ``x``'s own memory layout (several times faster than a 1×1 convolution on a
    CPU for the narrow outputs of the distillation heads)."""
    b, c, h, w = x.shape
    if _channels_last(x):
        rows = x.permute(0, 2, 3, 1).reshape(-1, c) @ weight
        return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2)
    return torch.matmul(weight.t(), x.reshape(b, c, h * w)).reshape(b, -1, h, w)


def channel_cross(a: Tensor, b: Tensor) -> Tensor:
    """``Σ aᵀb`` over the batch and positions of two maps (B, Cₐ, H, W) and (B, C_b, H, W):
    the (Cₐ × C_b) cross moment, as matrix products in the maps' layout."""
    batch, ca, h, w = a.shape
    cb = b.shape[1]
    if _channels_last(a) and _channels_last(b):
        return a.permute(0, 2, 3, 1).reshape(-1, ca).t() @ b.permute(0, 2, 3, 1).reshape(-1, cb)
    return torch.bmm(a.reshape(batch, ca, h * w), b.reshape(batch, cb, h * w).transpose(1, 2)).sum(0)


def add_channel_matmul_(out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``out += channel_matmul(x, weight)`` in place (``out`` in ``x``'s layout)."""
    b, c, h, w = x.shape
    if _channels_last(x) and _channels_last(out):
        out.permute(0, 2, 3, 1).reshape(-1, out.shape[1]).addmm_(
            x.permute(0, 2, 3, 1).reshape(-1, c), weight)
    elif out.is_contiguous():
        out.view(b, out.shape[1], h * w).baddbmm_(weight.t().expand(b, -1, -1),
                                                  x.reshape(b, c, h * w))
    else:
        out += channel_matmul(x, weight)
    return out

