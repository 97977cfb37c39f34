"""The embedded demo data set: synthetic EM-like images of touching cells, made on the fly (no download).

It imitates the ISBI 2012 task the paper starts with: grey cell interiors separated by thin dark
membranes, where the label is 1 for cell interior and 0 for membrane (like ISBI's 255/0), about 75% of
pixels being interior. How an image is made:

1. cells: a power (weighted Voronoi) diagram of random seeds with random weights, so cell sizes vary,
   evaluated on smoothly warped coordinates, so membranes curve as in tissue;
2. membranes: the cell boundaries, thickened to a width that varies smoothly along them (1-3 px at 256²);
3. intensity: a grey level per cell, a smooth texture, dark organelle-like blobs inside cells (labelled
   interior, as ISBI labels mitochondria: they make the task more than thresholding), dark membranes of
   varying contrast; then a Gaussian blur (the microscope's PSF) and Gaussian noise.

``difficulty="hard"`` makes the task one where context matters (used by ``unetpp demo``): membranes
are thinner (about 1-2 px at 256²) and fainter, fade out along stretches (gaps that are still labelled
membrane, as in ISBI where a membrane parallel to the cut blurs away), organelles are more frequent and
as dark as membranes, and the blur and noise are stronger. A U-Net cannot just threshold dark lines.

Everything is drawn from ``numpy.random.default_rng([seed, k])`` for image ``k``, so an image does not
depend on how many are made, and the same seed always gives the same bytes (the default difficulty's
images are the same as before ``difficulty`` existed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError
from .writers import write_image, write_mask

PathLike = str | os.PathLike[str]
Difficulty = Literal["default", "hard"]


@dataclass(frozen=True)
class _Look:
    """The constants of one difficulty (intensities 0..255; widths in px at 256²)."""

    width: tuple[float, float]  # distance to the boundary that is membrane: mean, amplitude along the membrane
    organelle_quantile: float  # the darkest (1 - q) of a smooth field become organelles
    organelle_level: tuple[float, float]
    membrane_level: float  # mean membrane grey level (a smooth field adds +-25)
    blur: tuple[float, float]
    noise: tuple[float, float]
    gaps: float  # fraction of membrane length that fades into the cells (0: none)


_LOOKS = {
    "default": _Look((2.5, 0.6), 0.92, (70, 110), 75, (0.6, 1.0), (10, 18), 0.0),
    "hard": _Look((1.6, 0.5), 0.85, (75, 105), 95, (1.0, 1.5), (16, 24), 0.2),
}


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in about [-1, 1]: a ``cells`` x ``cells`` random grid, Gaussian-interpolated.

    Separable (``A @ grid @ A.T``) rather than ``scipy.ndimage.map_coordinates``: 20x faster at 256².
    """
    centres = np.linspace(-0.5, cells - 0.5, cells + 2)
    x = np.linspace(0, cells - 1, size)
    basis = np.exp(-0.5 * ((x[:, None] - centres[None]) / 0.6) ** 2)
    basis /= basis.sum(axis=1, keepdims=True)
    grid = rng.uniform(-1, 1, (cells + 2, cells + 2))
    field = np.einsum("ib,jb->ij", np.einsum("ia,ab->ib", basis, grid), basis)  # no BLAS threads: tiny
    return (field / max(np.abs(field).max(), 1e-6)).astype(np.float32)


def _one_image(rng: np.random.Generator, size: int, look: _Look = _LOOKS["default"]) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    scale = size / 256
    # 1. cells: a power diagram argmin_k |x - s_k|^2 - w_k, i.e. argmax_k 2 x.s_k - |s_k|^2 + w_k (one matmul)
    n_cells = max(4, int(rng.integers(40, 60) * scale**2))
    margin = 0.1 * size
    seeds = rng.uniform(-margin, size + margin, (n_cells, 2))
    mean_area = (size + 2 * margin) ** 2 / n_cells
    weights = rng.lognormal(0.0, 0.6, n_cells) * mean_area * 0.25
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    warp = 0.2 * np.sqrt(mean_area)  # curvature of the membranes, relative to the cell size
    yy = yy + warp * _smooth_field(rng, size, max(2, size // 32))
    xx = xx + warp * _smooth_field(rng, size, max(2, size // 32))
    # broadcasting, not a BLAS matmul: multi-threaded BLAS is slower here on a busy machine
    sy, sx = (2 * seeds.T).astype(np.float32)
    offset = (weights - (seeds**2).sum(axis=1)).astype(np.float32)
    score = yy.reshape(-1, 1) * sy + xx.reshape(-1, 1) * sx + offset
    cells = score.argmax(axis=1).reshape(size, size)

    # 2. membranes: pixels near a boundary, the width varying along the membrane
    boundary = np.zeros((size, size), dtype=bool)
    boundary[:-1] |= cells[:-1] != cells[1:]
    boundary[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    distance = ndimage.distance_transform_edt(~boundary).astype(np.float32)
    width = look.width[0] + look.width[1] * _smooth_field(rng, size, max(2, size // 40))
    membrane = distance < width
    mask = (~membrane).astype(np.uint8)

    # 3. intensities (0..255): cell grey levels, texture, organelles, membranes, blur, noise. Tuned so that
    # membrane and interior means (about 82 and 156) are near ISBI's (87 and 144), and that the best global
    # threshold labels about 91% of pixels right (ISBI: 83%): hard enough that a network must use context.
    cell_level = rng.uniform(120, 205, n_cells).astype(np.float32)[cells]
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), 2.0)
    texture *= 18 / max(texture.std(), 1e-6)
    blobs_field = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), 3.0)
    organelles = (blobs_field > np.quantile(blobs_field, look.organelle_quantile)) & (distance > width + 2)
    image = cell_level + texture
    image[organelles] = rng.uniform(*look.organelle_level) + 0.5 * texture[organelles]
    membrane_level = look.membrane_level + 25 * _smooth_field(rng, size, max(2, size // 32))
    drawn = membrane
    if look.gaps > 0:  # stretches where the membrane fades into the cells but stays labelled membrane
        fade = _smooth_field(rng, size, max(2, size // 24))
        drawn = membrane & (fade < np.quantile(fade, 1 - look.gaps))
    image = np.where(drawn, membrane_level, image)
    image = ndimage.gaussian_filter(image, rng.uniform(*look.blur))
    image += rng.uniform(*look.noise) * rng.standard_normal((size, size), dtype=np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


def make_synthetic_em(
    n_images: int, size: int = 256, seed: int = 0, difficulty: Difficulty = "default"
) -> tuple[np.ndarray, np.ndarray]:
    """Make ``n_images`` EM-like images of touching cells and their masks.

    Args:
        n_images: how many.
        size: side of the square images (at least 32).
        seed: the same seed gives the same data; image ``k`` is the same whatever ``n_images``.
        difficulty: ``"default"`` or ``"hard"`` (thinner, fainter, broken membranes; see the module docstring).

    Returns:
        ``images`` uint8 ``(N, size, size)`` and ``masks`` uint8 ``(N, size, size)`` with 1 = cell interior,
        0 = membrane.

    Raises:
        ConfigError: ``n_images < 1``, ``size < 32`` or an unknown difficulty.

    Example:
        >>> images, masks = make_synthetic_em(4, size=128)
        >>> images.shape, masks.dtype, round(float(masks.mean()), 1)
        ((4, 128, 128), dtype('uint8'), 0.8)
    """
    if not isinstance(n_images, int) or n_images < 1:
        raise ConfigError(f"n_images must be an int >= 1, got {n_images!r}")
    if not isinstance(size, int) or size < 32:
        raise ConfigError(f"size must be an int >= 32, got {size!r}")
    if difficulty not in _LOOKS:
        raise ConfigError(f"difficulty must be one of {list(_LOOKS)}, got {difficulty!r}")
    pairs = [_one_image(np.random.default_rng([seed, k]), size, _LOOKS[difficulty]) for k in range(n_images)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def write_synthetic_dataset(
    root: PathLike,
    n_images: int = 20,
    size: int = 256,
    seed: int = 0,
    *,
    overwrite: bool = False,
    difficulty: Difficulty = "default",
) -> Path:
    """Write :func:`make_synthetic_em` as a paired-folder data set (``images/NNN.png``, ``masks/NNN.png``).

    Masks are stored as 0/255 PNGs, as ISBI's are; read the folder with
    :class:`~unetpp.data.datasets.FolderPairs`.

    Returns:
        ``root``.

    Raises:
        DataError: ``root`` already holds image or mask files and ``overwrite`` is False.
    """
    root = Path(root)
    for sub in ("images", "masks"):
        if not overwrite and (root / sub).is_dir() and any((root / sub).iterdir()):
            raise DataError(f"{root / sub}: folder is not empty; choose another folder or pass overwrite=True")
    images, masks = make_synthetic_em(n_images, size, seed, difficulty)
    width = max(3, len(str(n_images - 1)))
    for k, (image, mask) in enumerate(zip(images, masks, strict=True)):
        write_image(root / "images" / f"{k:0{width}d}.png", image[None], overwrite=overwrite)
        write_mask(root / "masks" / f"{k:0{width}d}.png", mask, overwrite=overwrite)
    return root
