"""Memory-efficient training of the blocks: autograd functions that rebuild in backward what is cheap to rebuild.

A block can train *memory-efficiently* (``ConvBlock.memory_efficient``, set for the whole model by
``NestedUNet.memory_efficient``): it keeps only what is expensive to recompute. UNet++'s training
memory is dominated by the concatenations feeding each node (up to 5 widths at full resolution) and by
the norm + activation outputs of every convolution; both are cheap to rebuild (a copy, an affine map and
a max), so, in the spirit of the memory-efficient DenseNet (Pleiss et al., 2017), two autograd functions
recompute them during backward instead of storing them:

* :class:`CatConv`: ``conv(cat(inputs))`` that saves the inputs (tensors the graph holds anyway), not
  their concatenation; forward concatenates a few samples at a time (the buffer is about the size of the
  output) and backward never concatenates: each input's gradients come from its slice of the weight;
* :class:`NormActConv`: ``conv(relu(norm(a)))`` that saves `a` (which the norm needs anyway), not the
  activation, and recomputes ``relu(norm(a))`` from the batch's statistics in backward (running
  statistics are updated once, in forward);
* :class:`NormAct` and :func:`recompute_outputs`: the block's output ``relu(norm(c))`` is saved by its
  consumers (the next nodes' concatenations, up-samplers, pooling, heads) as a recipe, ``c`` plus the
  norm, and rebuilt once when backward first needs it (shared by all consumers, dropped after the last).

Gradients are those of the plain block to float rounding (tests/models/test_memory_efficient.py).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ConvArgs = tuple[Any, ...]  # stride, padding, dilation, groups


def conv_args(conv: nn.Module) -> ConvArgs:
    return (conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, args: ConvArgs) -> Tensor:
    stride, padding, dilation, groups = args
    return (
        F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        if x.ndim == 4
        else F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    )


def _conv_backward(
    grad: Tensor, x: Tensor, weight: Tensor, has_bias: bool, args: ConvArgs, mask: tuple[bool, bool, bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(grad input, grad weight, grad bias) of a convolution, without running its forward again.

    Under autocast the forward ran in the gradient's dtype; the gradients come back in each tensor's own.
    """
    stride, padding, dilation, groups = args
    dtype = grad.dtype
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad.contiguous(memory_format=_layout(x)),
        x.to(dtype),
        weight.to(dtype),
        [weight.shape[0]] if has_bias else None,
        list(stride),
        list(padding),
        list(dilation),
        False,
        [0] * (x.ndim - 2),
        groups,
        list(mask),
    )
    cast = (x.dtype, weight.dtype, weight.dtype)
    return tuple(None if g is None or not m else g.to(c) for g, m, c in zip((gx, gw, gb), mask, cast, strict=True))


def _layout(x: Tensor) -> torch.memory_format:
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.ndim == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


class Norm:
    """One norm layer's forward, its rebuild from saved statistics and its backward, for recomputation.

    Batch norm keeps the batch's mean and inverse std from forward (C numbers each), so that rebuilding
    its output is one affine pass and its backward is PyTorch's own (``native_batch_norm_backward``).
    Instance norm (statistics per sample and channel) is recomputed with autograd.
    """

    def __init__(self, norm: nn.Module) -> None:
        self.norm = norm
        self.batch = isinstance(norm, nn.modules.batchnorm._BatchNorm)
        self.stats: tuple[Tensor, Tensor, bool] | None = None

    def forward(self, a: Tensor) -> Tensor:
        """The norm's output; batch norm updates its running statistics here, as nn.BatchNorm does."""
        n = self.norm
        if not self.batch:
            return n(a)
        momentum = 0.0 if n.momentum is None else n.momentum
        if n.training and n.track_running_stats:
            n.num_batches_tracked.add_(1)
            momentum = 1.0 / float(n.num_batches_tracked) if n.momentum is None else n.momentum
        train = n.training or n.running_mean is None
        running = (n.running_mean, n.running_var) if not n.training or n.track_running_stats else (None, None)
        out, mean, invstd = torch.native_batch_norm(a, n.weight, n.bias, *running, train, momentum, n.eps)
        self.stats = (mean, invstd, train)
        return out

    def _scale_shift(self, a: Tensor) -> tuple[Tensor, Tensor]:
        n = self.norm
        mean, invstd, train = self.stats  # type: ignore[misc]
        if not train:
            mean, invstd = n.running_mean, (n.running_var + n.eps).rsqrt()
        scale = invstd if n.weight is None else invstd * n.weight
        shift = -mean * scale if n.bias is None else n.bias - mean * scale
        view = (1, -1) + (1,) * (a.ndim - 2)
        return scale.to(a.dtype).view(view), shift.to(a.dtype).view(view)

    def rebuild(self, a: Tensor) -> Tensor:
        """relu(norm(a)) again, without autograd and without touching running statistics."""
        if not self.batch:
            n = self.norm
            return F.relu(F.instance_norm(a, None, None, n.weight, n.bias, True, 0.0, n.eps))
        scale, shift = self._scale_shift(a)
        return torch.addcmul(shift, a, scale).relu_()

    def backward(
        self, grad_y: Tensor, a: Tensor, y: Tensor, needs: tuple[bool, bool, bool]
    ) -> tuple[Tensor | None, ...]:
        """Gradients (a, weight, bias) of relu(norm(a)), given its output `y`."""
        n = self.norm
        grad_pre = torch.ops.aten.threshold_backward(grad_y.to(y.dtype), y, 0)
        if not self.batch:
            with torch.enable_grad():
                leaves = [a.detach().requires_grad_(), n.weight, n.bias]
                pre = F.instance_norm(leaves[0], None, None, n.weight, n.bias, True, 0.0, n.eps)
            wanted = [t for t, need in zip(leaves, needs, strict=True) if need and t is not None]
            grads = iter(torch.autograd.grad(pre, wanted, grad_pre))
            return tuple(next(grads) if need and t is not None else None for t, need in zip(leaves, needs, strict=True))
        mean, invstd, train = self.stats  # type: ignore[misc]
        mask = [needs[0], needs[1] and n.weight is not None, needs[2] and n.bias is not None]
        ga, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad_pre.to(a.dtype), a, n.weight, n.running_mean, n.running_var, mean, invstd, train, n.eps, mask
        )
        return tuple(g if m else None for g, m in zip((ga, gw, gb), mask, strict=True))


class CatConv(torch.autograd.Function):
    """conv(cat(inputs)) that stores the inputs (held by the graph anyway), not the concatenation."""

    @staticmethod
    def forward(ctx: Any, args: ConvArgs, weight: Tensor, bias: Tensor | None, *parts: Tensor) -> Tensor:
        ctx.args, ctx.has_bias, ctx.sizes = args, bias is not None, [p.shape[1] for p in parts]
        ctx.save_for_backward(weight, *parts)
        if len(parts) == 1:
            return _conv(parts[0], weight, bias, args)
        # concatenated a few samples at a time: the buffer is about the size of the output, not the
        # inputs' sum (5x at UNet++'s last full-resolution node), which was the peak of training
        n = parts[0].shape[0]
        step = math.ceil(n / min(n, math.ceil(sum(ctx.sizes) / weight.shape[0])))
        out = None
        for i in range(0, n, step):
            y = _conv(torch.cat([p[i : i + step] for p in parts], dim=1), weight, bias, args)
            if step >= n:
                return y
            if out is None:
                out = torch.empty((n, *y.shape[1:]), dtype=y.dtype, device=y.device, memory_format=_layout(y))
            out[i : i + step] = y
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # conv(cat(parts), w) = sum_k conv(part_k, w_k): each part's input and weight gradients come from
        # its own slice of the weight, so neither the concatenation nor its whole gradient is ever built
        weight, *parts = ctx.saved_tensors
        need_w, need_b = ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]
        gparts: list[Tensor | None] = []
        gws: list[Tensor] = []
        gb = None
        for k, (w, part) in enumerate(zip(weight.split(ctx.sizes, 1), parts, strict=True)):
            first = k == 0
            mask = (ctx.needs_input_grad[3 + k], need_w, need_b and first)
            gx, gw, g = _conv_backward(grad, part, w.contiguous(), ctx.has_bias and first, ctx.args, mask)
            gparts.append(gx)
            gb = g if first else gb
            if gw is not None:
                gws.append(gw)
        return (None, torch.cat(gws, 1) if need_w else None, gb, *gparts)


class NormActConv(torch.autograd.Function):
    """conv(relu(norm(a))) (conv without bias) that stores `a`, not the activation; rebuilds it in backward."""

    @staticmethod
    def forward(
        ctx: Any, norm: Norm, args: ConvArgs, a: Tensor, nw: Tensor | None, nb: Tensor | None, weight: Tensor
    ) -> Tensor:
        ctx.norm, ctx.args = norm, args
        ctx.save_for_backward(a, weight)
        return _conv(norm.forward(a).relu_(), weight, None, args)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, weight = ctx.saved_tensors
        y = ctx.norm.rebuild(a)
        gy, gw, _ = _conv_backward(grad, y, weight, False, ctx.args, (True, ctx.needs_input_grad[5], False))
        ga, gnw, gnb = ctx.norm.backward(gy, a, y, ctx.needs_input_grad[2:5])
        return (None, None, ga, gnw, gnb, gw)


class NormAct(torch.autograd.Function):
    """relu(norm(c)) that stores `c` only; the output is rebuilt (once, shared) by its :class:`Recipe`."""

    @staticmethod
    def forward(ctx: Any, norm: Norm, recipe: Recipe, c: Tensor, nw: Tensor | None, nb: Tensor | None) -> Tensor:
        ctx.norm, ctx.recipe = norm, recipe
        ctx.save_for_backward(c)
        recipe.add_user()  # this backward is the rebuilt output's last user
        return norm.forward(c).relu_()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (c,) = ctx.saved_tensors
        y = ctx.recipe.get()
        return (None, None, *ctx.norm.backward(grad, c, y, ctx.needs_input_grad[2:5]))


class Recipe:
    """How to rebuild a tensor in backward; rebuilt once, shared by every user, freed after the last.

    `source`: the recipe this one rebuilds from (an up-sampler's input), which counts this one as a user.
    """

    def __init__(self, rebuild: Callable[[], Tensor], source: Recipe | None = None) -> None:
        self.rebuild, self.source = rebuild, source
        self.packed, self.value = 0, None

    def add_user(self) -> None:
        if self.packed == 0 and self.source is not None:
            self.source.add_user()
        self.packed += 1

    def get(self) -> Tensor:
        if self.value is None:
            with torch.no_grad():
                self.value = self.rebuild()
        value = self.value
        self.packed -= 1
        if self.packed <= 0:  # the last user has it: free the rebuilt copy with the graph
            self.value = None
        return value


_ACTIVE = threading.local()  # the recipes of the forward pass running under recompute_outputs()


def recipe_of(t: Tensor) -> Recipe | None:
    registry = getattr(_ACTIVE, "recipes", None)
    entry = None if registry is None else registry.get(id(t))
    return entry[1] if entry is not None and entry[0] is t else None


def register(out: Tensor, recipe: Recipe) -> None:
    registry = getattr(_ACTIVE, "recipes", None)
    if registry is not None:
        registry[id(out)] = (out, recipe)


class _Outer:
    """A tensor saved through hooks that were active outside ours (e.g. the plan's memory counter)."""

    def __init__(self, packed: Any, unpack: Any) -> None:
        self.packed, self.unpack = packed, unpack


def _pack(t: Tensor) -> Tensor | Recipe | _Outer:
    recipe = recipe_of(t)
    if recipe is not None:
        recipe.add_user()
        return recipe
    outer = _ACTIVE.outer
    return t if outer is None else _Outer(outer[0](t), outer[1])


def _unpack(saved: Tensor | Recipe | _Outer) -> Tensor:
    if isinstance(saved, Recipe):
        return saved.get()
    return saved.unpack(saved.packed) if isinstance(saved, _Outer) else saved


@contextmanager
def recompute_outputs() -> Iterator[None]:
    """Within this, tensors saved for backward that are memory-efficient blocks' outputs are kept as recipes.

    Saved-tensor hooks do not stack (the innermost wins), so hooks already active (a memory counter, an
    offloader) still receive every tensor that is really stored.
    """
    if getattr(_ACTIVE, "recipes", None) is not None:  # nested (a model inside a model): the outer one rules
        yield
        return
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    _ACTIVE.recipes, _ACTIVE.outer = {}, top(False) if top is not None else None
    try:
        with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
            yield
    finally:
        _ACTIVE.recipes = _ACTIVE.outer = None
