"""Augmentation (2D and 3D, image and mask together) and intensity normalisation.

Augmentation is TorchIO (Pérez-García et al., CMPB 2021, doi:10.1016/j.cmpb.2021.106236): random flips,
elastic deformation, affine, gamma, noise and blur, each applied to the image and its mask jointly, the
mask with nearest-neighbour interpolation (TorchIO does that for a ``LabelMap``). This module only adapts
a sample dict ``{"image": (C, *spatial), "mask": (1, *spatial), ...}`` to a TorchIO subject and back;
2-D samples travel as ``(C, H, W, 1)`` and are never deformed along the dummy axis. The 90° rotations
are plain :func:`torch.rot90` (TorchIO has none), in planes whose two sizes are equal so the shape holds.

Randomness comes from torch's global generator (TorchIO's choice). A DataLoader seeds each worker's
generator from the main process's, so ``torch.manual_seed`` (or ``lightning.seed_everything``) before
creating the loader makes augmentation reproducible.

Normalisation is plain NumPy (:func:`normalize_intensity`), applied per image by the data sets before
patches are cut, so that a patch of background keeps the intensities of its image rather than being
stretched on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError

NormalizeMode = Literal["zscore", "percentile", "none", "ct"]
IntensityStats = tuple[tuple[float, float, float, float], ...]  # per channel: clip low, clip high, mean, sd
Strength = Literal["light", "full", "none"]
SampleTransform = Callable[[dict], dict]


def zscore(image: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per-channel ``(x - mean) / std`` over the whole image, as float32.

    Why per image: microscopy and MRI intensities have no absolute scale, so each image is brought to
    zero mean and unit variance (nnU-Net's default for non-CT data). A constant channel becomes zeros.

    Args:
        image: ``(C, *spatial)``.
        eps: guards the division for constant channels.
    """
    x = image.astype(np.float32, copy=True)
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    return (x - mean) / np.maximum(std, eps)


def percentile_clip(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip each channel to its ``[low, high]`` percentiles, as float32.

    For CT-like inputs, where a few extreme voxels (metal, air, padding values such as -3024) would
    dominate the mean and standard deviation; nnU-Net clips CT to the 0.5/99.5 percentiles of the
    foreground before normalising. Here the percentiles are per image.

    Raises:
        ConfigError: percentiles outside ``0 <= low < high <= 100``.
    """
    if not 0 <= low < high <= 100:
        raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    x = image.astype(np.float32, copy=True)
    flat = x.reshape(x.shape[0], -1)
    lo, hi = np.percentile(flat, [low, high], axis=1)
    return np.clip(x, lo.reshape((-1,) + (1,) * (x.ndim - 1)), hi.reshape((-1,) + (1,) * (x.ndim - 1)))


def normalize_intensity(
    image: np.ndarray, mode: NormalizeMode = "zscore", stats: IntensityStats | None = None
) -> np.ndarray:
    """Normalise an image ``(C, *spatial)`` to float32.

    Args:
        image: ``(C, *spatial)``.
        mode: ``"zscore"`` per channel; ``"percentile"`` clips to the 0.5/99.5 percentiles, then z-scores
            (CT-like data, per image); ``"ct"`` clips to the data set's foreground percentiles and z-scores
            with the data set's mean and sd (`stats`, the same numbers for every image, as nnU-Net does
            for CT, whose Hounsfield units are absolute); ``"none"`` only casts to float32.
        stats: for ``"ct"``: per channel ``(clip_low, clip_high, mean, sd)`` (see :mod:`unetpp.plan`).

    Raises:
        ConfigError: unknown mode, or ``"ct"`` without statistics for every channel.
    """
    if mode == "zscore":
        return zscore(image)
    if mode == "percentile":
        return zscore(percentile_clip(image))
    if mode == "none":
        return image.astype(np.float32)
    if mode == "ct":
        if stats is None or len(stats) != image.shape[0]:
            have = "none" if stats is None else f"{len(stats)} channel(s)"
            raise ConfigError(
                f"normalize='ct' needs intensity statistics for each of the image's {image.shape[0]} channel(s), "
                f"got {have}; set data.intensity_clip/intensity_mean/intensity_std (or let the plan set them)"
            )
        out = np.empty(image.shape, dtype=np.float32)
        for c, (lo, hi, mean, sd) in enumerate(stats):
            out[c] = (np.clip(image[c].astype(np.float32), lo, hi) - mean) / max(sd, 1e-8)
        return out
    raise ConfigError(f"normalize must be 'zscore', 'percentile', 'ct' or 'none', got {mode!r}")


class RandomRot90:
    """Rotate image and mask by a random multiple of 90° in each square plane of the spatial axes.

    Args:
        p: probability of rotating, per plane.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: dict) -> dict:
        image, mask = sample["image"], sample["mask"]
        spatial = range(1, image.ndim)
        for a in spatial:
            for b in spatial:
                if a < b and image.shape[a] == image.shape[b] and torch.rand(()) < self.p:
                    k = int(torch.randint(1, 4, ()))
                    image, mask = torch.rot90(image, k, (a, b)), torch.rot90(mask, k, (a, b))
        return {**sample, "image": image.contiguous(), "mask": mask.contiguous()}


class TorchioAugment:
    """Apply a TorchIO transform to image and mask jointly; 2-D samples go through as ``(C, H, W, 1)``.

    Args:
        transform: a TorchIO transform (e.g. ``tio.Compose``) expecting a subject with an ``image``
            ``ScalarImage`` and a ``mask`` ``LabelMap``.
        spatial_dims: 2 or 3.
    """

    def __init__(self, transform: Callable, spatial_dims: int) -> None:
        self.transform = transform
        self.spatial_dims = spatial_dims

    def __call__(self, sample: dict) -> dict:
        import torchio as tio

        image, mask = sample["image"], sample["mask"]
        if self.spatial_dims == 2:
            image, mask = image.unsqueeze(-1), mask.unsqueeze(-1)
        subject = tio.Subject(image=tio.ScalarImage(tensor=image), mask=tio.LabelMap(tensor=mask))
        out = self.transform(subject)
        image, mask = out["image"].data, out["mask"].data
        if self.spatial_dims == 2:
            image, mask = image.squeeze(-1), mask.squeeze(-1)
        return {**sample, "image": image.float().contiguous(), "mask": mask.long().contiguous()}


class RescaledGamma:
    """Gamma on intensities rescaled to [0, 1] and back, so that z-scored (negative) values are valid.

    TorchIO's ``RandomGamma`` computes ``sign(x)|x|^gamma`` on negative values, which bends a z-scored
    image around 0 instead of its darkest value; nnU-Net rescales first, and so does this wrapper.
    """

    def __init__(self, log_gamma: tuple[float, float] = (-0.3, 0.3), p: float = 0.3) -> None:
        self.log_gamma = log_gamma
        self.p = p

    def __call__(self, sample: dict) -> dict:
        import torchio as tio

        image = sample["image"]
        lo, hi = image.amin(), image.amax()
        if hi <= lo:
            return sample
        unit = (image - lo) / (hi - lo)
        gamma = tio.RandomGamma(log_gamma=self.log_gamma, p=self.p)
        # 2-D images are (C, H, W): a 4-D tensor is what TorchIO wants, so add the dummy axis here too
        out = gamma(tio.ScalarImage(tensor=unit.unsqueeze(-1) if unit.ndim == 3 else unit)).data
        out = out.reshape(unit.shape)
        return {**sample, "image": (out * (hi - lo) + lo).float()}


class Compose:
    """Apply sample transforms in order (a tiny ``torchvision.transforms.Compose`` for sample dicts)."""

    def __init__(self, transforms: list[SampleTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: dict) -> dict:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return f"Compose({', '.join(type(t).__name__ for t in self.transforms)})"


def identity(sample: Mapping) -> dict:
    """The transform of ``strength="none"``: validation and test data are not augmented."""
    return dict(sample)


ELASTIC_CONTROL_POINTS = 7
ELASTIC_MAX_DISPLACEMENT = 7.5  # voxels, on patches large enough (U-Net's EM augmentation)


def elastic_displacement(patch_size: tuple[int, ...] | None, spatial_dims: int) -> tuple[float, ...]:
    """Largest displacement per axis that cannot fold the B-spline grid of the patch (TorchIO's rule).

    TorchIO warns (and the grid may fold) when a displacement exceeds half the coarse grid spacing,
    ``size / (control_points - 3)``; small patches (a 32^3 hippocampus crop) get a proportionally
    smaller displacement instead of a warning per sample.
    """
    sizes = patch_size or ((96, 96) if spatial_dims == 2 else (64, 64, 64))
    limit = [0.45 * s / (ELASTIC_CONTROL_POINTS - 3) for s in sizes]
    return tuple(min(ELASTIC_MAX_DISPLACEMENT, round(v, 3)) for v in limit)


def build_transforms(
    spatial_dims: int, strength: Strength = "light", patch_size: tuple[int, ...] | None = None
) -> SampleTransform:
    """The augmentation pipeline for training, or the identity for ``strength="none"``.

    ``"light"`` (the default): flips on every spatial axis, 90° rotations, gamma, Gaussian noise and Gaussian blur;
    no resampling. ``"full"`` adds what nnU-Net's on-the-fly augmentation resamples, at moderate probabilities: a
    random affine (±15° in-plane, scale 0.85-1.15) and elastic deformation (as U-Net and UNet++ used for EM).
    The resamplings are most of the cost in the loader worker, which shares a small machine's cores with training
    (a 96x96 sample 5.2 ms with them, 1.1 ms without; a 40x56x40 one 18 and 1.4 ms), and at 6 minutes on a 2-core
    CPU "light" scored higher on ISBI, DSB 2018 and the hippocampus (paired over held-out images;
    ``benchmarks/RESULTS.md``, session 13). Intensity transforms assume z-scored images (the data sets' default).

    Args:
        spatial_dims: 2 for ``(C, H, W)`` samples, 3 for ``(C, D, H, W)``.
        strength: ``"light"``, ``"full"`` or ``"none"``.
        patch_size: the patches' size (default 96x96 / 64^3): elastic deformation is scaled to fit it.

    Returns:
        A callable mapping a sample dict to a new sample dict with the same shapes.

    Raises:
        ConfigError: ``spatial_dims`` not 2 or 3, or an unknown strength.

    Example:
        >>> t = build_transforms(2)
        >>> t({"image": torch.zeros(1, 96, 96), "mask": torch.zeros(1, 96, 96, dtype=torch.long)})["image"].shape
        torch.Size([1, 96, 96])
    """
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if strength == "none":
        return identity
    if strength not in ("light", "full"):
        raise ConfigError(f"strength must be 'light', 'full' or 'none', got {strength!r}")
    import torchio as tio

    flat = spatial_dims == 2  # 2-D samples carry a dummy third axis of size 1: never move along it
    degrees = (0, 0, 0, 0, -15, 15) if flat else 15
    scales = (0.85, 1.15, 0.85, 1.15, 1, 1) if flat else (0.85, 1.15)
    displacement = elastic_displacement(patch_size, spatial_dims) + ((0.0,) if flat else ())
    blur = (0, 1, 0, 1, 0, 0) if flat else (0, 1)
    resampling = [
        tio.RandomAffine(scales=scales, degrees=degrees, default_pad_value="minimum", p=0.3),
        tio.RandomElasticDeformation(ELASTIC_CONTROL_POINTS, max_displacement=displacement, p=0.2),
    ]
    spatial = tio.Compose(
        [
            tio.RandomFlip(axes=(0, 1) if flat else (0, 1, 2), flip_probability=0.5),
            *(resampling if strength == "full" else []),
        ]
    )
    intensity = tio.Compose([tio.RandomNoise(std=(0, 0.1), p=0.15), tio.RandomBlur(std=blur, p=0.15)])
    return Compose(
        [
            RandomRot90(p=0.5),
            TorchioAugment(spatial, spatial_dims),
            RescaledGamma(p=0.3),
            TorchioAugment(intensity, spatial_dims),
        ]
    )
