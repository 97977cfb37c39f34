"""What a mask's stored values mean: class ids, binary masks saved at full scale (0/255), thresholds.

:func:`unetpp.data.io.read_mask` reads a file and hands its values here; the fingerprint
(:mod:`unetpp.plan.fingerprint`) asks the same questions of a sample of files, so the two agree on every rule.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

PathLike = str | os.PathLike[str]
logger = logging.getLogger(__name__)

MAX_LISTED = 10  # values quoted in an error message
FULL_SCALE = (255, 65535)  # the foreground of a binary mask saved at full scale in 8 or 16 bits

_thresholded: set[Path] = set()  # files whose thresholding was already reported (once per file and process)


def clean_foreground(threshold: float) -> int:
    """The foreground value of a clean mask that needs `threshold`: 255 for a threshold of 1 or more, else 1."""
    return 255 if threshold >= 1 else 1


def binarize(values: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """``values > threshold`` as a {0, 1} ``uint8`` mask, and how many pixels the threshold changed: those
    neither 0 nor the clean foreground value, the noise the threshold removed."""
    clean = clean_foreground(threshold)
    return (values > threshold).astype(np.uint8), int(np.count_nonzero((values != 0) & (values != clean)))


def threshold_mask(values: np.ndarray, threshold: float, path: PathLike | None = None) -> np.ndarray:
    """:func:`binarize`, logging (once per `path`) how many pixels were not clean."""
    out, changed = binarize(values, threshold)
    key = Path(path) if path is not None else None
    if changed and key not in _thresholded:
        if key is not None:
            _thresholded.add(key)
        logger.warning(
            "%s: mask thresholded at %g: %d of %d pixels (%.2f%%) were neither 0 nor %d and were set to 0 or 1",
            key if key is not None else "mask",
            threshold,
            changed,
            values.size,
            100.0 * changed / values.size,
            clean_foreground(threshold),
        )
    return out


def _largest_id(dtype: np.dtype) -> int:
    """The largest class id `dtype` holds (1 for bool, none for floats)."""
    if dtype == np.bool_:
        return 1
    return int(np.iinfo(dtype).max) if dtype.kind in "iu" else -1


def listed(values: np.ndarray) -> str:
    """The first values, as an error message quotes them: ``{0, 1, 7, ...}``."""
    shown = ", ".join(str(v) for v in values[:MAX_LISTED].tolist())
    return f"{{{shown}{', ...' if len(values) > MAX_LISTED else ''}}}"


def full_scale_binary(values: np.ndarray) -> int | None:
    """The foreground value when the sorted distinct `values` are {0, M} (or {M}) with M full scale, else None."""
    top = values[-1].item() if len(values) else None
    if top in FULL_SCALE and set(values.tolist()) <= {0, top}:
        return int(top)
    return None


def value_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(mask, return_counts=True)``, counted instead of sorted where counting is enough.

    Most mask files hold 0 and one other value: the extremes and two counts answer (0.13 against 3.2 ms a
    1024x1024 DSB nucleus file, ~50 files an image). Other integer masks in 0..65535 are counted with
    ``bincount`` (a fingerprint of 150 masks of 1024^2 spent 1.0 of 7.3 s sorting them); the rest are sorted.
    """
    if not mask.size:
        return np.unique(mask, return_counts=True)
    top, nonzero = mask.max(), np.count_nonzero(mask)
    if nonzero == (np.count_nonzero(mask == top) if top else 0):  # 0 and at most one other value
        present = [(0, mask.size - nonzero), (top, nonzero)]
        kept = [(v, n) for v, n in present if n]
        return np.array([v for v, _ in kept], mask.dtype), np.array([n for _, n in kept], np.intp)
    if mask.dtype.kind in "iu" and top <= 65535 and mask.min() >= 0:
        counts = np.bincount(mask.reshape(-1))
        present = np.flatnonzero(counts)
        return present.astype(mask.dtype), counts[present]
    return np.unique(mask, return_counts=True)


def class_ids(label: np.ndarray, path: Path, label_count: int | None, dtype: np.dtype) -> np.ndarray:
    """A mask's values as class ids of `dtype` (0/255 read as 0/1), checked against `label_count`.

    Raises:
        DataError: non-integer or negative values, or ids at or above `label_count` (naming the file and values).
        ValueError: a `dtype` that cannot hold the ids below `label_count` (a caller's mistake, not the file's).
    """
    if dtype != np.int64 and (label_count is None or _largest_id(dtype) < label_count - 1):
        raise ValueError(f"read_mask: dtype {dtype} cannot hold class ids below label_count={label_count}")
    values = value_counts(label)[0]
    if label.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        bad = values[values != np.round(values)]
        raise DataError(
            f"{path}: mask has non-integer values {listed(bad)}; masks must hold class ids (save labels, "
            "not probabilities or interpolated masks)"
        )
    if values[0] < 0:
        raise DataError(f"{path}: mask has negative values {listed(values[values < 0])}; class ids start at 0")
    # 0/255 is the usual way to store a binary mask in an 8-bit file (ISBI: 255 = cell interior), 0/65535 in 16 bits
    top = full_scale_binary(values)
    if top is not None and (label_count is None or label_count <= top):
        return (label == top).astype(dtype, copy=False)
    if label_count is not None and values[-1] >= label_count:
        if label_count == 2:
            raise DataError(
                f"{path}: mask values {listed(values)} are not binary; expected {{0, 1}} or {{0, 255}} "
                "(JPEG, anti-aliased or resized masks have in-between values: set data.mask_threshold=127.5 "
                "to binarise them at the midpoint, re-export with nearest-neighbour resampling, or set --classes "
                "(model.classes) for a label map)"
            )
        raise DataError(
            f"{path}: mask has class ids {listed(values[values >= label_count])} >= label_count={label_count} "
            f"(values found: {listed(values)}); fix the labels or raise --classes (model.classes)"
        )
    return label.astype(dtype)
