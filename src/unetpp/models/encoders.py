"""Encoders supply the nodes X^{i,0}: feature maps at strides 1, 2, 4, ..., 2^L and their widths.

An encoder is any module with a ``widths`` tuple, ``forward(x, levels) -> list[Tensor]`` that
returns the first ``levels`` outputs X^{0..levels-1,0}, and ``truncated(levels)`` that returns a
smaller copy for pruning. The plain encoder below is the paper's (VGG-style double conv blocks and
2x max pooling); it runs only the levels asked for, so a selected head skips the deep ones.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import ConvBlock
from .layers import NormKind, max_pool_cls


class PlainEncoder(nn.Module):
    """X^{0,0} = block(x); X^{i,0} = block(maxpool(X^{i-1,0})). Sub-modules are named ``x_{i}_0``."""

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        spatial_dims: int,
        norm: NormKind = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self._init_args = (in_channels, spatial_dims, norm, dropout)
        self.pool = max_pool_cls(spatial_dims)(kernel_size=2, stride=2)
        for i, width in enumerate(self.widths):
            c_in = in_channels if i == 0 else self.widths[i - 1]
            self.add_module(f"x_{i}_0", ConvBlock(c_in, width, spatial_dims, norm, dropout))

    def forward(self, x: Tensor, levels: int | None = None) -> list[Tensor]:
        feats: list[Tensor] = []
        for i in range(len(self.widths) if levels is None else levels):
            x = getattr(self, f"x_{i}_0")(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats

    def truncated(self, levels: int) -> PlainEncoder:
        """A new encoder with the first `levels` levels and their weights."""
        small = PlainEncoder(self._init_args[0], self.widths[:levels], *self._init_args[1:])
        small.load_state_dict({k: v for k, v in self.state_dict().items() if int(k.split("_")[1]) < levels})
        return small.train(self.training)
