"""HD95, the 95th-percentile Hausdorff distance between mask surfaces (scipy's Euclidean distance transform)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # numpy comes with scipy, imported when hd95 is called
    import numpy as np

from .overlap import as_spacing, binarize, check_pair


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
    their 95th percentile is taken, as ``medpy.metric.binary.hd95`` does (medpy is GPL-3 and not a
    dependency: the same computation runs on scipy's Euclidean distance transform).

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
    check_pair(pred, target)
    ndim = pred.ndim - 2
    sampling = as_spacing(spacing, ndim)
    p, t = binarize(pred, threshold), binarize(target, threshold)
    if not include_background and p.shape[1] > 1:
        p, t = p[:, 1:], t[:, 1:]
    p, t = p.cpu().numpy(), t.cpu().numpy()
    out = torch.empty(p.shape[:2], dtype=torch.float64)
    for b in range(p.shape[0]):
        for c in range(p.shape[1]):
            has_p, has_t = bool(p[b, c].any()), bool(t[b, c].any())
            if has_p and has_t:
                out[b, c] = surface_distance_p95(p[b, c], t[b, c], sampling)
            else:
                out[b, c] = math.nan if has_p == has_t else math.inf
    return out


def surface_distance_p95(pred: np.ndarray, target: np.ndarray, sampling: tuple[float, ...] | None) -> float:
    """HD95 of two non-empty boolean masks, as medpy's ``hd95`` computes it."""
    import numpy as np
    from scipy import ndimage

    def surface(mask: np.ndarray) -> np.ndarray:
        footprint = ndimage.generate_binary_structure(mask.ndim, 1)
        return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)

    sp, st = surface(pred), surface(target)
    to_t = ndimage.distance_transform_edt(~st, sampling=sampling)[sp]
    to_p = ndimage.distance_transform_edt(~sp, sampling=sampling)[st]
    return float(np.percentile(np.hstack((to_t, to_p)), 95))
