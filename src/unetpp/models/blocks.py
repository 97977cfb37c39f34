"""The building blocks of every node: a double 3x3 conv block, the 2x up-sampler and a 1x1 head.

A block can train *memory-efficiently* (``ConvBlock.memory_efficient``, set for the whole model by
``NestedUNet.memory_efficient``): the concatenations feeding each node and the norm + activation outputs
are rebuilt in backward instead of stored, by the autograd functions of :mod:`unetpp.models.recompute`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import NormKind, conv_cls, conv_transpose_cls, norm_layer
from .recompute import CatConv, Norm, NormAct, NormActConv, Recipe, conv_args, recipe_of, register


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
        a = CatConv.apply(conv_args(self.conv1), self.conv1.weight, self.conv1.bias, *parts)
        recomputable = isinstance(self.norm1, nn.modules.batchnorm._NormBase)
        if not recomputable or "drop1" in self._modules:  # nothing to rebuild from: the plain path
            names: tuple[str, ...] = ("norm1", "act1", "drop1", "conv2", "norm2", "act2", "drop2")
        else:  # conv2(relu(norm1(a))) without storing relu's output
            n1 = self.norm1
            a = NormActConv.apply(Norm(n1), conv_args(self.conv2), a, n1.weight, n1.bias, self.conv2.weight)
            names = ("norm2", "act2", "drop2")
            if "drop2" not in self._modules:  # the output itself is rebuilt from conv2's output when needed
                n2 = self.norm2
                norm2 = Norm(n2)
                recipe = Recipe(lambda c=a: norm2.rebuild(c))
                out = NormAct.apply(norm2, recipe, a, n2.weight, n2.bias)
                register(out, recipe)
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
        out = self.conv(x)
        source = recipe_of(x)
        if source is not None:  # memory-efficient training: rebuilt from the (rebuilt) input when needed
            conv, dtype, device = self.conv, out.dtype, x.device.type
            amp = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
            amp_dtype = torch.get_autocast_dtype(device) if amp else None

            def rebuild() -> Tensor:  # runs in backward, where autocast is off: under the forward's autocast
                with torch.autocast(device, dtype=amp_dtype, enabled=amp) if amp else contextlib.nullcontext():
                    return conv(source.get()).to(dtype)

            register(out, Recipe(rebuild, source))
        return out


class Head(nn.Module):
    """1x1 convolution to class logits on a full-resolution node X^{0,j}."""

    def __init__(self, in_channels: int, classes: int, spatial_dims: int) -> None:
        super().__init__()
        self.conv = conv_cls(spatial_dims)(in_channels, classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def set_memory_efficient(module: nn.Module, enabled: bool) -> None:
    """Turn recomputation on or off for every :class:`ConvBlock` inside `module`."""
    for m in module.modules():
        if isinstance(m, ConvBlock):
            m.memory_efficient = bool(enabled)
