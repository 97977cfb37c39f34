"""What the masks of a data set are: binary, noisy binary, soft or a label map; its classes and objects.

Part of the data fingerprint (:mod:`unetpp.plan.fingerprint`): masks saved as JPEG are blurred near
the edges, probability maps are soft, integer label maps hold class ids; each kind is trained differently
(a threshold, or class ids as stored).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import DataError

MAX_LABELS = 64  # more distinct integer values than this is not a label map
NEAR_EXTREME = 0.1  # a value within 10% of the range from the lowest or highest value is "near" it
NOISY_SHARE = 0.95  # noisy binary: at least this share of voxels near the two extremes...
BLURRED_VALUES = 3  # ...and at least this many distinct values near one extreme (JPEG: 0-8, 247-255)


def label_kind(values: Counter, soft: bool, labelled: bool) -> tuple[str, float | None, float]:
    """Kind of the stored mask values, the threshold that binarises them (or None) and the noisy share."""
    if not labelled or not values:
        return "unlabelled", None, 0.0
    vals = np.array(sorted(values), dtype=np.float64)
    counts = np.array([values[v] for v in sorted(values)], dtype=np.float64)
    lo, hi = vals[0], vals[-1]
    if set(vals.tolist()) <= {0, 1}:
        return "binary", None, 0.0
    span = hi - lo
    near_lo, near_hi = vals <= lo + NEAR_EXTREME * span, vals >= hi - NEAR_EXTREME * span
    clean = np.isin(vals, [lo, hi])
    noisy = float(counts[~clean].sum() / counts.sum())
    midpoint = float((lo + hi) / 2)
    blurred = max(near_lo.sum(), near_hi.sum()) >= BLURRED_VALUES
    if counts[near_lo | near_hi].sum() / counts.sum() >= NOISY_SHARE and blurred:
        return "noisy-binary", midpoint, round(noisy, 6)
    if soft or len(vals) > MAX_LABELS:
        return "soft", midpoint, round(noisy, 6)
    if lo < 0:
        raise DataError(f"masks hold negative values {vals[vals < 0][:5].tolist()}; class ids start at 0")
    return "label-map", None, 0.0


MAX_CLASSES = 256  # a label map with more class ids than this is refused (a 16-bit value is not a class)


def check_label_map(values: Counter, tops: list[tuple[str, float]]) -> None:
    """Refuse mask values that would make a model of many empty classes, naming the mask files to fix.

    `tops` holds each mask file's largest value. A label map whose largest id is far above its number of
    distinct values (0/1000, 0/10/20/30, an "ignore" value 255, one 0/127/254 file among 0/255 ones, whose
    values are read as 0/1) or above MAX_CLASSES would silently train hundreds of classes.

    Raises:
        DataError: one line naming (up to three of) the files holding the largest value and what to save instead.
    """
    vals = sorted(values)
    top, k = int(vals[-1]), len(vals)
    if top + 1 > MAX_CLASSES or top + 1 > 2 * k + 2:
        files = [name for name, t in tops if t == vals[-1]]
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        listed = ", ".join(f"{v:g}" for v in vals[:6]) + (", ..." if k > 6 else "")
        raise DataError(
            f"{shown}: mask values {{{listed}}} would be {top + 1} classes for {k} values; save class ids "
            f"0..{k - 1} (binary masks as 0/1, 0/255 or 0/65535)"
        )


def class_ids(mask: np.ndarray, threshold: float | None) -> np.ndarray:
    """Class ids of stored values (0/255 files are already 0/1 here): thresholded when the kind needs it. An integer
    mask keeps its (compact) type: copying 150 masks of 1024^2 to int64 was a third of a fingerprint's time."""
    if threshold is not None:
        return (mask > threshold).astype(np.uint8)
    return mask if mask.dtype.kind in "iu" else mask.astype(np.int64)


def compact(mask: np.ndarray) -> np.ndarray:
    """The smallest integer dtype holding an integer mask (memory of a few hundred kept masks)."""
    if mask.dtype.kind == "f" or mask.size == 0:
        return mask
    top = int(mask.max())
    return mask.astype(np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int64, copy=False)


def class_frequencies(masks: list[np.ndarray | None]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    labelled = [m for m in masks if m is not None]
    if not labelled:
        return (), ()
    top = int(max(m.max() for m in labelled))
    counts = sum(np.bincount(m.reshape(-1), minlength=top + 1) for m in labelled)
    total = counts.sum()
    return tuple(int(c) for c in np.flatnonzero(counts)), tuple(round(float(c / total), 6) for c in counts)


def objects(masks: list[np.ndarray | None], classes: tuple[int, ...]) -> tuple[dict[str, float], ...]:
    """Connected components (face-connected) per foreground class: how many per image and their sizes."""
    from scipy import ndimage

    labelled = [m for m in masks if m is not None]
    out = []
    for c in classes:
        if c == 0:
            continue
        sizes: list[np.ndarray] = []
        for m in labelled:
            lab, n = ndimage.label(m == c)
            if n:
                sizes.append(np.bincount(lab.reshape(-1))[1:])
        s = np.concatenate(sizes) if sizes else np.zeros(0)
        out.append(
            {
                "class": c,
                "per_image": round(s.size / len(labelled), 3),
                "median": float(np.median(s)) if s.size else 0.0,
                "p05": float(np.percentile(s, 5)) if s.size else 0.0,
                "p95": float(np.percentile(s, 95)) if s.size else 0.0,
            }
        )
    return tuple(out)
