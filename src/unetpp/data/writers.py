"""Write images and masks in the formats :mod:`unetpp.data.io` reads, through the one atomic writer.

A crash never leaves half a file, and nothing is overwritten unless asked (:func:`unetpp.utils.atomic.atomic_write`).
NIfTI outputs keep the affine and spacing of the input they were predicted from (its :class:`ImageMeta`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..utils.atomic import atomic_write
from .io import NIFTI_SUFFIXES, NUMPY_SUFFIXES, PILLOW_SUFFIXES, SUFFIXES, TIFF_SUFFIXES, ImageMeta, PathLike, suffix


def write_image(path: PathLike, image: np.ndarray, *, meta: ImageMeta | None = None, overwrite: bool = False) -> Path:
    """Write a channel-first image ``(C, *spatial)`` atomically; the format follows the suffix.

    PNG/BMP take 1, 3 or 4 channels of uint8 (PNG also uint16 grey), JPEG 1 or 3 channels of uint8 (it is
    lossy). TIFF takes 2-D images and single-channel 3-D stacks. NIfTI takes 2-D or 3-D data and writes
    ``meta.affine`` (or a diagonal of ``meta.spacing``, or identity). ``.npy`` stores the array, without
    its channel axis when there is one channel, so that :func:`read_image` reads it back unambiguously.

    Args:
        path: the file to write.
        image: ``(C, *spatial)``; no value conversion is done, so convert dtypes explicitly beforehand.
        meta: geometry to keep (NIfTI only), e.g. from :func:`read_with_meta`.
        overwrite: replace an existing file.

    Raises:
        DataError: the file exists, the suffix is unknown, or the array does not fit the format.
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise DataError(f"{path}: image must be channel-first (C, H, W) or (C, D, H, W), got shape {image.shape}")
    return _write(path, image, meta, overwrite, what="image")


def write_mask(path: PathLike, mask: np.ndarray, *, meta: ImageMeta | None = None, overwrite: bool = False) -> Path:
    """Write a label map ``(*spatial)`` of class ids atomically; binary masks are stored as 0/255.

    0/255 makes binary masks visible in any viewer and matches ISBI's convention; :func:`read_mask` maps
    them back to {0, 1}. Label maps with more classes keep their ids. JPEG is refused: its compression
    changes values and would corrupt the labels.

    Raises:
        DataError: the file exists, JPEG or an unknown suffix, negative or non-integer values.
    """
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise DataError(f"{path}: mask must be a label map (H, W) or (D, H, W), got shape {mask.shape}")
    if suffix(path) in (".jpg", ".jpeg"):
        raise DataError(f"{path}: JPEG is lossy and would corrupt the labels; save masks as PNG, TIFF, NIfTI or .npy")
    if mask.dtype.kind not in "biuf" or (mask.dtype.kind == "f" and not np.array_equal(mask, np.round(mask))):
        raise DataError(f"{path}: mask of dtype {mask.dtype} does not hold integer class ids")
    if mask.size and mask.min() < 0:
        raise DataError(f"{path}: mask has negative values; class ids start at 0")
    top = int(mask.max()) if mask.size else 0
    ext = suffix(path)
    if top <= 1 and ext not in NIFTI_SUFFIXES + NUMPY_SUFFIXES:
        mask = mask.astype(np.uint8) * 255
    else:
        mask = mask.astype(np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int32)
    return _write(path, mask[None], meta, overwrite, what="mask")


def _write(path: PathLike, arr: np.ndarray, meta: ImageMeta | None, overwrite: bool, what: str) -> Path:
    ext = suffix(path)
    channels, spatial = arr.shape[0], arr.shape[1:]
    if ext in PILLOW_SUFFIXES:
        allowed = (1, 3) if ext in (".jpg", ".jpeg") else (1, 3, 4)
        ok_dtype = arr.dtype == np.uint8 or (ext == ".png" and arr.dtype == np.uint16 and channels == 1)
        if len(spatial) != 2 or channels not in allowed or not ok_dtype:
            raise DataError(
                f"{path}: {ext} holds 2-D uint8 images with {allowed} channels (PNG also 1-channel uint16), "
                f"got {what} {arr.shape} {arr.dtype}; convert it, or use .tif, .nii.gz or .npy"
            )

        def write(tmp: Path) -> None:
            from PIL import Image

            plane = arr[0] if channels == 1 else np.moveaxis(arr, 0, -1)
            Image.fromarray(np.ascontiguousarray(plane)).save(tmp, format=ext.lstrip(".").replace("jpg", "jpeg"))

    elif ext in TIFF_SUFFIXES:
        if channels not in ((1,) if len(spatial) == 3 else (1, 3, 4)):
            raise DataError(
                f"{path}: TIFF is written for 2-D images with 1, 3 or 4 channels and for 1-channel stacks, "
                f"got {arr.shape}; use .nii.gz or .npy"
            )

        def write(tmp: Path) -> None:
            import tifffile

            if channels == 1:  # explicit: tifffile would otherwise take a 3- or 4-page stack for RGB planes
                tifffile.imwrite(tmp, arr[0], photometric="minisblack")
            else:
                tifffile.imwrite(tmp, np.moveaxis(arr, 0, -1), photometric="rgb")

    elif ext in NIFTI_SUFFIXES:

        def write(tmp: Path) -> None:
            import nibabel as nib

            data = arr[0] if channels == 1 else np.moveaxis(arr, 0, -1)
            if meta is not None and meta.affine is not None:
                affine = meta.affine
            elif meta is not None:
                affine = np.diag([*meta.spacing, *(1.0,) * (4 - len(meta.spacing))])
            else:
                affine = np.eye(4)
            nib.save(nib.Nifti1Image(data, affine), tmp)

    elif ext in NUMPY_SUFFIXES:

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would append '.npy' to a name
                np.save(f, arr[0] if channels == 1 else arr, allow_pickle=False)

    else:
        raise DataError(f"{path}: unknown file type {ext or '(no suffix)'!r}; use one of {', '.join(SUFFIXES)}")
    return atomic_write(path, write, overwrite)
