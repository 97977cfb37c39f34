"""Evaluation metrics of UNet++: IoU, Dice, HD95, and scores by object size.

Zhou, Rahman Siddiquee, Tajbakhsh and Liang, "UNet++: Redesigning Skip Connections to Exploit
Multiscale Features in Image Segmentation", IEEE TMI 39(6), 2020, doi:10.1109/TMI.2019.2959609
(arXiv:1912.05074). The paper reports IoU and Dice per data set and, in Fig. 7, segmentation
quality by object size. HD95 is not in the paper; it is here because medical segmentation
benchmarks (BraTS, the Medical Segmentation Decathlon) report it next to Dice.

Pure functions over ``(B, C, *spatial)`` tensors; 2D and 3D share the code (reductions run over
``range(2, ndim)``). Inputs are read as follows:

- bool and integer tensors are hard masks: non-zero is foreground;
- floating tensors are probabilities: foreground where ``> threshold``. For several classes,
  thresholding each channel is not the argmax; use :func:`masks_from_logits` or :func:`one_hot`
  first to score the argmax label map.

Empty-mask conventions (tested):

- IoU and Dice: empty ground truth and empty prediction score **1.0** (nothing to find, nothing
  found); empty ground truth with a non-empty prediction, or the reverse, scores **0.0**.
- HD95: **inf** when exactly one of the two masks is empty (the distance to an empty set is
  infinite), **NaN** when both are (there is no surface to measure; IoU and Dice already score
  that case 1). Aggregate with ``torch.nanmean`` and count the infs separately.

Only torch is needed to import this module; :func:`hd95` uses medpy (or scipy when medpy is
missing) and the object-size functions use scipy, each imported when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from .errors import ConfigError, InputShapeError

if TYPE_CHECKING:  # numpy comes with scipy/medpy, which only hd95 and the object functions need
    import numpy as np

__all__ = [
    "ObjectScores",
    "SizeBin",
    "by_object_size",
    "dice",
    "hd95",
    "iou",
    "masks_from_logits",
    "object_scores",
    "one_hot",
    "pooled_dice",
    "pooled_iou",
    "InstanceScores",
    "ap50",
    "dsb_score",
    "instance_scores",
    "label_components",
    "masks_to_label_map",
    "match_iou",
    "mean_scores",
]


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


def _binary(x: Tensor, threshold: float) -> Tensor:
    if x.dtype == torch.bool:
        return x
    return x > threshold if x.is_floating_point() else x != 0


def _counts(
    pred: Tensor, target: Tensor, threshold: float, include_background: bool, axes: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Intersection, prediction and target voxel counts summed over ``axes`` (int64)."""
    _check_pair(pred, target)
    p, t = _binary(pred, threshold), _binary(target, threshold)
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


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise InputShapeError(
            f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}; "
            "both must be (B, C, *spatial) (use one_hot() for label maps)"
        )
    if pred.ndim < 3:
        raise InputShapeError(f"masks must be (B, C, *spatial), got shape {tuple(pred.shape)}")


# --- HD95 --------------------------------------------------------------------------------------


def hd95(
    pred: Tensor,
    target: Tensor,
    *,
    spacing: float | Sequence[float] | None = None,
    threshold: float = 0.5,
    include_background: bool = True,
) -> Tensor:
    """95th percentile of the symmetric surface distances (HD95), per image and class.

    The surface of a mask is its foreground voxels with a face-neighbour (connectivity 1) outside
    it, including at the image border. Distances from each surface to the other are pooled and
    their 95th percentile is taken, as ``medpy.metric.binary.hd95`` does; medpy is used when it
    imports, otherwise the same computation with scipy's Euclidean distance transform.

    Args:
        pred: predicted masks or probabilities, ``(B, C, *spatial)``.
        target: ground-truth masks of the same shape.
        spacing: voxel size along each spatial axis (one number for all axes), in the unit you
            want the result in, usually mm; ``None`` means 1 (distances in voxels).
        threshold: foreground where a floating input is ``> threshold``.
        include_background: keep channel 0 when ``C > 1``; ignored for ``C == 1``.

    Returns:
        ``(B, C)`` float64 on the CPU. **inf** when exactly one mask is empty, **NaN** when both are.

    Raises:
        InputShapeError: shapes differ (both are in the message).
        ConfigError: ``spacing`` does not have one positive value per spatial axis.
    """
    _check_pair(pred, target)
    ndim = pred.ndim - 2
    sampling = _spacing(spacing, ndim)
    p, t = _binary(pred, threshold), _binary(target, threshold)
    if not include_background and p.shape[1] > 1:
        p, t = p[:, 1:], t[:, 1:]
    p, t = p.cpu().numpy(), t.cpu().numpy()
    distance = _hd95_backend()
    out = torch.empty(p.shape[:2], dtype=torch.float64)
    for b in range(p.shape[0]):
        for c in range(p.shape[1]):
            has_p, has_t = bool(p[b, c].any()), bool(t[b, c].any())
            if has_p and has_t:
                out[b, c] = float(distance(p[b, c], t[b, c], sampling))
            else:
                out[b, c] = math.nan if has_p == has_t else math.inf
    return out


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = (float(spacing),) * ndim if isinstance(spacing, (int, float)) else tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ConfigError(f"spacing must be {ndim} positive number(s), one per spatial axis, got {spacing!r}")
    return values


def _hd95_backend() -> Callable[[np.ndarray, np.ndarray, tuple[float, ...] | None], float]:
    try:
        from medpy.metric.binary import hd95 as medpy_hd95
    except ImportError:
        return _hd95_scipy
    return lambda p, t, sampling: medpy_hd95(p, t, voxelspacing=sampling, connectivity=1)


def _hd95_scipy(pred: np.ndarray, target: np.ndarray, sampling: tuple[float, ...] | None) -> float:
    """Same computation as medpy's ``hd95`` (both masks non-empty)."""
    import numpy as np
    from scipy import ndimage

    def surface(mask: np.ndarray) -> np.ndarray:
        footprint = ndimage.generate_binary_structure(mask.ndim, 1)
        return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)

    sp, st = surface(pred), surface(target)
    to_t = ndimage.distance_transform_edt(~st, sampling=sampling)[sp]
    to_p = ndimage.distance_transform_edt(~sp, sampling=sampling)[st]
    return float(np.percentile(np.hstack((to_t, to_p)), 95))


# --- scores by object size (paper Fig. 7) ------------------------------------------------------


class ObjectScores(NamedTuple):
    """One entry per connected component of the ground truth (1-D tensors of equal length)."""

    image: Tensor  # int64: index b in the batch
    channel: Tensor  # int64: class channel c (after dropping background, if asked)
    size: Tensor  # float64: voxel count, or physical area/volume when spacing was given
    iou: Tensor  # float64
    dice: Tensor  # float64


@dataclass(frozen=True)
class SizeBin:
    """Objects whose size lies in ``[low, high)``: how many, and their mean IoU and Dice (NaN if none)."""

    low: float
    high: float
    count: int
    iou: float
    dice: float


def object_scores(
    pred: Tensor,
    target: Tensor,
    *,
    threshold: float = 0.5,
    include_background: bool = True,
    spacing: float | Sequence[float] | None = None,
    connectivity: int = 1,
) -> ObjectScores:
    """IoU and Dice of every ground-truth object, with its size: the raw data of paper Fig. 7.

    Each connected component G of the ground truth is scored against P, the union of the
    predicted components that touch it: ``IoU = |P ∩ G| / |P ∪ G|``. A predicted blob that
    merges two objects therefore lowers both; a missed object scores 0; predicted components
    touching no object (false positives) belong to no object and are not counted here.

    Args:
        pred: predicted masks or probabilities, ``(B, C, *spatial)``.
        target: ground-truth masks of the same shape.
        threshold: foreground where a floating input is ``> threshold``.
        include_background: keep channel 0 when ``C > 1``; ignored for ``C == 1``.
        spacing: voxel size per spatial axis; sizes are then areas/volumes in that unit.
        connectivity: 1 joins face neighbours only (4 in 2D, 6 in 3D); ``ndim`` joins all
            (8 in 2D, 26 in 3D). Used for both masks.

    Returns:
        :class:`ObjectScores`, one entry per object, in image, channel, label order.

    Raises:
        InputShapeError: shapes differ (both are in the message).
        ConfigError: bad ``spacing`` or ``connectivity``.
    """
    import numpy as np
    from scipy import ndimage

    _check_pair(pred, target)
    ndim = pred.ndim - 2
    if not 1 <= connectivity <= ndim:
        raise ConfigError(f"connectivity must be in 1..{ndim} for {ndim}-D masks, got {connectivity!r}")
    sampling = _spacing(spacing, ndim)
    voxel = math.prod(sampling) if sampling else 1.0
    structure = ndimage.generate_binary_structure(ndim, connectivity)
    p, t = _binary(pred, threshold), _binary(target, threshold)
    if not include_background and p.shape[1] > 1:
        p, t = p[:, 1:], t[:, 1:]
    p, t = p.cpu().numpy(), t.cpu().numpy()
    rows: list[np.ndarray] = []
    for b in range(p.shape[0]):
        for c in range(p.shape[1]):
            gt_labels, n_gt = ndimage.label(t[b, c], structure=structure)
            if n_gt == 0:
                continue
            pred_labels, n_pred = ndimage.label(p[b, c], structure=structure)
            gt_size = np.bincount(gt_labels.ravel(), minlength=n_gt + 1)
            pred_size = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
            inter = np.bincount(gt_labels[p[b, c]], minlength=n_gt + 1)  # |P ∩ G|: every such voxel is in P
            both = (gt_labels > 0) & (pred_labels > 0)
            pairs = np.unique(np.stack([gt_labels[both], pred_labels[both]]), axis=1)  # (gt, pred) that touch
            touching = np.zeros(n_gt + 1, dtype=np.int64)
            np.add.at(touching, pairs[0], pred_size[pairs[1]])  # |P|
            g, i, q = gt_size[1:], inter[1:], touching[1:]
            rows.append(
                np.stack([np.full(n_gt, b), np.full(n_gt, c), g * voxel, i / (g + q - i), 2 * i / (g + q)], axis=1)
            )
    table = torch.from_numpy(np.concatenate(rows) if rows else np.zeros((0, 5))).to(torch.float64)
    return ObjectScores(table[:, 0].long(), table[:, 1].long(), table[:, 2], table[:, 3], table[:, 4])


def by_object_size(scores: ObjectScores | Sequence[ObjectScores], bins: Sequence[float]) -> list[SizeBin]:
    """Bin objects by size and report count, mean IoU and mean Dice per bin (paper Fig. 7).

    Args:
        scores: from :func:`object_scores`; a sequence is concatenated (e.g. one per batch of
            a data set).
        bins: increasing bin edges; bin k holds sizes in ``[bins[k], bins[k+1])``. Objects
            outside ``[bins[0], bins[-1])`` are left out, so use ``0`` and ``math.inf`` as the
            outer edges to count every object.

    Returns:
        One :class:`SizeBin` per pair of consecutive edges; IoU and Dice are NaN in empty bins.

    Raises:
        ConfigError: fewer than two edges, or edges not strictly increasing.

    Example:
        >>> by_object_size(object_scores(pred, target), [0, 100, 1000, math.inf])  # doctest: +SKIP
    """
    edges = [float(e) for e in bins]
    if len(edges) < 2 or any(not lo < hi for lo, hi in zip(edges, edges[1:], strict=False)):
        raise ConfigError(f"bins must be at least two strictly increasing edges, got {list(bins)}")
    parts = [scores] if isinstance(scores, ObjectScores) else list(scores)
    empty = torch.zeros(0, dtype=torch.float64)
    size, ious, dices = (torch.cat([empty, *(getattr(s, f) for s in parts)]) for f in ("size", "iou", "dice"))
    out = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        inside = (size >= lo) & (size < hi)
        n = int(inside.sum())
        mean_iou = float(ious[inside].mean()) if n else math.nan
        mean_dice = float(dices[inside].mean()) if n else math.nan
        out.append(SizeBin(lo, hi, n, mean_iou, mean_dice))
    return out


from .instance_metrics import (  # noqa: E402  (instance metrics live in their own module; re-exported here)
    InstanceScores,
    ap50,
    dsb_score,
    instance_scores,
    label_components,
    masks_to_label_map,
    match_iou,
    mean_scores,
)
