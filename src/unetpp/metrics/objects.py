"""Scores by object size (the paper's Fig. 7): connected components of the truth, binned by size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError

if TYPE_CHECKING:  # numpy comes with scipy/medpy, which only hd95 and the object functions need
    import numpy as np

from .overlap import as_spacing, binarize, check_pair

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

    check_pair(pred, target)
    ndim = pred.ndim - 2
    if not 1 <= connectivity <= ndim:
        raise ConfigError(f"connectivity must be in 1..{ndim} for {ndim}-D masks, got {connectivity!r}")
    sampling = as_spacing(spacing, ndim)
    voxel = math.prod(sampling) if sampling else 1.0
    structure = ndimage.generate_binary_structure(ndim, connectivity)
    p, t = binarize(pred, threshold), binarize(target, threshold)
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
