"""Encoders supply the nodes X^{i,0}: feature maps at strides 1, 2, 4, ..., 2^L and their widths.

An encoder is any module with a ``widths`` tuple (channels of X^{i,0}, which the decoder reads,
so they may differ from the grid's widths), ``forward(x, levels) -> list[Tensor]`` returning the
first ``levels`` outputs X^{0..levels-1,0}, and nothing else the grid needs. Two exist:

- :class:`PlainEncoder`, the paper's (VGG-style double conv blocks and max pooling);
- :class:`TimmEncoder`, any backbone of timm (https://github.com/huggingface/pytorch-image-models)
  through ``features_only``, with ImageNet weights when they can be had. The paper used VGG-19,
  ResNet-152 and DenseNet-201 (timm's ``vgg19``, ``resnet152``, ``densenet201``).

Both run only the levels asked for, so a selected head skips the deep ones. This is the only file
that knows timm exists, and it imports timm lazily: ``import unetpp`` needs torch alone.
"""

from __future__ import annotations

import difflib
import math
import os
from functools import cache
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .blocks import ConvBlock
from .encoder_weights import check_encoder_weights, create_timm_backbone
from .layers import NormKind, max_pool_cls

EncoderWeights = Literal["imagenet"] | str | os.PathLike[str] | None  # or a local state dict (encoder_weights.py)
ENCODER_WEIGHTS: tuple[str | None, ...] = ("imagenet", None)

# A backbone whose first feature is at stride 2 (most CNNs) or 4 (ConvNeXt, many hybrids) gets
# the missing full-resolution levels from plain blocks; anything coarser is not a U-Net encoder.
MAX_FIRST_LEVEL = 2
DEFAULT_DEPTH = 4  # the paper's L; deeper grids need explicit widths


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


# ---------------------------------------------------------------------------------------- timm
def _timm() -> ModuleType:
    try:
        import timm
    except ImportError as e:
        raise ConfigError(
            "encoder=... needs timm, which is not installed; pip install 'unetpp[encoders]' (or timm>=1.0)"
        ) from e
    return timm


@cache
def backbone_features(name: str) -> tuple[tuple[int, int], ...]:
    """(channels, stride) of every feature map timm's ``features_only`` offers for `name`.

    Read from ``feature_info`` of a model built on the meta device, so no weights are allocated.

    Raises:
        ConfigError: timm is missing, or has no such model, or the model cannot return intermediates.
    """
    timm = _timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown encoder {name!r}: timm has no such model (see timm.list_models()){hint}")
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except (RuntimeError, NotImplementedError, TypeError):  # a model whose init needs real tensors
        model = timm.create_model(name, pretrained=False)
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
        raise ConfigError(f"encoder {name!r} has no forward_intermediates in timm, so it cannot feed a decoder")
    return tuple((int(f["num_chs"]), int(f["reduction"])) for f in model.feature_info)


@cache
def backbone_levels(name: str) -> tuple[int, dict[int, int]]:
    """The grid levels a backbone feeds: (first level, {level i: timm feature index at stride 2^i}).

    Levels run from the backbone's first stride (2^first) up while the strides double without a
    gap; when several features share a stride, the deepest one is taken.

    Raises:
        ConfigError: the backbone's features do not form such a ladder.
    """
    feats = backbone_features(name)
    by_level: dict[int, int] = {}
    for index, (_, stride) in enumerate(feats):
        level = round(math.log2(stride)) if stride > 0 else -1
        if 2**level == stride:
            by_level[level] = index
    first = min(by_level, default=MAX_FIRST_LEVEL + 1)
    if first > MAX_FIRST_LEVEL:
        raise ConfigError(
            f"encoder {name!r} has features at strides {[s for _, s in feats]}; a nested decoder needs a ladder "
            f"of strides starting at 1, 2 or 4 and doubling (e.g. 2, 4, 8, 16), so no depth fits it; "
            f"choose a CNN backbone such as resnet34, vgg19_bn, densenet201, efficientnet_b0 or convnext_tiny"
        )
    ladder = {}
    for level in range(first, max(by_level) + 1):
        if level not in by_level or (ladder and by_level[level] <= ladder[level - 1]):
            break
        ladder[level] = by_level[level]
    return first, ladder


def valid_depths(name: str) -> range:
    """Depths L for which `name` supplies every X^{i,0} at stride 2^i (plain blocks below its first stride)."""
    _, ladder = backbone_levels(name)
    return range(1, max(ladder) + 1)


def fit_depth(name: str, depth: int | None) -> int:
    """The grid depth for backbone `name`: `depth` if it fits, else the deepest that does, capped at 4.

    Raises:
        ConfigError: `depth` does not fit, naming the backbone's strides and the valid depths.
    """
    depths = valid_depths(name)
    if depth is None:
        return min(DEFAULT_DEPTH, depths[-1])
    if depth not in depths:
        strides = [s for _, s in backbone_features(name)]
        raise ConfigError(
            f"depth {depth} does not fit encoder {name!r}: its features are at strides {strides}, "
            f"so valid depths are {depths[0]}..{depths[-1]} (depth L needs a feature at stride 2^L)"
        )
    return depth


class TimmEncoder(nn.Module):
    """X^{i,0} from a timm backbone: ``timm.create_model(name, features_only=True, ...)``.

    Channels and strides come from ``feature_info``; level i takes the backbone's feature at stride
    2^i. Most backbones start at stride 2 (ResNet, DenseNet, EfficientNet; VGG starts at 1,
    ConvNeXt at 4), so the levels below the first stride come from plain blocks ``x_{i}_0``: a
    double 3x3 conv (f_0 wide) on the image for X^{0,0}, then on the max-pooled level above. The
    heads stay full-resolution and every X^{0,j} gets a learnt full-resolution skip.

    We measured the cheap alternative, the raw image as X^{0,0} (no stem block), with
    ``benchmarks/bench_encoder_stem.py``: on the synthetic cell images, from scratch, both learnt
    equally well (ResNet-18 UNet++, widths 32-512, 300 steps, 3 seeds: membrane IoU
    0.922 ± 0.019 with the stem, 0.922 ± 0.016 without), and dropping the stem saves 7% of the
    forward FLOPs of a ResNet-34 UNet++ at 4x1x256x256 -- yet it ran 10-20% *slower* on CPU,
    because concatenating a 1- or 3-channel image makes the top row's convolutions take 17, 33,
    49, ... channels, which oneDNN handles worse than multiples of 16. So the stem stays.

    The backbone is built with timm's ``feature_cls="getter"``, which calls the model's own
    ``prune_intermediate_layers``: stages deeper than the last level used are deleted, not
    skipped (ResNet-34 at depth 4 drops ``layer4``, VGG its 120 M-parameter classifier). A pruned
    UNet++ gets a backbone cut at its own depth, and ``forward(x, levels)`` runs the backbone's
    ``forward_intermediates(..., stop_early=True)``, so ``model(x, head=d)`` does not run stages
    below level d. (Backbones whose ``forward_intermediates`` ignores ``stop_early`` would still
    run them; every timm CNN family we tested honours it.)

    Args:
        name: timm model name, optionally with a weight tag (``"resnet50.a1_in1k"``).
        in_channels: image channels; timm adapts the first convolution's pretrained RGB weights
            (summed for grey, repeated and rescaled for more).
        levels: number of levels X^{0..levels-1,0} to supply (depth + 1).
        widths: the grid's widths; only those of the plain levels below the backbone's first
            stride are used.
        weights: "imagenet" for timm's default pretrained weights of `name`, the path of a local state dict
            (:mod:`~unetpp.models.encoder_weights`), None for random.
        norm: normalisation of the plain blocks (the backbone keeps its own).
        dropout: dropout of the plain blocks.

    Raises:
        ConfigError: unknown backbone, too many levels for its strides, or bad `weights`.
        CheckpointError: a weights file that does not fit the backbone (one line naming the keys).
        UnetppError: the pretrained weights cannot be downloaded or found in the cache.

    Example:
        >>> enc = TimmEncoder("resnet18", 3, levels=5, widths=(32, 64, 128, 256, 512), weights=None)
        >>> enc.widths, [f.shape[-1] for f in enc(torch.zeros(1, 3, 64, 64))]
        ((32, 64, 64, 128, 256), [64, 32, 16, 8, 4])
    """

    def __init__(
        self,
        name: str,
        in_channels: int,
        levels: int,
        widths: tuple[int, ...],
        weights: EncoderWeights = None,
        norm: NormKind = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_encoder_weights(weights)
        first, ladder = backbone_levels(name)
        if levels - 1 > max(ladder):
            fit_depth(name, levels - 1)  # raises, naming the strides and valid depths
        feats = backbone_features(name)
        self.name, self.first_level, self.frozen = name, first, False
        self.plain_levels = min(first, levels)
        self.pool = max_pool_cls(2)(kernel_size=2, stride=2)
        for i in range(self.plain_levels):
            self.add_module(
                f"x_{i}_0", ConvBlock(in_channels if i == 0 else widths[i - 1], widths[i], 2, norm, dropout)
            )
        self.indices = [ladder[i] for i in range(first, levels)]
        self.backbone = _create_backbone(name, in_channels, self.indices, weights) if self.indices else None
        self.widths = tuple(widths[: self.plain_levels]) + tuple(feats[k][0] for k in self.indices)

    def forward(self, x: Tensor, levels: int | None = None) -> list[Tensor]:
        levels = len(self.widths) if levels is None else levels
        feats: list[Tensor] = []
        y = x
        for i in range(min(levels, self.plain_levels)):
            y = getattr(self, f"x_{i}_0")(y if i == 0 else self.pool(y))
            feats.append(y)
        if levels > self.plain_levels and self.backbone is not None:
            feats += self.backbone.model.forward_intermediates(
                x, indices=self.indices[: levels - self.plain_levels], stop_early=True, intermediates_only=True
            )
        return feats

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) training the backbone: no gradients, and its batch norms stay in eval mode.

        Eval mode matters as much as ``requires_grad``: with frozen weights, batch norm would still
        move its running statistics towards the new data in train mode and so shift every feature
        the decoder learns from. The plain levels (new, randomly initialised) keep training.
        """
        self.frozen = frozen
        if self.backbone is not None:
            self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> TimmEncoder:
        super().train(mode)
        if self.frozen and self.backbone is not None:
            self.backbone.eval()
        return self

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The backbone's parameters: the ones a lower learning rate or freezing applies to."""
        return [] if self.backbone is None else list(self.backbone.parameters())


def _create_backbone(name: str, in_channels: int, indices: list[int], weights: EncoderWeights) -> nn.Module:
    kwargs = {"in_chans": in_channels, "features_only": True, "feature_cls": "getter", "out_indices": indices}
    return create_timm_backbone(name, weights, **kwargs)
