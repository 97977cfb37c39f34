"""Volumes to a target voxel spacing for training, and predictions back to the original grid and affine.

Anisotropic volumes (e.g. 1 x 1 x 3 mm) are resampled before training, as nnU-Net does (Isensee et al.,
Nat. Methods 2021): images with cubic splines (order 3), label maps by linear interpolation of their
one-hot channels (so thin structures survive, unlike nearest neighbour) or nearest neighbour for many
classes. Grids are aligned by their outer edges (``scipy.ndimage.zoom(grid_mode=True)``), so the field
of view is kept and the affine is updated exactly; resampling back to the original shape lands on the
original voxel centres.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .io import ImageMeta

ONE_HOT_MAX = 16  # label maps with more classes are resampled by nearest neighbour (memory)


def target_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> tuple[int, ...]:
    """The shape covering the same field of view at `target_spacing` (at least 1 voxel per axis)."""
    _check(shape, spacing, target_spacing)
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing, strict=True))


def _check(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> None:
    if not len(shape) == len(spacing) == len(target):
        raise ConfigError(f"shape {list(shape)}, spacing {list(spacing)} and target {list(target)} differ in length")
    if any(t <= 0 for t in target) or any(s <= 0 for s in spacing):
        raise ConfigError(f"spacings must be positive, got {list(spacing)} and target {list(target)}")


def _zoom(arr: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample the trailing spatial axes of `arr` to `shape`, edges aligned."""
    from scipy import ndimage

    spatial = arr.shape[-len(shape) :]
    if tuple(spatial) == tuple(shape):
        return arr.copy()
    factors = (1.0,) * (arr.ndim - len(shape)) + tuple(o / i for o, i in zip(shape, spatial, strict=True))
    out = ndimage.zoom(arr, factors, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
    assert out.shape[-len(shape) :] == tuple(shape), (out.shape, shape)  # zoom rounds in*f, which is exact here
    return out


def resample_image(image: np.ndarray, shape: Sequence[int], order: int = 3) -> np.ndarray:
    """A channel-first image ``(C, *spatial)`` resampled to ``shape`` (cubic by default), as float32."""
    return _zoom(image.astype(np.float32, copy=False), shape, order).astype(np.float32, copy=False)


def resample_labels(labels: np.ndarray, shape: Sequence[int], classes: int | None = None) -> np.ndarray:
    """A label map ``(*spatial)`` resampled to ``shape``: one-hot linear then argmax, or nearest for many classes."""
    k = int(labels.max()) + 1 if classes is None else int(classes)
    if k > ONE_HOT_MAX:
        return _zoom(labels, shape, order=0)
    channels = np.stack([(labels == c).astype(np.float32) for c in range(k)])
    return np.argmax(_zoom(channels, shape, order=1), axis=0).astype(labels.dtype, copy=False)


def resample_probabilities(probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Class probabilities ``(C, *spatial)`` resampled linearly to ``shape`` (threshold or argmax afterwards)."""
    return _zoom(probs.astype(np.float32, copy=False), shape, order=1)


def resampled_meta(meta: ImageMeta, old_shape: Sequence[int], new_shape: Sequence[int]) -> ImageMeta:
    """The geometry of a resampled array: spacing and affine of the new grid over the same field of view.

    New voxel ``i`` sits at old voxel coordinate ``(i + 0.5) * f - 0.5`` with ``f = old / new`` per axis.
    """
    f = np.array([o / n for o, n in zip(old_shape, new_shape, strict=True)], dtype=np.float64)
    spacing = tuple(float(s * k) for s, k in zip(meta.spacing, f, strict=True))
    affine = None
    if meta.affine is not None:
        dims = len(f)
        step = np.eye(4)
        step[:dims, :dims] = np.diag(f)
        step[:dims, 3] = 0.5 * f - 0.5
        affine = meta.affine @ step
    return dataclasses.replace(meta, spacing=spacing, affine=affine)


def on_spacing(
    image: np.ndarray,
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    labels: np.ndarray | None = None,
    classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Image ``(C, *spatial)`` (cubic) and its label map (one-hot linear) on the grid of `target_spacing`, over the
    same field of view; returned as given when they are on it already.

    How an image is prepared as training saw it, for training (:class:`unetpp.data.SegmentationDataset`) and
    prediction alike (:func:`unetpp.inference.preprocess.prepare_input`).
    """
    shape = target_shape(image.shape[1:], spacing, target_spacing)
    if shape == tuple(image.shape[1:]):
        return image, labels
    return resample_image(image, shape), None if labels is None else resample_labels(labels, shape, classes)


def to_spacing(
    image: np.ndarray,
    meta: ImageMeta,
    target_spacing: Sequence[float],
    labels: np.ndarray | None = None,
    classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, ImageMeta]:
    """Image ``(C, *spatial)`` (and its label map) resampled to `target_spacing`, with the new geometry.

    Example:
        >>> img, lab, m = to_spacing(image, meta, (1.0, 1.0, 1.0), labels)  # 1x1x3 mm -> isotropic
        >>> back = from_spacing_labels(lab, image.shape[1:])  # original shape again
    """
    old = image.shape[1:]
    new = target_shape(old, meta.spacing, target_spacing)
    out = resample_image(image, new)
    lab = None if labels is None else resample_labels(labels, new, classes)
    return out, lab, resampled_meta(meta, old, new)


def from_spacing_labels(labels: np.ndarray, shape: Sequence[int], classes: int | None = None) -> np.ndarray:
    """A label map predicted on the resampled grid, brought back to the original ``shape``."""
    return resample_labels(labels, shape, classes)
