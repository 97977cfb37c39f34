"""The building blocks of every node: a double 3x3 conv block, the 2x up-sampler and a 1x1 head.

A block can train *memory-efficiently* (``ConvBlock.memory_efficient``, set for the whole model by
``NestedUNet.memory_efficient``): it keeps only what is expensive to recompute. UNet++'s training
memory is dominated by the concatenations feeding each node (up to 5 widths at full resolution) and by
the norm + activation outputs of every convolution; both are cheap to rebuild (a copy, an affine map and
a max), so, in the spirit of the memory-efficient DenseNet (Pleiss et al., 2017), two autograd functions
recompute them during backward instead of storing them:

* :class:`_CatConv`: ``conv(cat(inputs))`` that saves the inputs (tensors the graph holds anyway), not
  their concatenation, and concatenates them again in backward;
* :class:`_NormActConv`: ``conv(relu(norm(a)))`` that saves `a` (which the norm needs anyway), not the
  activation, and recomputes ``relu(norm(a))`` from the batch's statistics in backward (running
  statistics are updated once, in forward);
* :class:`_NormAct` and :func:`recompute_outputs`: the block's output ``relu(norm(c))`` is saved by its
  consumers (the next nodes' concatenations, up-samplers, pooling, heads) as a recipe, ``c`` plus the
  norm, and rebuilt once when backward first needs it (shared by all consumers, dropped after the last).

Gradients are those of the plain block to float rounding (tests/models/test_memory_efficient.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import NormKind, conv_cls, conv_transpose_cls, norm_layer


class ConvBlock(nn.Sequential):
    """(3x3 conv -> norm -> ReLU [-> dropout]) twice: the node X^{i,j} of the paper.

    With ``norm=None`` this is the authors' block exactly (conv with bias, no normalisation); with a
    norm the convolutions drop their bias, which the norm's shift makes redundant. The block takes one
    tensor or the list of tensors to concatenate (channels); with :attr:`memory_efficient` and gradients
    on, the concatenation (and, with a norm and no dropout, the first norm + ReLU) is recomputed in
    backward instead of stored.

    Example:
        >>> ConvBlock(64, 32, spatial_dims=2)(torch.zeros(1, 64, 8, 8)).shape
        torch.Size([1, 32, 8, 8])
    """

    memory_efficient: bool = False

    def __init__(
        self, in_channels: int, out_channels: int, spatial_dims: int, norm: NormKind = None, dropout: float = 0.0
    ) -> None:
        conv = conv_cls(spatial_dims)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for k, c_in in ((1, in_channels), (2, out_channels)):
            layers[f"conv{k}"] = conv(c_in, out_channels, kernel_size=3, padding=1, bias=norm is None)
            layers[f"norm{k}"] = norm_layer(norm, spatial_dims, out_channels)
            layers[f"act{k}"] = nn.ReLU(inplace=True)
            if dropout > 0:
                layers[f"drop{k}"] = nn.Dropout(dropout)
        super().__init__(layers)

    def forward(self, x: Tensor | Sequence[Tensor]) -> Tensor:  # type: ignore[override]
        parts = [x] if isinstance(x, Tensor) else list(x)
        if not (self.memory_efficient and torch.is_grad_enabled()):
            return super().forward(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
        a = _CatConv.apply(_conv_args(self.conv1), self.conv1.weight, self.conv1.bias, *parts)
        recomputable = isinstance(self.norm1, nn.modules.batchnorm._NormBase)
        if not recomputable or "drop1" in self._modules:  # nothing to rebuild from: the plain path
            names: tuple[str, ...] = ("norm1", "act1", "drop1", "conv2", "norm2", "act2", "drop2")
        else:  # conv2(relu(norm1(a))) without storing relu's output
            n1 = self.norm1
            a = _NormActConv.apply(n1, _norm_fn(n1), _conv_args(self.conv2), a, n1.weight, n1.bias, self.conv2.weight)
            names = ("norm2", "act2", "drop2")
            if "drop2" not in self._modules:  # the output itself is rebuilt from conv2's output when needed
                n2 = self.norm2
                fn = _norm_fn(n2)
                out = _NormAct.apply(n2, fn, a, n2.weight, n2.bias)
                _register(out, _Recipe(a, fn, n2.weight, n2.bias, out))
                return out
        for name in names:
            if name in self._modules:
                a = self._modules[name](a)
        return a


class UpSample(nn.Module):
    """2x up-sampling by a 2x2 (2x2x2) transposed convolution with stride 2, as in the authors' code."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int) -> None:
        super().__init__()
        self.conv = conv_transpose_cls(spatial_dims)(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Head(nn.Module):
    """1x1 convolution to class logits on a full-resolution node X^{0,j}."""

    def __init__(self, in_channels: int, classes: int, spatial_dims: int) -> None:
        super().__init__()
        self.conv = conv_cls(spatial_dims)(in_channels, classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


# --------------------------------------------------------------------------------------------- recompute

ConvArgs = tuple[Any, ...]  # stride, padding, dilation, groups


def _conv_args(conv: nn.Module) -> ConvArgs:
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


def _norm_fn(norm: nn.Module) -> Any:
    """A pure function of (a, weight, bias) giving what `norm` gives now, without touching running stats."""
    if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
        eps = norm.eps
        return lambda a, w, b: F.instance_norm(a, None, None, w, b, True, 0.0, eps)
    use_batch = norm.training or norm.running_mean is None
    if use_batch:
        return lambda a, w, b: F.batch_norm(a, None, None, w, b, True, 0.0, norm.eps)
    return lambda a, w, b: F.batch_norm(a, norm.running_mean, norm.running_var, w, b, False, 0.0, norm.eps)


class _CatConv(torch.autograd.Function):
    """conv(cat(inputs)) that stores the inputs (held by the graph anyway), not the concatenation."""

    @staticmethod
    def forward(ctx: Any, args: ConvArgs, weight: Tensor, bias: Tensor | None, *parts: Tensor) -> Tensor:
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        ctx.args, ctx.has_bias, ctx.sizes = args, bias is not None, [p.shape[1] for p in parts]
        ctx.save_for_backward(weight, *parts)
        return _conv(x, weight, bias, args)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        weight, *parts = ctx.saved_tensors
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        need_x = any(ctx.needs_input_grad[3:])
        mask = (need_x, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2])
        gx, gw, gb = _conv_backward(grad, x, weight, ctx.has_bias, ctx.args, mask)
        del x
        gparts = (
            [None] * len(parts)
            if gx is None
            else [g.to(p.dtype) for g, p in zip(gx.split(ctx.sizes, 1), parts, strict=False)]
        )
        return (None, gw, gb, *gparts)


class _NormActConv(torch.autograd.Function):
    """conv(relu(norm(a))) (conv without bias) that stores `a`, not the activation; recomputes it in backward.

    Forward runs the norm module itself (so batch norm updates its running statistics once, as usual);
    backward recomputes with `norm_fn`, the same normalisation without the update.
    """

    @staticmethod
    def forward(
        ctx: Any,
        norm: nn.Module,
        norm_fn: Any,
        args: ConvArgs,
        a: Tensor,
        nw: Tensor | None,
        nb: Tensor | None,
        weight: Tensor,
    ) -> Tensor:
        ctx.norm_fn, ctx.args = norm_fn, args
        ctx.save_for_backward(a, nw, nb, weight)
        return _conv(F.relu(norm(a)), weight, None, args)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, nw, nb, weight = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [None if t is None else t.detach().requires_grad_() for t in (a, nw, nb)]
            y = F.relu(ctx.norm_fn(*leaves))
        gy, gw, _ = _conv_backward(grad, y.detach(), weight, False, ctx.args, (True, ctx.needs_input_grad[6], False))
        wanted = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(y, wanted, gy.to(y.dtype)))
        ga, gnw, gnb = (None if t is None else next(grads) for t in leaves)
        return (None, None, None, ga, gnw, gnb, gw)


class _NormAct(torch.autograd.Function):
    """relu(norm(c)) that stores `c` only; backward recomputes the normalisation (running stats updated once)."""

    @staticmethod
    def forward(ctx: Any, norm: nn.Module, norm_fn: Any, c: Tensor, nw: Tensor | None, nb: Tensor | None) -> Tensor:
        ctx.norm_fn = norm_fn
        ctx.save_for_backward(c, nw, nb)
        return F.relu(norm(c))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        with torch.enable_grad():
            leaves = [None if t is None else t.detach().requires_grad_() for t in ctx.saved_tensors]
            y = F.relu(ctx.norm_fn(*leaves))
        grads = iter(torch.autograd.grad(y, [t for t in leaves if t is not None], grad.to(y.dtype)))
        return (None, None, *(None if t is None else next(grads) for t in leaves))


class _Recipe:
    """How to rebuild a block's output in backward: relu(norm_fn(c)); rebuilt once, shared by every consumer."""

    def __init__(self, c: Tensor, norm_fn: Any, nw: Tensor | None, nb: Tensor | None, like: Tensor) -> None:
        self.c, self.norm_fn, self.nw, self.nb = c, norm_fn, nw, nb
        self.dtype, self.layout, self.ptr = like.dtype, _layout(like), like.data_ptr()
        self.packed, self.value = 0, None

    def get(self) -> Tensor:
        if self.value is None:
            with torch.no_grad():
                self.value = F.relu(self.norm_fn(self.c, self.nw, self.nb)).to(self.dtype)
                self.value = self.value.contiguous(memory_format=self.layout)
        value = self.value
        self.packed -= 1
        if self.packed <= 0:  # the last consumer has it: free the rebuilt copy with the graph
            self.value = None
        return value


_ACTIVE = threading.local()  # the recipes of the forward pass running under recompute_outputs()


def _register(out: Tensor, recipe: _Recipe) -> None:
    registry = getattr(_ACTIVE, "recipes", None)
    if registry is not None:
        registry[id(out)] = (out, recipe)


class _Outer:
    """A tensor saved through hooks that were active outside ours (e.g. the plan's memory counter)."""

    def __init__(self, packed: Any, unpack: Any) -> None:
        self.packed, self.unpack = packed, unpack


def _pack(t: Tensor) -> Tensor | _Recipe | _Outer:
    entry = _ACTIVE.recipes.get(id(t))
    if entry is not None and entry[0] is t:
        entry[1].packed += 1
        return entry[1]
    outer = _ACTIVE.outer
    return t if outer is None else _Outer(outer[0](t), outer[1])


def _unpack(saved: Tensor | _Recipe | _Outer) -> Tensor:
    if isinstance(saved, _Recipe):
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


def set_memory_efficient(module: nn.Module, enabled: bool) -> None:
    """Turn recomputation on or off for every :class:`ConvBlock` inside `module`."""
    for m in module.modules():
        if isinstance(m, ConvBlock):
            m.memory_efficient = bool(enabled)
