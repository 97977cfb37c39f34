"""Read images and masks: PNG/JPEG, TIFF (multi-page stacks too), NIfTI and NumPy files.

One reader per format sits behind :func:`read_image` and :func:`read_mask`, so the rest of the package
never sees a format. Two rules hold for every format:

* **Layout.** An image is returned channel-first, ``(C, *spatial)``, in its stored dtype; a mask is a
  label map ``(*spatial)`` of ``int64`` class ids (no channel axis: a label map has one value per pixel).
  ``spatial`` is ``(H, W)`` for images and ``(D, H, W)`` for TIFF stacks; NIfTI keeps the file's voxel
  order ``(X, Y, Z)``, as nibabel does, so that the affine stays valid.
* **Errors.** Every problem with a file raises :class:`~unetpp.errors.DataError` as
  ``"{path}: {what went wrong}; {what to do}"``, never a bare Pillow, tifffile or nibabel exception.

The writers of the same formats are in :mod:`unetpp.data.writers`.

Pillow, tifffile and nibabel are imported inside the functions that need them, so
``import unetpp.data`` stays light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import DataError
from .limits import check_declared
from .mask_values import class_ids, threshold_mask

PathLike = str | os.PathLike[str]

PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
NUMPY_SUFFIXES = (".npy",)
SUFFIXES = PILLOW_SUFFIXES + TIFF_SUFFIXES + NIFTI_SUFFIXES + NUMPY_SUFFIXES


@dataclass(frozen=True, eq=False)
class ImageMeta:
    """Where an array came from and its physical geometry.

    Args:
        path: the file read.
        spatial_dims: 2 or 3.
        spacing: voxel size along each spatial axis, in the file's units (mm for NIfTI); 1.0 for
            formats whose spacing is not read (PNG, JPEG, TIFF, NumPy).
        affine: the 4x4 voxel-to-world matrix of a NIfTI file, ``None`` for other formats.
    """

    path: Path
    spatial_dims: int
    spacing: tuple[float, ...]
    affine: np.ndarray | None = field(default=None, repr=False)


def suffix(path: PathLike) -> str:
    """The lower-case format suffix, with the double suffix ``.nii.gz`` kept whole."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def stem(path: PathLike) -> str:
    """The file name without its format suffix (``case_1.nii.gz`` -> ``case_1``): the key that pairs files."""
    name = Path(path).name
    return name[: len(name) - len(suffix(path))]


def is_supported(path: PathLike) -> bool:
    """True for a visible file with a suffix this module reads; ``._*`` and other hidden files are skipped."""
    return not Path(path).name.startswith(".") and suffix(path) in SUFFIXES


# --------------------------------------------------------------------------------------------- reading


def read_with_meta(path: PathLike, spatial_dims: int | None = None) -> tuple[np.ndarray, ImageMeta]:
    """Read an image as ``(C, *spatial)`` with its geometry; values are checked to be finite.

    Args:
        path: a PNG, JPEG, BMP, TIFF, NIfTI (``.nii``/``.nii.gz``) or ``.npy`` file.
        spatial_dims: 2 or 3 to insist on a dimensionality (and to resolve ``.npy`` layouts); ``None``
            takes it from the file: 2 for PNG/JPEG, 3 for TIFF stacks and 3-D NIfTI, and for ``.npy``
            2 for a 2-D array and 3 for a 3-D or 4-D one (a 3-D array is read as a grey volume, a
            4-D one as channel-first ``(C, D, H, W)``; pass ``spatial_dims=2`` for a ``(C, H, W)`` array).

    Returns:
        The array in its stored dtype and an :class:`ImageMeta`.

    Raises:
        DataError: missing file, unknown suffix, unreadable or truncated file, wrong dimensionality,
            NaN or Inf values.
    """
    arr, meta = _read_any(path, spatial_dims, for_mask=False)
    _check_finite(arr, meta.path)
    return arr, meta


def read_image(path: PathLike, spatial_dims: int | None = None) -> np.ndarray:
    """Read an image as ``(C, *spatial)`` in its stored dtype; see :func:`read_with_meta`.

    Example:
        >>> read_image("images/00.png").shape  # a 512x512 grey PNG
        (1, 512, 512)
    """
    return read_with_meta(path, spatial_dims)[0]


def read_mask(
    path: PathLike,
    spatial_dims: int | None = None,
    label_count: int | None = None,
    threshold: float | None = None,
    *,
    dtype: npt.DTypeLike = np.int64,
) -> np.ndarray:
    """Read a mask as a label map ``(*spatial)`` of class ids (``int64`` unless `dtype` says otherwise).

    Accepted encodings: binary {0, 1}; binary {0, 255} (mapped to {0, 1}, e.g. ISBI's 255 = cell
    interior); integer label maps (also palette PNGs, whose indices are the ids). A multi-channel mask is
    accepted only when its channels are equal (a grey mask saved as RGB) and a constant alpha channel is
    dropped; a colour-coded mask is rejected because colours are not class ids.

    Args:
        path: the mask file (same formats as :func:`read_image`; JPEG is read but lossy, so avoid it).
        spatial_dims: see :func:`read_with_meta`.
        label_count: when given, every id must be below it; with 2 the message says the mask is not
            binary (e.g. anti-aliased edges 0/128/255). ``None`` accepts any non-negative integer ids.
        threshold: binarise first, ``value > threshold`` -> 1, for masks whose two values were blurred by
            JPEG compression or resizing (0-8 and 247-255: threshold 127.5, the midpoint). The pixels that
            were not clean 0 or 255 (0 or 1 for a threshold below 1) are counted and logged once per file.
        dtype: the label map's type when a smaller one holds every id below `label_count` (``bool`` or
            ``uint8`` for a binary mask): a data set of one file per object (DSB 2018's ~50 nuclei an image)
            reads faster without an 8-byte copy of each file.

    Raises:
        DataError: any reading problem of :func:`read_with_meta`, several different channels, non-integer,
            negative or out-of-range values (naming the values found).
        ValueError: a `dtype` that cannot hold the ids below `label_count`.
    """
    label, meta = read_mask_values(path, spatial_dims)
    if threshold is not None:
        label = threshold_mask(label, threshold, meta.path)
    return class_ids(label, meta.path, label_count, np.dtype(dtype))


def read_mask_values(path: PathLike, spatial_dims: int | None = None) -> tuple[np.ndarray, ImageMeta]:
    """A mask's stored values as one channel ``(*spatial)``, before they become class ids, with its geometry.

    What a data set fingerprint inspects (0/255, JPEG noise, label maps); :func:`read_mask` is this plus
    the mapping to class ids and its checks.

    Raises:
        DataError: any reading problem of :func:`read_with_meta`, NaN/Inf, or several different channels.
    """
    arr, meta = _read_any(path, spatial_dims, for_mask=True)
    if arr.dtype.kind == "f":
        _check_finite(arr, meta.path)
    return _single_channel(arr, meta.path), meta


def _read_any(path: PathLike, spatial_dims: int | None, for_mask: bool) -> tuple[np.ndarray, ImageMeta]:
    path = Path(path)
    if spatial_dims not in (None, 2, 3):
        raise DataError(f"{path}: spatial_dims must be 2 or 3, got {spatial_dims}")
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f"{path}: {what}; check the path")
    ext = suffix(path)
    if ext in PILLOW_SUFFIXES:
        arr, meta = _read_pillow(path, for_mask)
    elif ext in TIFF_SUFFIXES:
        arr, meta = _read_tiff(path, spatial_dims)
    elif ext in NIFTI_SUFFIXES:
        arr, meta = _read_nifti(path, spatial_dims)
    elif ext in NUMPY_SUFFIXES:
        arr, meta = _read_numpy(path, spatial_dims)
    else:
        raise DataError(f"{path}: unknown file type {ext or '(no suffix)'!r}; use one of {', '.join(SUFFIXES)}")
    if spatial_dims is not None and meta.spatial_dims != spatial_dims:
        raise DataError(
            f"{path}: is {meta.spatial_dims}-D (array shape {arr.shape}, channel first) but a {spatial_dims}-D "
            f"{'mask' if for_mask else 'image'} is expected; check the file or the data set's spatial_dims"
        )
    if arr.size == 0:
        raise DataError(f"{path}: holds an empty array of shape {arr.shape}; re-export the file")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: has unsupported dtype {arr.dtype}; save numeric (integer or float) data")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr, meta


def _read_pillow(path: Path, for_mask: bool) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later in a worker
            if img.mode == "P" and not for_mask:  # palette indices are ids for masks, colours for images
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("L" if img.mode == "1" else "RGB")
            arr = np.array(img)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... for broken files
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e}); re-export or re-download it") from e
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)  # (H, W[, C]) -> (C, H, W)
    return np.ascontiguousarray(arr), ImageMeta(path, 2, (1.0, 1.0))


# tifffile's axis codes: samples/channels, stacked planes (Z, pages I, unknown Q, time T), and the plane
_TIFF_CHANNEL_AXES = "SC"
_TIFF_DEPTH_AXES = "ZIQT"


def _read_tiff(path: Path, spatial_dims: int | None) -> tuple[np.ndarray, ImageMeta]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            check_declared(path, series.shape, series.dtype)
            arr = series.asarray()
    except DataError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError, OSError... for broken files
        raise DataError(f"{path}: not a readable TIFF ({type(e).__name__}: {e}); re-export or re-download it") from e
    # drop length-1 axes (except the plane) so that e.g. 'TZCYX' with T=C=1 reads as a plain stack
    keep = [k for k, a in enumerate(axes) if arr.shape[k] > 1 or a in "YX"]
    arr = arr.reshape([arr.shape[k] for k in keep])
    axes = "".join(axes[k] for k in keep)
    channel = [a for a in axes if a in _TIFF_CHANNEL_AXES]
    depth = [a for a in axes if a in _TIFF_DEPTH_AXES]
    unknown = [a for a in axes if a not in _TIFF_CHANNEL_AXES + _TIFF_DEPTH_AXES + "YX"]
    if len(channel) > 1 or len(depth) > 1 or unknown or "Y" not in axes or "X" not in axes:
        raise DataError(
            f"{path}: TIFF axes {axes!r} with shape {arr.shape} are not an image, a channel image or one stack; "
            "save a 2-D image or a single (Z, Y, X) stack"
        )
    order = [axes.index(a) for a in (*channel, *depth, "Y", "X")]
    arr = np.transpose(arr, order)
    if not channel:
        arr = arr[None]
    dims = 3 if depth else 2
    if spatial_dims == 2 and dims == 3:
        raise DataError(
            f"{path}: is a stack of {arr.shape[1]} pages but a 2-D image is expected; "
            "read it as a volume (spatial_dims=3) or split the stack into one file per page"
        )
    return np.ascontiguousarray(arr), ImageMeta(path, dims, (1.0,) * dims)


def _read_nifti(path: Path, spatial_dims: int | None) -> tuple[np.ndarray, ImageMeta]:
    import nibabel as nib

    try:
        img = nib.load(path)
        check_declared(path, img.shape, img.get_data_dtype())  # a lying header must not allocate 13.5 GB
        arr = np.asanyarray(img.dataobj)  # applies scl_slope/inter; a truncated .gz fails here
        affine = np.asarray(img.affine, dtype=np.float64)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except DataError:
        raise
    except Exception as e:  # nibabel raises ImageFileError, EOFError, zlib.error, ValueError...
        raise DataError(
            f"{path}: not a readable NIfTI file ({type(e).__name__}: {e}); re-export or re-download it"
        ) from e
    shape = arr.shape
    if arr.ndim == 5 and shape[3] == 1:  # (X, Y, Z, 1, C): the NIfTI way of storing vector voxels
        arr = arr[:, :, :, 0]
    if arr.ndim == 3 and spatial_dims == 2 and arr.shape[2] == 1:  # one slice stored as a volume
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr, dims = arr[None], 2
    elif arr.ndim == 3:
        arr, dims = arr[None], 3
    elif arr.ndim == 4:  # (X, Y, Z, C) -> (C, X, Y, Z): MSD stores modalities last
        arr, dims = np.moveaxis(arr, -1, 0), 3
    else:
        raise DataError(f"{path}: NIfTI array has shape {shape}; expected (X, Y[, Z]) or (X, Y, Z, channels)")
    return np.ascontiguousarray(arr), ImageMeta(path, dims, zooms[:dims], affine)


def _read_numpy(path: Path, spatial_dims: int | None) -> tuple[np.ndarray, ImageMeta]:
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only (fails when data is short)
        check_declared(path, header.shape, header.dtype)
        del header
        arr = np.load(path, allow_pickle=False)  # never unpickle: a .npy from elsewhere could run code
    except DataError:
        raise
    except Exception as e:  # ValueError (pickled or truncated), EOFError, OSError...
        raise DataError(f"{path}: not a readable .npy array ({type(e).__name__}: {e}); save it with np.save") from e
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{path}: holds {type(arr).__name__}, not an array; save one array per file with np.save")
    shape = arr.shape
    if spatial_dims is None:
        spatial_dims = 2 if arr.ndim == 2 else 3
    if arr.ndim == spatial_dims:
        arr = arr[None]
    elif arr.ndim != spatial_dims + 1:
        raise DataError(
            f"{path}: array of shape {shape} is neither {spatial_dims}-D nor channel-first (C, {spatial_dims}-D); "
            "save (*spatial) or (C, *spatial)"
        )
    return np.ascontiguousarray(arr), ImageMeta(path, spatial_dims, (1.0,) * spatial_dims)


def _check_finite(arr: np.ndarray, path: Path) -> None:
    if arr.dtype.kind != "f":
        return
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise DataError(
            f"{path}: contains {n_nan} NaN and {n_inf} Inf values; fix the export or replace them before training"
        )


def _single_channel(arr: np.ndarray, path: Path) -> np.ndarray:
    """(C, *spatial) -> (*spatial): drop a constant alpha channel, collapse equal channels, else refuse."""
    if arr.shape[0] in (2, 4) and suffix(path) in PILLOW_SUFFIXES + TIFF_SUFFIXES:
        alpha = arr[-1]
        if alpha.min() != alpha.max():
            raise DataError(
                f"{path}: mask has a varying alpha (transparency) channel; save a single-channel mask without alpha"
            )
        arr = arr[:-1]
    first = arr[0]
    if arr.shape[0] > 1 and not all(np.array_equal(first, c) for c in arr[1:]):
        raise DataError(
            f"{path}: mask has {arr.shape[0]} channels with different values (an RGB or colour-coded mask); "
            "save a single-channel label map of class ids (0, 1, ... or 0/255 for binary)"
        )
    return first
