"""The building blocks of every node: a double 3x3 conv block, the 2x up-sampler and a 1x1 head."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from .layers import NormKind, conv_cls, conv_transpose_cls, norm_layer


class ConvBlock(nn.Sequential):
    """(3x3 conv -> norm -> ReLU [-> dropout]) twice: the node X^{i,j} of the paper.

    With ``norm=None`` this is the authors' block exactly (conv with bias, no normalisation); with a
    norm the convolutions drop their bias, which the norm's shift makes redundant.

    Example:
        >>> ConvBlock(64, 32, spatial_dims=2)(torch.zeros(1, 64, 8, 8)).shape
        torch.Size([1, 32, 8, 8])
    """

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
