"""Registry of the paper's variants: each name maps to a small function returning a GridSpec."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..errors import ConfigError
from .encoders import EncoderWeights, fit_depth
from .grid import GridSpec, anti_diagonal, triangle
from .layers import NormKind
from .nested import NestedUNet

PAPER_WIDTHS = (32, 64, 128, 256, 512)
WIDE_WIDTHS = (35, 70, 140, 280, 560)

SpecBuilder = Callable[[int, tuple[int, ...], bool], GridSpec]
_REGISTRY: dict[str, tuple[SpecBuilder, tuple[int, ...]]] = {}


def register_model(name: str, default_widths: tuple[int, ...] = PAPER_WIDTHS) -> Callable[[SpecBuilder], SpecBuilder]:
    def wrap(fn: SpecBuilder) -> SpecBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = (fn, default_widths)
        return fn

    return wrap


# Other model families, built by their own function ("module:function"), imported only when used
# (the detectors need torchvision, which ``import unetpp`` must not import).
OTHER_BUILDERS: dict[str, str] = {
    "maskrcnn": "unetpp.detection:build_detector",
    "maskrcnn++": "unetpp.detection:build_detector",
}


def list_models(*, detectors: bool = False) -> list[str]:
    """Names of the nested-grid family (what :func:`build_nested` takes); with `detectors`, also the
    other families :func:`build_model` builds ("maskrcnn", "maskrcnn++"), which take other arguments.
    """
    return list(_REGISTRY) + (list(OTHER_BUILDERS) if detectors else [])


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build any model by name: the UNet++ family (arguments: :func:`build_nested`) or another
    family of :data:`OTHER_BUILDERS` (``"maskrcnn"``, ``"maskrcnn++"``: :func:`unetpp.detection.build_detector`).
    """
    if name in OTHER_BUILDERS:
        module, function = OTHER_BUILDERS[name].split(":")
        return getattr(importlib.import_module(module), function)(name, **kwargs)
    if name not in _REGISTRY:  # before the call: a detector's arguments would otherwise be a TypeError
        _unknown(name)
    return build_nested(name, **kwargs)


def _unknown(name: str) -> None:
    names = list_models(detectors=True)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown model {name!r}; available: {', '.join(names)}{hint}")


def _heads(depth: int, deep_supervision: bool) -> tuple[int, ...]:
    return tuple(range(1, depth + 1)) if deep_supervision else (depth,)


@register_model("unet")
def unet(depth: int, widths: tuple[int, ...], deep_supervision: bool) -> GridSpec:
    """U-Net L^depth: the anti-diagonal decoder with long skips; it has one head whatever the flag."""
    return GridSpec(widths, "long", anti_diagonal(depth), (depth,))


@register_model("wide_unet", WIDE_WIDTHS)
def wide_unet(depth: int, widths: tuple[int, ...], deep_supervision: bool) -> GridSpec:
    """U-Net with widths 35-70-140-280-560: UNet++'s parameter budget without its skips."""
    return GridSpec(widths, "long", anti_diagonal(depth), (depth,))


@register_model("unet_e")
def unet_e(depth: int, widths: tuple[int, ...], deep_supervision: bool) -> GridSpec:
    """U-Net^e: U-Nets of depths 1..L sharing one encoder, each with its own decoder chain."""
    return GridSpec(widths, "long", triangle(depth), _heads(depth, deep_supervision))


@register_model("unet+")
def unet_plus(depth: int, widths: tuple[int, ...], deep_supervision: bool) -> GridSpec:
    """UNet+: the full grid with short skips X^{i,j-1} -> X^{i,j}."""
    return GridSpec(widths, "short", triangle(depth), _heads(depth, deep_supervision))


@register_model("unet++")
def unet_plus_plus(depth: int, widths: tuple[int, ...], deep_supervision: bool) -> GridSpec:
    """UNet++: the full grid with dense skips X^{i,0..j-1} -> X^{i,j}."""
    return GridSpec(widths, "dense", triangle(depth), _heads(depth, deep_supervision))


def build_nested(
    name: str,
    *,
    in_channels: int = 1,
    classes: int = 1,
    depth: int | None = None,
    widths: Sequence[int] | None = None,
    deep_supervision: bool = True,
    spatial_dims: int = 2,
    norm: NormKind = "batch",
    dropout: float = 0.0,
    encoder: str | None = None,
    encoder_weights: EncoderWeights = "imagenet",
    encoder_freeze: bool = False,
    memory_efficient: bool = False,
) -> NestedUNet:
    """Build a member of the UNet++ family by name.

    Args:
        name: one of :func:`list_models`.
        in_channels: image channels (1 grey, 3 RGB, ...).
        classes: 1 for binary segmentation (sigmoid), >1 for softmax over classes.
        depth: number of down-samplings L (U-Net L^d for "unet"); default 4, or with an encoder
            the deepest its strides allow up to 4 (ResNet: features at strides 2..32 allow 1..5).
        widths: channels per level, L + 1 values; default (32, 64, 128, 256, 512)[:L+1], or
            (35, 70, 140, 280, 560)[:L+1] for "wide_unet". With an encoder the defaults are halved,
            (16, 32, 64, 128, 256): the decoder widths of the authors' backbone experiments
            (``decoder_filters=(256, 128, 64, 32, 16)`` over strides 16..1 in their Keras code), since a
            pretrained backbone carries the features and the full-resolution row dominates the cost.
        deep_supervision: a head on every X^{0,j} (needed for ensemble mode and pruning) or only on X^{0,L}.
        spatial_dims: 2 or 3.
        norm: "batch" (default), "instance" or None for the authors' plain block. Batch norm is the
            default because it trains faster and more stably from scratch at the paper's learning
            rates, and folds into the convolutions at inference, so it costs nothing when deployed.
        dropout: dropout rate after each convolution.
        encoder: None for the paper's plain VGG-style encoder trained from scratch, or any timm
            backbone name (2D): "resnet34", the paper's "vgg19" / "vgg19_bn", "resnet152",
            "densenet201", "efficientnet_b0", "convnext_tiny", ... Its features at strides 2^i
            become X^{i,0}; the decoder keeps `widths`.
        encoder_weights: "imagenet" (timm's default pretrained weights, downloaded once and
            cached) or None for random initialisation. Ignored without `encoder`.
        encoder_freeze: keep the backbone fixed (no gradients, batch norms in eval mode) and train
            the decoder only. For a lower encoder learning rate instead, see
            :meth:`NestedUNet.parameter_groups`.
        memory_efficient: recompute concatenations and norm + ReLU in backward instead of storing them:
            less training memory for a little more time, the same gradients (see
            :attr:`NestedUNet.memory_efficient`).

    Raises:
        ConfigError: unknown name or encoder, bad depth or widths (including a depth the encoder's
            strides cannot supply), or another invalid argument.
        UnetppError: `encoder_weights="imagenet"` but the weights cannot be downloaded or found in
            the cache.

    Example:
        >>> m = build_model("unet++", depth=3, widths=(8, 16, 32, 64))
        >>> [y.shape for y in m(torch.zeros(1, 1, 32, 32))]
        [torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 32, 32])]
    """
    if name not in _REGISTRY:
        _unknown(name)
    builder, default_widths = _REGISTRY[name]
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise ConfigError(f"depth must be an integer >= 1, got {depth!r}")
    if encoder is None:
        depth = 4 if depth is None else depth
    elif spatial_dims != 2:
        raise ConfigError(f"encoder={encoder!r} is a 2D backbone; use encoder=None for spatial_dims={spatial_dims}")
    else:
        depth = fit_depth(encoder, depth)
    if widths is None:
        if encoder is not None:
            default_widths = tuple(w // 2 for w in default_widths)
        if depth + 1 > len(default_widths):
            raise ConfigError(f"depth {depth} needs {depth + 1} widths; pass widths=... (defaults cover depth <= 4)")
        widths = default_widths[: depth + 1]
    widths = tuple(widths)
    if len(widths) != depth + 1 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ConfigError(
            f"widths must be {depth + 1} positive integers for depth {depth} (one per level 0..{depth}), got {widths}"
        )
    spec = builder(depth, widths, deep_supervision)
    return NestedUNet(
        spec,
        in_channels,
        classes,
        spatial_dims,
        norm,
        dropout,
        name=name,
        encoder=encoder,
        encoder_weights=encoder_weights if encoder is not None else None,
        encoder_freeze=encoder_freeze,
        memory_efficient=memory_efficient,
    )
