"""Small predicted components removed, by the sizes training chose on validation (post-processing).

A model trained for minutes leaves specks: a few false-positive pixels on an image without objects cost
that image its whole score (IoU 0 where an empty prediction scores 1), and a speck beside an object lowers
its IoU. As nnU-Net ends training by choosing its post-processing on validation, a run ends by measuring,
per class, the smallest component worth keeping (:mod:`unetpp.engine.postprocess`) and records it in the
model file; ``predict``, ``evaluate`` and the napari widget remove what is smaller unless told not to.

Components are connected through faces, edges and corners (8-connected in 2D, 26 in 3D), so a speck that
touches an object diagonally is part of it and stays. Sizes are counted in voxels of the grid the model
predicts on (the training grid): :func:`voxel_scale` converts them for outputs resampled back to an input's
own spacing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def mask_of(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The mask of probabilities ``(classes, *spatial)``: foreground above `threshold` for one class, else the
    class ids of the argmax (what ``predict`` writes and what the end-of-training check scores)."""
    return (prob[0] > threshold) if prob.shape[0] == 1 else prob.argmax(axis=0)


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a boolean mask (full connectivity): the label of each voxel (0: outside) and the
    size of each label (index 0: the voxels outside)."""
    from scipy import ndimage  # the train extra's; only models that record sizes call this

    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, count = ndimage.label(mask, structure)
    return labels, np.bincount(labels.ravel(), minlength=count + 1)


def remove_small_components(labels: np.ndarray, min_sizes: Sequence[int]) -> np.ndarray:
    """`labels` (class ids, ``(*spatial)``) with every component of class ``c`` smaller than ``min_sizes[c - 1]``
    voxels set to background (0); a new array where anything is removed, `labels` itself where nothing is."""
    out = labels
    for cls, size in enumerate(min_sizes, start=1):
        if size <= 1:
            continue
        found, sizes = components(labels == cls)
        small = sizes < size
        small[0] = False
        if small.any():
            out = out.copy() if out is labels else out
            out[small[found]] = 0
    return out


def voxel_scale(prep: dict[str, Any], spacing: Sequence[float]) -> float:
    """Voxels of an input's own grid (`spacing`) per voxel of the grid the model predicted on (the recorded
    preprocessing's target spacing): a size counted there is this many voxels in an output resampled back."""
    target = prep.get("target_spacing")
    if target is None:
        return 1.0
    return math.prod(float(t) for t in target) / math.prod(float(s) for s in spacing)


def scaled(min_sizes: Sequence[int], scale: float) -> tuple[int, ...]:
    """`min_sizes` counted in voxels `scale` times smaller (see :func:`voxel_scale`), rounded up."""
    return tuple(math.ceil(size * scale) if size > 1 else int(size) for size in min_sizes)
