"""IoU and Dice per image and class, pooled variants, and the conversions to hard masks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import ConfigError, InputShapeError

if TYPE_CHECKING:  # numpy comes with scipy/medpy, which only hd95 and the object functions need
    pass


# --- conversions -------------------------------------------------------------------------------


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Bool masks ``(B, C, *spatial)`` from a label map of class ids ``(B, 1, *spatial)``.

    The channel axis is required, so a 2D map ``(B, 1, H, W)`` cannot be mistaken for a volume.

    Raises:
        InputShapeError: ``labels`` has no singleton channel axis.
        ConfigError: a class id lies outside ``0..num_classes-1`` (the value is in the message).
    """
    if labels.ndim < 3 or labels.shape[1] != 1:
        raise InputShapeError(f"a label map must be (B, 1, *spatial), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() and bool((labels != labels.round()).any()):
        raise ConfigError(f"label map holds non-integer values (dtype {labels.dtype}); pass class ids")
    lo, hi = (int(v) for v in torch.aminmax(labels.long()))
    if lo < 0 or hi >= num_classes:
        raise ConfigError(
            f"label map holds class id {lo if lo < 0 else hi}, outside the valid range 0..{num_classes - 1} "
            f"for {num_classes} classes"
        )
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, *([1] * (labels.ndim - 2)))
    return labels.long() == classes


def masks_from_logits(logits: Tensor) -> Tensor:
    """Hard bool masks ``(B, C, *spatial)`` from logits: ``> 0`` for one class, argmax for several."""
    if logits.ndim < 3:
        raise InputShapeError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return logits > 0  # sigmoid(x) > 0.5
    return one_hot(logits.argmax(dim=1, keepdim=True), logits.shape[1])


def masks_from_probs(probs: Tensor) -> Tensor:
    """Hard bool masks ``(B, C, *spatial)`` from probabilities: ``> 0.5`` for one class, argmax for several."""
    if probs.shape[1] == 1:
        return probs > 0.5
    return one_hot(probs.argmax(dim=1, keepdim=True), probs.shape[1])


def masks_from_labels(labels: Tensor, classes: int) -> Tensor:
    """Ground-truth class ids ``(B, 1, *spatial)`` as bool masks in a model's channel layout (1 or C channels)."""
    return labels.bool() if classes == 1 else one_hot(labels, classes)


# --- IoU and Dice ------------------------------------------------------------------------------


def iou(pred: Tensor, target: Tensor, *, threshold: float = 0.5, include_background: bool = True) -> Tensor:
    """Intersection over union (Jaccard) per image and class.

    Args:
        pred: predicted masks or probabilities, ``(B, C, *spatial)``.
        target: ground-truth masks of the same shape.
        threshold: foreground where a floating input is ``> threshold``.
        include_background: keep channel 0 when ``C > 1``; ignored for ``C == 1``.

    Returns:
        ``(B, C)`` float32 (``C - 1`` columns without background). Empty ground truth and empty
        prediction give 1.0; exactly one of them empty gives 0.0.

    Raises:
        InputShapeError: shapes differ (both are in the message) or are not ``(B, C, *spatial)``.

    Example:
        >>> iou(torch.tensor([[[[1, 1], [0, 0]]]]), torch.tensor([[[[1, 0], [0, 0]]]]))
        tensor([[0.5000]])
    """
    inter, p, t = _counts(pred, target, threshold, include_background, axes=range(2, pred.ndim))
    return _iou_from_counts(inter, p, t)


def dice(pred: Tensor, target: Tensor, *, threshold: float = 0.5, include_background: bool = True) -> Tensor:
    """Dice coefficient (F1) per image and class; ``dice = 2 iou / (1 + iou)`` image by image.

    Args and Raises: as :func:`iou`.

    Returns:
        ``(B, C)`` float32. Empty ground truth and empty prediction give 1.0; exactly one of them
        empty gives 0.0.

    Example:
        >>> dice(torch.tensor([[[[1, 1], [0, 0]]]]), torch.tensor([[[[1, 0], [0, 0]]]]))
        tensor([[0.6667]])
    """
    inter, p, t = _counts(pred, target, threshold, include_background, axes=range(2, pred.ndim))
    return _dice_from_counts(inter, p, t)


def pooled_iou(
    preds: Tensor | Sequence[Tensor],
    targets: Tensor | Sequence[Tensor],
    *,
    threshold: float = 0.5,
    include_background: bool = True,
) -> Tensor:
    """IoU per class over a whole set: intersections and unions are summed before dividing.

    Pooling weighs every voxel equally, so large objects dominate; the mean of :func:`iou` weighs
    every image equally. Report whichever the benchmark defines (and say which).

    Args:
        preds: one ``(B, C, *spatial)`` tensor, or a sequence of them (images of different sizes
            come as separate tensors).
        targets: matching ground truth, tensor for tensor.
        threshold: as :func:`iou`.
        include_background: as :func:`iou`.

    Returns:
        ``(C,)`` float32; a class absent from the whole set and never predicted scores 1.0.

    Raises:
        ConfigError: ``preds`` and ``targets`` hold different numbers of tensors.
        InputShapeError: a pair of tensors differ in shape.
    """
    return _iou_from_counts(*_pooled_counts(preds, targets, threshold, include_background))


def pooled_dice(
    preds: Tensor | Sequence[Tensor],
    targets: Tensor | Sequence[Tensor],
    *,
    threshold: float = 0.5,
    include_background: bool = True,
) -> Tensor:
    """Dice per class over a whole set (summed intersections and sizes); see :func:`pooled_iou`."""
    return _dice_from_counts(*_pooled_counts(preds, targets, threshold, include_background))


def binarize(x: Tensor, threshold: float) -> Tensor:
    if x.dtype == torch.bool:
        return x
    return x > threshold if x.is_floating_point() else x != 0


def _counts(
    pred: Tensor, target: Tensor, threshold: float, include_background: bool, axes: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Intersection, prediction and target voxel counts summed over ``axes`` (int64)."""
    check_pair(pred, target)
    p, t = binarize(pred, threshold), binarize(target, threshold)
    if not include_background and p.shape[1] > 1:
        p, t = p[:, 1:], t[:, 1:]
    axes = tuple(axes)
    return (p & t).sum(axes), p.sum(axes), t.sum(axes)


def _pooled_counts(
    preds: Tensor | Sequence[Tensor], targets: Tensor | Sequence[Tensor], threshold: float, include_background: bool
) -> tuple[Tensor, Tensor, Tensor]:
    preds = [preds] if isinstance(preds, Tensor) else list(preds)
    targets = [targets] if isinstance(targets, Tensor) else list(targets)
    if len(preds) != len(targets) or not preds:
        raise ConfigError(f"need as many targets as predictions (at least one), got {len(preds)} and {len(targets)}")
    totals = [
        _counts(p, t, threshold, include_background, axes=(0, *range(2, p.ndim)))
        for p, t in zip(preds, targets, strict=True)
    ]
    return tuple(torch.stack(c).sum(0) for c in zip(*totals, strict=True))  # type: ignore[return-value]


def _iou_from_counts(inter: Tensor, p: Tensor, t: Tensor) -> Tensor:
    union = p + t - inter
    return torch.where(union > 0, inter.float() / union.clamp_min(1).float(), 1.0)


def _dice_from_counts(inter: Tensor, p: Tensor, t: Tensor) -> Tensor:
    total = p + t
    return torch.where(total > 0, 2 * inter.float() / total.clamp_min(1).float(), 1.0)


def check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise InputShapeError(
            f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}; "
            "both must be (B, C, *spatial) (use one_hot() for label maps)"
        )
    if pred.ndim < 3:
        raise InputShapeError(f"masks must be (B, C, *spatial), got shape {tuple(pred.shape)}")


def as_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = (float(spacing),) * ndim if isinstance(spacing, (int, float)) else tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ConfigError(f"spacing must be {ndim} positive number(s), one per spatial axis, got {spacing!r}")
    return values
