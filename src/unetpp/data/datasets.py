"""Segmentation data sets on disk as torch ``Dataset`` objects, 2D and 3D through one code path.

Every data set yields the same sample dict, whatever the layout on disk::

    {"image": (C, *spatial) float32, "mask": (1, *spatial) int64 class ids, "id": str}

This module holds what every layout shares and the generic ones: paired folders (``images/`` +
``masks/`` or ``labels/``, matched by file stem) and in-memory arrays. The public data sets' readers are
in :mod:`unetpp.data.public`; the table of layout names in :mod:`unetpp.data.layouts`.

Pairing and folder problems are found when a data set is built; file contents are checked when a sample
is read (a corrupt file or a mask that does not fit its image raises :class:`~unetpp.errors.DataError`
naming the file). :meth:`SegmentationDataset.verify` reads everything once to check a whole set.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .io import SUFFIXES, is_supported, read_image, read_mask, read_mask_values, read_with_meta, stem
from .mask_values import binarize
from .transforms import IntensityStats, NormalizeMode, normalize_intensity

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
ChannelMode = Literal["grey", "rgb", "keep"]
SampleTransform = Callable[[dict], dict]

_MAX_LISTED = 5  # file names quoted in an error message
READ_THREADS = 4  # items read at once by verify()
_COUNTING = threading.Lock()  # guards `thresholded` across reading threads (a lock attribute would not pickle)


@dataclass(frozen=True)
class Item:
    """One sample on disk.

    Args:
        id: a name for the sample (the file stem, the DSB image id, the section number).
        image: the image file.
        mask: the mask file, or one file per instance (DSB), or ``None`` for unlabelled data.
        index: the page of a stack file holding several samples (ISBI's ``train-volume.tif``).
    """

    id: str
    image: Path
    mask: Path | tuple[Path, ...] | None
    index: int | None = None


def convert_channels(image: np.ndarray, mode: ChannelMode, path: PathLike) -> np.ndarray:
    """Bring ``(C, *spatial)`` to 1 channel (``"grey"``), 3 channels (``"rgb"``) or leave it (``"keep"``).

    Alpha (the 4th of 4 channels, the 2nd of 2) is dropped for ``"grey"`` and ``"rgb"``: DSB stores grey
    and colour images as RGBA with an opaque alpha. Grey uses ITU-R 601 luma, as Pillow's ``convert("L")``.

    Raises:
        DataError: a channel count that cannot be converted (e.g. 5 MRI modalities to ``"rgb"``).
        ConfigError: unknown mode.
    """
    if mode == "keep":
        return image
    if mode not in ("grey", "rgb"):
        raise ConfigError(f"channels must be 'grey', 'rgb' or 'keep', got {mode!r}")
    c = image.shape[0]
    if c not in (1, 2, 3, 4):
        raise DataError(f"{path}: image has {c} channels, which cannot be converted to {mode!r}; use channels='keep'")
    if c in (2, 4):
        image = image[:-1]
    if mode == "grey" and image.shape[0] == 3:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape((3,) + (1,) * (image.ndim - 1))
        return (image.astype(np.float32) * weights).sum(axis=0, keepdims=True)
    if mode == "rgb" and image.shape[0] == 1:
        return np.repeat(image, 3, axis=0)
    return image


def listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def list_files(folder: Path) -> dict[str, Path]:
    """Readable image files of a folder keyed by stem; hidden and ``._*`` files are skipped.

    Raises:
        DataError: missing or empty folder, or two files with one stem (e.g. ``a.png`` and ``a.tif``).
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; check the data set path and layout")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not is_supported(path):
            continue
        key = stem(path)
        if key in files:
            raise DataError(f"{path}: has the same name as {files[key].name}; keep one file per sample")
        files[key] = path
    if not files:
        raise DataError(f"{folder}: folder has no image files ({', '.join(SUFFIXES)}); check the path")
    return files


def pair_folders(image_dir: Path, mask_dir: Path, mask_suffix: str = "") -> list[Item]:
    """Pair ``image_dir/<stem>.*`` with ``mask_dir/<stem><mask_suffix>.*``.

    Raises:
        DataError: missing or empty folders, or files without a partner (all of them are named).
    """
    images, masks = list_files(image_dir), list_files(mask_dir)
    if mask_suffix:
        masks = {k.removesuffix(mask_suffix): p for k, p in masks.items()}
    lonely_images = sorted(images[k].name for k in images.keys() - masks.keys())
    lonely_masks = sorted(masks[k].name for k in masks.keys() - images.keys())
    if lonely_images:
        raise DataError(
            f"{image_dir}: no mask in {mask_dir} for {len(lonely_images)} image(s): {listed(lonely_images)}; "
            "masks are matched to images by file name (without suffix)"
        )
    if lonely_masks:
        raise DataError(
            f"{mask_dir}: no image in {image_dir} for {len(lonely_masks)} mask(s): {listed(lonely_masks)}; "
            "remove them or add their images"
        )
    return [Item(k, images[k], masks[k]) for k in sorted(images)]


class SegmentationDataset(Dataset):
    """Images and masks of one data set: reading, checking, channel conversion and normalisation.

    Subclasses only list their :class:`Item` s (and override :meth:`read_image` / :meth:`read_mask`
    when a sample is not one file each); everything else is shared by every layout, 2D and 3D.

    Args:
        items: the samples.
        spatial_dims: 2 or 3.
        classes: the model's classes: 1 for binary masks (ids 0 and 1), K > 1 for label maps with ids
            ``0..K-1`` (background included); other ids raise. ``None`` accepts any non-negative ids.
        channels: ``"grey"``, ``"rgb"`` or ``"keep"`` (see :func:`convert_channels`).
        normalize: intensity normalisation (see :func:`~unetpp.data.transforms.normalize_intensity`).
        intensity_stats: per channel ``(clip_low, clip_high, mean, sd)`` for ``normalize="ct"``.
        mask_threshold: binarise stored mask values ``> mask_threshold`` (noisy JPEG-like masks); the pixels
            changed are counted in :attr:`thresholded` (files, changed, total) for one summary line.
        target_spacing: 3D only: volumes (and masks) are resampled to this voxel spacing before
            normalisation, as the plan decides for anisotropic data (:func:`unetpp.data.resample.to_spacing`).
        transform: applied to the sample dict last (augmentation, see
            :func:`~unetpp.data.transforms.build_transforms`).
        cache: keep decoded arrays in memory (per process: each DataLoader worker has its own).

    Example:
        >>> ds = FolderPairs("data/em")  # images/*.png and masks/*.png
        >>> s = ds[0]; s["image"].shape, s["mask"].shape, s["mask"].dtype
        (torch.Size([1, 512, 512]), torch.Size([1, 512, 512]), torch.int64)
    """

    def __init__(
        self,
        items: Sequence[Item],
        *,
        spatial_dims: int = 2,
        classes: int | None = 1,
        channels: ChannelMode = "keep",
        normalize: NormalizeMode = "zscore",
        transform: SampleTransform | None = None,
        cache: bool = False,
        intensity_stats: IntensityStats | None = None,
        mask_threshold: float | None = None,
        target_spacing: Sequence[float] | None = None,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if classes is not None and (not isinstance(classes, int) or classes < 1):
            raise ConfigError(f"classes must be 1 (binary) or the number of classes incl. background, got {classes!r}")
        if channels not in ("grey", "rgb", "keep"):
            raise ConfigError(f"channels must be 'grey', 'rgb' or 'keep', got {channels!r}")
        if normalize not in ("zscore", "percentile", "ct", "none"):
            raise ConfigError(f"normalize must be 'zscore', 'percentile', 'ct' or 'none', got {normalize!r}")
        if target_spacing is not None and len(target_spacing) != spatial_dims:
            raise ConfigError(f"target_spacing {list(target_spacing)} needs {spatial_dims} values, one per axis")
        self.items = list(items)
        self.spatial_dims = spatial_dims
        self.classes = classes
        self.channels = channels
        self.normalize = normalize
        self.transform = transform
        self.intensity_stats = intensity_stats
        self.mask_threshold = mask_threshold
        self.target_spacing = None if target_spacing is None else tuple(float(t) for t in target_spacing)
        self.thresholded = [0, 0, 0]  # mask files thresholded, pixels changed, pixels in them
        self.noisy_masks: list[Path] = []  # the files counted there
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, spatial_dims={self.spatial_dims})"

    @property
    def label_count(self) -> int | None:
        """How many label ids masks may hold (background included): 2 for binary, ``None`` for any."""
        return None if self.classes is None else max(2, self.classes)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def read_image(self, item: Item) -> np.ndarray:
        """The raw image ``(C, *spatial)`` of one item."""
        return read_image(item.image, self.spatial_dims)

    def read_image_spacing(self, item: Item) -> tuple[np.ndarray, tuple[float, ...]]:
        """The raw image and its voxel spacing (1 per axis where the format or layout has none)."""
        if item.index is None and type(self).read_image is SegmentationDataset.read_image:
            image, meta = read_with_meta(item.image, self.spatial_dims)
            return image, tuple(float(v) for v in meta.spacing)
        image = self.read_image(item)
        return image, (1.0,) * (image.ndim - 1)

    def read_mask(self, item: Item) -> np.ndarray:
        """The label map ``(*spatial)`` of one item (binarised at ``mask_threshold`` when one is set)."""
        if not isinstance(item.mask, Path):
            raise DataError(f"{item.image}: has no mask file; this data set cannot be used for training")
        if self.mask_threshold is None:
            return read_mask(item.mask, self.spatial_dims, self.label_count)
        values = read_mask_values(item.mask, self.spatial_dims)[0]
        if values.max() <= 1 and values.min() >= 0:  # a clean 0/1 file in a set that needs the threshold
            return (values > 0.5).astype(np.int64)
        mask, changed = binarize(values, self.mask_threshold)
        if changed:  # only the noisy files: a clean 0/255 mask is not blamed for the noise of another
            with _COUNTING:
                files, pixels, total = self.thresholded
                self.thresholded = [files + 1, pixels + changed, total + values.size]
                self.noisy_masks.append(item.mask)
        return mask.astype(np.int64)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(C, *spatial)`` float32 (channels converted, normalised) and mask ``(*spatial)`` int64.

        Raises:
            DataError: unreadable files, bad mask values, or a mask whose size differs from its image's.
        """
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        item = self.items[index]
        raw, spacing = self.read_image_spacing(item)
        image = convert_channels(raw, self.channels, item.image)
        mask = self.read_mask(item)
        if image.shape[1:] != mask.shape:
            mask_name = item.mask[0].parent if isinstance(item.mask, tuple) else item.mask
            raise DataError(
                f"{mask_name}: mask is {'x'.join(map(str, mask.shape))} but image {item.image.name} is "
                f"{'x'.join(map(str, image.shape[1:]))}; masks must match their image"
            )
        if self.target_spacing is not None and self.spatial_dims == 3:
            from .resample import on_spacing

            classes = self.label_count or int(mask.max()) + 1
            image, mask = on_spacing(image, spacing, self.target_spacing, mask, classes)  # type: ignore[assignment]
        image = normalize_intensity(image, self.normalize, self.intensity_stats)
        if self._cache is not None:
            self._cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load(index)
        if self._cache is not None:  # tensors share memory with their arrays: keep the cache safe from in-place ops
            image, mask = image.copy(), mask.copy()
        sample = {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask[None]), "id": self.items[index].id}
        return self.transform(sample) if self.transform is not None else sample

    def verify(self, indices: Sequence[int] | None = None) -> None:
        """Read every sample (or those of `indices`) once, so that a bad file fails now rather than mid-training.

        The files are read on as many threads as torch computes with (at most 4 items in flight, so a set of
        large volumes holds little more than without them): decoding (Pillow, zlib, tifffile) and normalising
        (numpy) release the GIL. With the cache on the decoded arrays stay for the loaders.

        Raises:
            DataError: the first problem found (in item order), naming its file.
        """
        chosen = range(len(self)) if indices is None else indices
        with ThreadPoolExecutor(max_workers=max(1, min(len(chosen), torch.get_num_threads(), READ_THREADS))) as pool:
            for _ in pool.map(self.load, chosen):
                pass


def pick_mask_dir(root: Path, mask_dir: str | None) -> Path:
    if mask_dir is not None:
        return root / mask_dir
    for name in ("masks", "labels"):
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: has neither a masks/ nor a labels/ folder; put the masks in one, or pass mask_dir")


class FolderPairs(SegmentationDataset):
    """``root/images/<stem>.*`` paired with ``root/masks/<stem>.*`` (or ``root/labels/``), any readable format.

    Args:
        root: the data set folder.
        image_dir: sub-folder of the images.
        mask_dir: sub-folder of the masks; ``None`` tries ``masks`` then ``labels``.
        mask_suffix: extra text in mask names, e.g. ``"_mask"`` for ``case_3.png`` / ``case_3_mask.png``.
        **kwargs: see :class:`SegmentationDataset`.

    Raises:
        DataError: missing or empty folders, images without masks or masks without images.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        image_dir: str = "images",
        mask_dir: str | None = None,
        mask_suffix: str = "",
        **kwargs,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder; check the data set path")
        super().__init__(pair_folders(root / image_dir, pick_mask_dir(root, mask_dir), mask_suffix), **kwargs)
        self.root = root


class ArrayDataset(SegmentationDataset):
    """In-memory images and masks (e.g. :func:`~unetpp.data.synthetic.make_synthetic_em`) as a data set.

    Args:
        images: ``(N, *spatial)`` grey or ``(N, C, *spatial)`` images.
        masks: ``(N, *spatial)`` class ids.
        ids: names of the samples (default ``"0"``, ``"1"``...).
        **kwargs: see :class:`SegmentationDataset`; ``spatial_dims`` is taken from ``masks``.

    Raises:
        DataError: different numbers of images and masks, or shapes that do not match.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, *, ids: Sequence[str] | None = None, **kwargs) -> None:
        images, masks = np.asarray(images), np.asarray(masks)
        if images.ndim == masks.ndim:
            images = images[:, None]
        if len(images) != len(masks) or images.shape[2:] != masks.shape[1:] or masks.ndim not in (3, 4):
            raise DataError(
                f"images {images.shape} and masks {masks.shape} do not match; expected (N, [C,] *spatial) and "
                "(N, *spatial) with the same N and spatial size"
            )
        ids = [str(i) for i in range(len(images))] if ids is None else list(ids)
        kwargs["spatial_dims"] = masks.ndim - 1
        super().__init__([Item(i, Path(f"<array {i}>"), None, index=k) for k, i in enumerate(ids)], **kwargs)
        self.images, self.masks = images, masks

    def read_image(self, item: Item) -> np.ndarray:
        return self.images[item.index]

    def read_mask(self, item: Item) -> np.ndarray:
        mask = self.masks[item.index]
        if mask.min() < 0 or (self.label_count is not None and mask.max() >= self.label_count):
            values = sorted(np.unique(mask).tolist())[:10]
            raise DataError(
                f"{item.image}: mask values {values} are not class ids in 0..{(self.label_count or 0) - 1}; "
                "fix the labels or classes"
            )
        return mask.astype(np.int64)
