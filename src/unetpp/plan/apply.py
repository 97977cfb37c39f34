"""What training and prediction do with a plan: intensity normalisation and the resampled grid, there and back.

Training calls :func:`prepare` on each image (and mask) it reads; prediction calls :func:`prepare` on the
input and :func:`restore` on the predicted probabilities, so that masks come back on the input's own
grid with its own affine. Both need nothing but the plan, which travels with the checkpoint.
"""

from __future__ import annotations

import numpy as np

from ..data.io import ImageMeta
from ..data.transforms import normalize_intensity
from ..errors import ConfigError
from .record import Plan
from .resample import resample_probabilities, to_spacing


def normalize(image: np.ndarray, plan: Plan) -> np.ndarray:
    """``(C, *spatial)`` to float32 as the plan says: "ct" clips to the data set's foreground percentiles and
    z-scores with its mean and sd (the same numbers for every image, as Hounsfield units are absolute);
    other modes are per image (:func:`~unetpp.data.transforms.normalize_intensity`).
    """
    if plan.normalize != "ct":
        return normalize_intensity(image, plan.normalize)  # type: ignore[arg-type]
    if plan.intensity_clip is None or plan.intensity_mean is None or plan.intensity_std is None:
        raise ConfigError("normalize='ct' needs intensity_clip, intensity_mean and intensity_std in the plan")
    if len(plan.intensity_clip) != image.shape[0]:
        raise ConfigError(
            f"the plan has CT statistics for {len(plan.intensity_clip)} channel(s), image has {image.shape[0]}"
        )
    stats = tuple(
        (float(lo), float(hi), float(m), float(s))
        for (lo, hi), m, s in zip(plan.intensity_clip, plan.intensity_mean, plan.intensity_std, strict=True)
    )
    return normalize_intensity(image, "ct", stats)


def prepare(
    image: np.ndarray, meta: ImageMeta, plan: Plan, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, ImageMeta]:
    """Image (and label map) on the plan's grid, normalised: resampled first (cubic), then normalised."""
    if plan.target_spacing is not None and meta.spatial_dims == 3:
        classes = max(2, plan.classes)
        image, labels, meta = to_spacing(image, meta, plan.target_spacing, labels, classes)
    return normalize(image, plan), labels, meta


def restore(probs: np.ndarray, original_shape: tuple[int, ...]) -> np.ndarray:
    """Probabilities ``(C, *spatial)`` predicted on the plan's grid, back on the input's grid (linear).

    Threshold or argmax them afterwards and write them with the input's own :class:`ImageMeta`.
    """
    if tuple(probs.shape[1:]) == tuple(original_shape):
        return probs
    return resample_probabilities(probs, original_shape)
