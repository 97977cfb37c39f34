"""Mask R-CNN and Mask R-CNN++ on torchvision's ``MaskRCNN``, with a timm backbone.

Mask R-CNN++ (Zhou et al., IEEE TMI 2019, Table V) is Mask R-CNN (He et al. 2017) whose feature
pyramid uses UNet++'s nested, densely connected skips (:class:`~.pyramid.NestedPyramid`) instead
of FPN's top-down additions. Everything else -- RPN, anchors, RoIAlign, box and mask heads, NMS,
losses, resizing and normalisation -- is torchvision's, unchanged, so the two detectors differ
only in the pyramid.

Design choices (the paper fixes the pyramid's topology and the ResNet-101 backbone, nothing else):

- **Backbone**: any timm CNN whose ``features_only`` ladder reaches stride 32 (ResNet, ResNeXt,
  ...); C2..C5 are its features at strides 4, 8, 16, 32, found with
  :func:`unetpp.models.encoders.backbone_levels`. Its batch norms train (torchvision freezes them
  for ImageNet-pretrained fine-tuning at 2 images per GPU; from scratch, frozen statistics would
  stay at their initial values).
- **classes** counts the background, as torchvision's ``num_classes`` and the project's
  multi-class models do: ``classes=2`` is background + nuclei.
- **Anchors**: one size per level, 32..512 by default (torchvision's); nuclei are small, so
  ``anchor_sizes=(8, 16, 32, 64, 128)`` suits DSB 2018. Three aspect ratios (0.5, 1, 2).
- **Input**: images as float tensors in [0, 1]; torchvision resizes the shorter side to
  ``min_size`` (capped by ``max_size``) and normalises with ``image_mean``/``image_std``
  (ImageNet's, or their channel mean for grey input). ``min_size=None`` keeps every image at its
  own scale (:class:`NativeScale`): microscopy images have a physical pixel size, nuclei are
  small, and a training crop and a whole test image must be seen at the same scale -- as the
  semantic models see them. This is what ``unetpp train --task instance`` builds by default.
- **Heads**: torchvision's (two-layer MLP box head, four 3x3 convs + transposed conv mask head);
  ``head_width`` sets their width (torchvision: 256, box MLP 4 x 256 = 1024 wide). Smaller heads
  are for tests and CPU budgets; both detectors always share the same heads.
- ``detections_per_img`` is 300 (torchvision: 100), since a DSB image holds up to ~375 nuclei.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from ..errors import ConfigError
from ..models.encoder_weights import create_timm_backbone
from ..models.encoders import EncoderWeights, backbone_features, backbone_levels
from ..models.layers import NormKind
from .pyramid import NestedPyramid

PYRAMIDS = {"maskrcnn": "fpn", "maskrcnn++": "nested"}
"""Registry names of the detectors and their pyramid."""

PYRAMID_LEVELS = (2, 3, 4, 5)  # C2..C5: strides 4..32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PyramidBackbone(nn.Module):
    """timm body (C2..C5) followed by a pyramid; ``out_channels`` as torchvision's ``BackboneWithFPN``."""

    def __init__(self, body: nn.Module, pyramid: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body, self.fpn, self.out_channels = body, pyramid, out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(k), f) for k, f in enumerate(feats)))


class NativeScale(GeneralizedRCNNTransform):
    """torchvision's transform without the resizing: normalise and batch only (``min_size=None``)."""

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, Any]:
        return image, target


class Detector(MaskRCNN):
    """torchvision's ``MaskRCNN`` that knows how it was built: :attr:`config` rebuilds it.

    Train mode: ``model(images, targets)`` -> dict of losses. Eval mode: ``model(images)`` -> one
    dict per image with ``boxes`` (N, 4) xyxy, ``labels`` (N,), ``scores`` (N,) and ``masks``
    (N, 1, H, W) probabilities at the input's size. ``images``: list of (C, H, W) floats in [0, 1].
    """

    def __init__(self, backbone: PyramidBackbone, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self._config = dict(config)
        if config.get("min_size") is None:
            t = self.transform
            self.transform = NativeScale(1, 1, t.image_mean, t.image_std, size_divisible=t.size_divisible)

    @property
    def config(self) -> dict[str, Any]:
        """Plain types only (travels with checkpoints); the weights are the checkpoint's, not ImageNet's."""
        return dict(self._config)

    @property
    def name(self) -> str:
        return str(self._config["name"])

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Detector:
        cfg = dict(config)
        return build_detector(cfg.pop("name"), **cfg, encoder_weights=None)

    def describe(self) -> str:
        c = self._config
        return (
            f"{c['name']} ({PYRAMIDS[c['name']]} pyramid, width {c['pyramid_width']}, encoder {c['encoder']}, "
            f"{c['in_channels']} channel(s), {c['classes']} classes incl. background)"
        )


def create_body(encoder: str, in_channels: int, weights: EncoderWeights) -> tuple[nn.Module, list[int]]:
    """timm ``features_only`` body returning C2..C5, and their channels."""
    _, ladder = backbone_levels(encoder)  # raises ConfigError for unknown names or missing timm
    missing = [level for level in PYRAMID_LEVELS if level not in ladder]
    if missing:
        strides = [s for _, s in backbone_features(encoder)]
        raise ConfigError(
            f"encoder {encoder!r} has features at strides {strides}; a feature pyramid needs strides 4, 8, 16 and 32 "
            "(C2..C5); choose a ResNet-style backbone such as resnet50 or resnet101"
        )
    indices = [ladder[level] for level in PYRAMID_LEVELS]
    body = create_timm_backbone(encoder, weights, in_chans=in_channels, features_only=True, out_indices=indices)
    return body, [int(c) for c in body.feature_info.channels()]


def build_detector(
    name: str = "maskrcnn++",
    *,
    encoder: str = "resnet101",
    encoder_weights: EncoderWeights = "imagenet",
    in_channels: int = 3,
    classes: int = 2,
    pyramid_width: int = 256,
    head_width: int = 256,
    norm: NormKind = None,
    min_size: int | None = 800,
    max_size: int = 1333,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    detections_per_img: int = 300,
    score_threshold: float = 0.05,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> Detector:
    """Build Mask R-CNN (``"maskrcnn"``, FPN) or Mask R-CNN++ (``"maskrcnn++"``, nested pyramid).

    Args:
        name: "maskrcnn" or "maskrcnn++".
        encoder: timm backbone with features at strides 4..32 (the paper: "resnet101").
        encoder_weights: "imagenet", a local state dict file, or None (random). Not kept in :attr:`Detector.config`.
        in_channels: image channels (timm adapts pretrained RGB weights to 1 channel).
        classes: object classes plus background (2 for nuclei).
        pyramid_width: channels of every pyramid level.
        head_width: channels of the mask head's convs; the box head's MLP is 4x as wide.
        norm: normalisation of the nested pyramid's blocks (None, "batch", "instance"); the FPN has none.
        min_size, max_size: torchvision's resizing of the shorter and the longer side; ``min_size=None``:
            no resizing, every image at its own scale (``max_size`` unused).
        anchor_sizes: one anchor size per pyramid level, P2..P5 and "pool" (5 values).
        detections_per_img: most instances kept per image.
        score_threshold: instances scoring below it are dropped (torchvision's 0.05).
        image_mean, image_std: normalisation per channel; default ImageNet's (their mean for 1 channel).

    Raises:
        ConfigError: unknown name, backbone, or invalid argument.
        UnetppError: ImageNet weights wanted but not available.
    """
    if name not in PYRAMIDS:
        close = difflib.get_close_matches(name, list(PYRAMIDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown detector {name!r}; available: {', '.join(PYRAMIDS)}{hint}")
    positive = (
        ("in_channels", in_channels, 1),
        ("classes", classes, 2),
        ("pyramid_width", pyramid_width, 1),
        ("head_width", head_width, 1),
    )
    for arg, value, low in positive:
        if not isinstance(value, int) or value < low:
            hint = " (detectors count the background: 2 = one object class)" if arg == "classes" else ""
            raise ConfigError(f"{arg} must be an integer >= {low}, got {value!r}{hint}")
    if min_size is not None and (not isinstance(min_size, int) or min_size < 1):
        raise ConfigError(f"min_size must be a positive integer or None (native scale), got {min_size!r}")
    anchor_sizes = tuple(int(s) for s in anchor_sizes)
    if len(anchor_sizes) != len(PYRAMID_LEVELS) + 1 or min(anchor_sizes) < 1:
        raise ConfigError(f"anchor_sizes must be 5 positive sizes (P2..P5 and pool), got {list(anchor_sizes)}")
    mean, std = _normalisation(in_channels, image_mean, image_std)
    body, channels = create_body(encoder, in_channels, encoder_weights)
    if PYRAMIDS[name] == "nested":
        pyramid: nn.Module = NestedPyramid(channels, pyramid_width, norm)
    else:
        pyramid = FeaturePyramidNetwork(channels, pyramid_width, extra_blocks=LastLevelMaxPool())
    config = {
        "name": name,
        "encoder": encoder,
        "in_channels": in_channels,
        "classes": classes,
        "pyramid_width": pyramid_width,
        "head_width": head_width,
        "norm": norm,
        "min_size": None if min_size is None else int(min_size),
        "max_size": int(max_size),
        "anchor_sizes": list(anchor_sizes),
        "detections_per_img": int(detections_per_img),
        "score_threshold": float(score_threshold),
        "image_mean": list(mean),
        "image_std": list(std),
    }
    anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    return Detector(
        PyramidBackbone(body, pyramid, pyramid_width),
        config,
        num_classes=None,  # the predictors below carry `classes`
        min_size=800 if min_size is None else int(min_size),  # None: replaced by NativeScale in Detector
        max_size=int(max_size),
        image_mean=list(mean),
        image_std=list(std),
        rpn_anchor_generator=anchors,
        box_detections_per_img=int(detections_per_img),
        box_score_thresh=float(score_threshold),
        box_head=TwoMLPHead(pyramid_width * 7 * 7, 4 * head_width),  # 7x7: the RoIAlign size of the box head
        box_predictor=FastRCNNPredictor(4 * head_width, classes),
        mask_head=MaskRCNNHeads(pyramid_width, [head_width] * 4, dilation=1),
        mask_predictor=MaskRCNNPredictor(head_width, head_width, classes),
    )


def _normalisation(
    channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[list[float], list[float]]:
    def default(values: tuple[float, ...]) -> list[float]:
        return list(values) if channels == 3 else [sum(values) / 3] * channels

    mean_l = default(IMAGENET_MEAN) if mean is None else [float(m) for m in mean]
    std_l = default(IMAGENET_STD) if std is None else [float(s) for s in std]
    if len(mean_l) != channels or len(std_l) != channels or min(std_l) <= 0:
        raise ConfigError(
            f"image_mean and image_std need {channels} values (one per channel, std > 0), got {mean_l} and {std_l}"
        )
    return mean_l, std_l
