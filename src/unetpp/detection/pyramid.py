"""The nested, densely connected feature pyramid of Mask R-CNN++ (UNet++'s skips in place of FPN's).

FPN (Lin et al. 2017) builds P_i = conv3x3(lateral(C_i) + upsample(P_{i+1})): one top-down chain of
additions. UNet++ (Zhou et al., IEEE TMI 2019, Sec. III-E and Table V) replaces those plain skips
with its nested grid: the pyramid levels are the rows i = 0..L of the same triangle of nodes
X^{i,j} as the segmentation models, described by the same :class:`~unetpp.models.grid.GridSpec`
(``skip="dense"``) and built from the same blocks:

- X^{i,0} = 1x1 conv of the backbone's C_{i+2} to the pyramid width (FPN's lateral convolution);
- X^{i,j}, j >= 1, = ConvBlock(cat[UpSample(X^{i+1,j-1}), X^{i,0}, ..., X^{i,j-1}]), the grid's node
  (two 3x3 convs) on the grid's 2x2 transposed-conv up-sampling, concatenated in the grid's order;
- P_{i+2} = 3x3 conv of the last node of row i, X^{i,L-i} (the deepest row's last node is X^{L,0});
- "pool" = max-pooled (stride-2 subsampled) top level, torchvision's ``LastLevelMaxPool``.

Choices the paper leaves open, made here: every row has the same width (FPN's 256 by default),
because the RPN and RoI heads share their weights across levels and need equal channels; each
output keeps FPN's 3x3 output convolution so that the only difference from the baseline is the
skip design (without it P5 would be a bare 1x1 projection); the node blocks have no normalisation
by default (``norm=None``, the authors' block, as FPN has none: detection batches are 1-4 images,
too few for batch norm). Module names are grid coordinates, as in :mod:`unetpp.models.nested`:
``lateral.x_{i}_0``, ``ups.x_{i}_{j}``, ``nodes.x_{i}_{j}``, ``outputs.x_{i}_{j}``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..errors import ConfigError, InputShapeError
from ..models.blocks import ConvBlock, UpSample
from ..models.grid import GridSpec, Node, triangle
from ..models.layers import NORMS, NormKind
from ..models.nested import key


def pyramid_spec(levels: int, width: int) -> GridSpec:
    """The dense grid of a pyramid over `levels` backbone features: rows 0..levels-1, all `width` wide."""
    if levels < 2:
        raise ConfigError(f"a nested pyramid needs at least 2 backbone levels, got {levels}")
    depth = levels - 1
    return GridSpec((width,) * levels, "dense", triangle(depth), (depth,))


def last_nodes(spec: GridSpec) -> list[Node]:
    """The output node of each row i: X^{i, depth-i} (the finest row ends at the grid's head)."""
    return [(i, spec.depth - i) for i in range(spec.depth + 1)]


class NestedPyramid(nn.Module):
    """Drop-in for torchvision's ``FeaturePyramidNetwork(in_channels_list, out_channels, LastLevelMaxPool())``.

    Args:
        in_channels_list: channels of the backbone features, finest first (C2..C5 of a ResNet).
        out_channels: the pyramid width (every row and every output).
        norm: normalisation of the node blocks: None (default), "batch" or "instance".

    Forward: an ordered dict of backbone features (finest first, each half the size of the one
    before, as a backbone gives them); returns an ordered dict with the same keys holding P2..P5
    and an extra ``"pool"`` level, like torchvision's FPN.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int, norm: NormKind = None) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"pyramid norm must be one of {NORMS}, got {norm!r}")
        if not isinstance(out_channels, int) or out_channels < 1:
            raise ConfigError(f"pyramid width must be a positive integer, got {out_channels!r}")
        self.spec = pyramid_spec(len(in_channels_list), out_channels)
        self.in_channels_list = list(in_channels_list)
        self.out_channels = out_channels
        f = self.spec.widths
        self.lateral = nn.ModuleDict(
            {key((i, 0)): nn.Conv2d(c, out_channels, kernel_size=1) for i, c in enumerate(in_channels_list)}
        )
        order = self.spec.order()
        self.ups = nn.ModuleDict({key(n): UpSample(f[n[0] + 1], f[n[0]], 2) for n in order})
        self.nodes = nn.ModuleDict({key(n): ConvBlock(self.spec.in_channels(n), f[n[0]], 2, norm) for n in order})
        self.outputs = nn.ModuleDict(
            {key(n): nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1) for n in last_nodes(self.spec)}
        )
        self.extra = LastLevelMaxPool()

    def forward(self, x: OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
        names = list(x.keys())
        if len(names) != len(self.in_channels_list):
            raise InputShapeError(
                f"the pyramid takes {len(self.in_channels_list)} backbone features, got {len(names)} ({names})"
            )
        feats: dict[Node, Tensor] = {(i, 0): self.lateral[key((i, 0))](f) for i, f in enumerate(x.values())}
        for node in self.spec.order():
            up_from, *skips = self.spec.predecessors(node)
            first = feats[skips[0]]
            # 2x up-sampling of a level whose size was rounded up (odd sizes) overshoots by one: crop.
            up = self.ups[key(node)](feats[up_from])[..., : first.shape[-2], : first.shape[-1]]
            feats[node] = self.nodes[key(node)](torch.cat([up, *(feats[p] for p in skips)], dim=1))
        results = [self.outputs[key(n)](feats[n]) for n in last_nodes(self.spec)]
        results, names = self.extra(results, list(x.values()), names)
        return OrderedDict(zip(names, results, strict=True))
