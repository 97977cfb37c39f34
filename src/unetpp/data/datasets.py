"""Segmentation data sets on disk as torch ``Dataset`` objects, 2D and 3D through one code path.

Every data set yields the same sample dict, whatever the layout on disk::

    {"image": (C, *spatial) float32, "mask": (1, *spatial) int64 class ids, "id": str}

Layouts: paired folders (``images/`` + ``masks/`` or ``labels/``, matched by file stem); ISBI 2012 EM
(Arganda-Carreras et al., Front. Neuroanat. 2015) as per-section files or the original
``train-volume.tif``/``train-labels.tif`` stacks; the 2018 Data Science Bowl in Kaggle's layout (Caicedo
et al., Nat. Methods 2019); and the Medical Segmentation Decathlon (Antonelli et al., Nat. Commun. 2022).

Pairing and folder problems are found when a data set is built; file contents are checked when a sample
is read (a corrupt file or a mask that does not fit its image raises :class:`~unetpp.errors.DataError`
naming the file). :meth:`SegmentationDataset.verify` reads everything once to check a whole set.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .io import SUFFIXES, is_supported, read_image, read_mask, stem
from .transforms import NormalizeMode, normalize_intensity

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
ChannelMode = Literal["grey", "rgb", "keep"]
SampleTransform = Callable[[dict], dict]

_MAX_LISTED = 5  # file names quoted in an error message


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


def _listed(names: Sequence[str]) -> str:
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
            f"{image_dir}: no mask in {mask_dir} for {len(lonely_images)} image(s): {_listed(lonely_images)}; "
            "masks are matched to images by file name (without suffix)"
        )
    if lonely_masks:
        raise DataError(
            f"{mask_dir}: no image in {image_dir} for {len(lonely_masks)} mask(s): {_listed(lonely_masks)}; "
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
        num_classes: number of classes including background (2 for binary); masks with ids outside
            ``0..num_classes-1`` raise. ``None`` accepts any non-negative ids.
        channels: ``"grey"``, ``"rgb"`` or ``"keep"`` (see :func:`convert_channels`).
        normalize: per-image intensity normalisation (see :func:`~unetpp.data.transforms.normalize_intensity`).
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
        num_classes: int | None = 2,
        channels: ChannelMode = "keep",
        normalize: NormalizeMode = "zscore",
        transform: SampleTransform | None = None,
        cache: bool = False,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if num_classes is not None and num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2 (background included) or None, got {num_classes}")
        if channels not in ("grey", "rgb", "keep"):
            raise ConfigError(f"channels must be 'grey', 'rgb' or 'keep', got {channels!r}")
        if normalize not in ("zscore", "percentile", "none"):
            raise ConfigError(f"normalize must be 'zscore', 'percentile' or 'none', got {normalize!r}")
        self.items = list(items)
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self.channels = channels
        self.normalize = normalize
        self.transform = transform
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, spatial_dims={self.spatial_dims})"

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def read_image(self, item: Item) -> np.ndarray:
        """The raw image ``(C, *spatial)`` of one item."""
        return read_image(item.image, self.spatial_dims)

    def read_mask(self, item: Item) -> np.ndarray:
        """The label map ``(*spatial)`` of one item."""
        if not isinstance(item.mask, Path):
            raise DataError(f"{item.image}: has no mask file; this data set cannot be used for training")
        return read_mask(item.mask, self.spatial_dims, self.num_classes)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(C, *spatial)`` float32 (channels converted, normalised) and mask ``(*spatial)`` int64.

        Raises:
            DataError: unreadable files, bad mask values, or a mask whose size differs from its image's.
        """
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        item = self.items[index]
        image = convert_channels(self.read_image(item), self.channels, item.image)
        mask = self.read_mask(item)
        if image.shape[1:] != mask.shape:
            mask_name = item.mask[0].parent if isinstance(item.mask, tuple) else item.mask
            raise DataError(
                f"{mask_name}: mask is {'x'.join(map(str, mask.shape))} but image {item.image.name} is "
                f"{'x'.join(map(str, image.shape[1:]))}; masks must match their image"
            )
        image = normalize_intensity(image, self.normalize)
        if self._cache is not None:
            self._cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load(index)
        if self._cache is not None:  # tensors share memory with their arrays: keep the cache safe from in-place ops
            image, mask = image.copy(), mask.copy()
        sample = {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask[None]), "id": self.items[index].id}
        return self.transform(sample) if self.transform is not None else sample

    def verify(self) -> None:
        """Read every sample once, so that a bad file fails now rather than mid-training.

        Raises:
            DataError: the first problem found, naming its file.
        """
        for i in range(len(self)):
            self.load(i)


def _pick_mask_dir(root: Path, mask_dir: str | None) -> Path:
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
        super().__init__(pair_folders(root / image_dir, _pick_mask_dir(root, mask_dir), mask_suffix), **kwargs)
        self.root = root


class ISBI2012(SegmentationDataset):
    """ISBI 2012 EM segmentation (ssTEM, Drosophila VNC): 512x512 grey sections, 1 = cell interior.

    Two layouts are accepted: per-section files ``images/NN.png`` + ``labels/NN.png``, or the challenge's
    stacks ``train-volume.tif`` + ``train-labels.tif`` (one page per section). Labels are 255 for cell
    interior and 0 for membrane, read as 1 and 0. Sections are consecutive and correlated: split them with
    :func:`~unetpp.data.splits.block_split`, not at random.

    Args:
        root: the folder holding either layout.
        **kwargs: see :class:`SegmentationDataset` (defaults here: ``channels="grey"``, ``num_classes=2``).

    Raises:
        DataError: neither layout found, unpaired files, or stacks with different numbers of pages.
    """

    VOLUME, LABELS = "train-volume.tif", "train-labels.tif"

    def __init__(self, root: PathLike, **kwargs) -> None:
        root = Path(root)
        kwargs.setdefault("channels", "grey")
        kwargs["spatial_dims"] = 2
        self.root = root
        self._stacks: tuple[np.ndarray, np.ndarray] | None = None
        if (root / self.VOLUME).is_file():
            labels = root / self.LABELS
            if not labels.is_file():
                raise DataError(f"{labels}: no such file next to {self.VOLUME}; the stacks come as a pair")
            n = self._read_stacks()[0].shape[1]
            items = [Item(f"{i:02d}", root / self.VOLUME, labels, index=i) for i in range(n)]
        elif (root / "images").is_dir():
            items = pair_folders(root / "images", _pick_mask_dir(root, None))
        else:
            raise DataError(
                f"{root}: not an ISBI 2012 folder; expected {self.VOLUME} + {self.LABELS}, or images/ + labels/"
            )
        super().__init__(items, **kwargs)

    def _read_stacks(self) -> tuple[np.ndarray, np.ndarray]:
        # 30 sections of 512x512 are 8 MB: read each stack once, not once per section
        if self._stacks is None:
            volume = read_image(self.root / self.VOLUME, spatial_dims=3)  # (1, Z, H, W)
            labels = read_mask(self.root / self.LABELS, spatial_dims=3, num_classes=2)  # (Z, H, W)
            if volume.shape[1] != labels.shape[0]:
                raise DataError(
                    f"{self.root / self.LABELS}: has {labels.shape[0]} pages but {self.VOLUME} has {volume.shape[1]}; "
                    "use the labels of this volume"
                )
            self._stacks = (volume, labels)
        return self._stacks

    def read_image(self, item: Item) -> np.ndarray:
        if item.index is None:
            return super().read_image(item)
        return self._read_stacks()[0][:, item.index]

    def read_mask(self, item: Item) -> np.ndarray:
        if item.index is None:
            return super().read_mask(item)
        return self._read_stacks()[1][item.index]


class DSB2018(SegmentationDataset):
    """2018 Data Science Bowl nuclei in Kaggle's layout: ``<id>/images/<id>.png`` + ``<id>/masks/*.png``.

    Images are RGBA PNGs (mostly grey stored as colour); ``channels`` picks ``"rgb"`` (default) or
    ``"grey"``. Each mask file holds one nucleus; the semantic mask is their union (1 = nucleus) and
    :meth:`instances` gives the instance label map.

    Args:
        root: the ``stage1_train`` folder, or a folder containing it.
        ids: a subset of image ids to use (default: all, sorted).
        **kwargs: see :class:`SegmentationDataset` (defaults here: ``channels="rgb"``, ``num_classes=2``).

    Raises:
        DataError: missing or empty folder, a sample folder without its image or without masks, unknown ids.
    """

    def __init__(self, root: PathLike, *, ids: Sequence[str] | None = None, **kwargs) -> None:
        root = Path(root)
        if (root / "stage1_train").is_dir():
            root = root / "stage1_train"
        if not root.is_dir():
            raise DataError(f"{root}: no such folder; point to the extracted stage1_train folder")
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise DataError(f"{root}: folder is empty; expected one <id>/images + <id>/masks folder per image")
        if ids is not None:
            unknown = sorted(set(ids) - set(found))
            if unknown:
                raise DataError(f"{root}: no sample folder for id(s) {_listed(unknown)}; check the ids")
            found = list(ids)
        kwargs.setdefault("channels", "rgb")
        kwargs["spatial_dims"] = 2
        super().__init__([self._item(root / name) for name in found], **kwargs)
        self.root = root

    @staticmethod
    def _item(folder: Path) -> Item:
        image = folder / "images" / f"{folder.name}.png"
        if not image.is_file():
            raise DataError(f"{image}: no such file; each DSB sample folder holds images/<id>.png")
        mask_dir = folder / "masks"
        masks = tuple(sorted(p for p in mask_dir.glob("*.png") if is_supported(p))) if mask_dir.is_dir() else ()
        if not masks:
            raise DataError(f"{mask_dir}: no mask files for image {image.name}; each nucleus is one PNG in masks/")
        return Item(folder.name, image, masks)

    def instances(self, index: int) -> np.ndarray:
        """Instance label map ``(H, W)`` int32: 0 background, ``k`` for the k-th mask file (sorted by name).

        Raises:
            DataError: an unreadable, non-binary or wrongly sized mask file, naming it.
        """
        return self._instances(self.items[index])

    def _instances(self, item: Item) -> np.ndarray:
        labels: np.ndarray | None = None
        for k, path in enumerate(item.mask, start=1):  # type: ignore[arg-type]
            nucleus = read_mask(path, 2, num_classes=2)
            if labels is None:
                labels = np.zeros(nucleus.shape, dtype=np.int32)
            elif nucleus.shape != labels.shape:
                raise DataError(
                    f"{path}: mask is {'x'.join(map(str, nucleus.shape))} but the other masks of {item.id} are "
                    f"{'x'.join(map(str, labels.shape))}; masks must match their image"
                )
            labels[nucleus > 0] = k  # DSB nuclei do not overlap; if they did, the later file would win
        return labels  # type: ignore[return-value]

    def read_mask(self, item: Item) -> np.ndarray:
        return (self._instances(item) > 0).astype(np.int64)


class Decathlon(SegmentationDataset):
    """A Medical Segmentation Decathlon task: ``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz``, ``dataset.json``.

    Labels are label maps (e.g. Hippocampus: 0 background, 1 anterior, 2 posterior); ``num_classes`` is
    read from ``dataset.json``'s ``labels``. Images and labels are paired by file name from the folders
    rather than from ``dataset.json``'s ``training`` list, so a partial copy works. macOS ``._*`` files,
    which the official archives contain, are skipped. Images are ``(C, X, Y, Z)``, C the modalities.

    Args:
        root: the task folder (e.g. ``Task04_Hippocampus``).
        **kwargs: see :class:`SegmentationDataset` (``num_classes`` overrides ``dataset.json``).

    Raises:
        DataError: missing folder, missing or unreadable ``dataset.json`` (unless ``num_classes`` is
            given), unpaired files.
    """

    def __init__(self, root: PathLike, **kwargs) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder; point to the task folder holding imagesTr and labelsTr")
        self.root = root
        self.info = self._read_info(root / "dataset.json", required="num_classes" not in kwargs)
        if "num_classes" not in kwargs:
            kwargs["num_classes"] = len(self.info["labels"])
        kwargs.setdefault("spatial_dims", 3)
        super().__init__(pair_folders(root / "imagesTr", root / "labelsTr"), **kwargs)

    @staticmethod
    def _read_info(path: Path, required: bool) -> dict:
        if not path.is_file():
            if required:
                raise DataError(f"{path}: no such file; it names the labels (or pass num_classes)")
            return {}
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not readable JSON ({e}); re-download the task") from e
        if required and not (isinstance(info, dict) and isinstance(info.get("labels"), dict) and info["labels"]):
            raise DataError(f"{path}: has no 'labels' mapping; re-download the task or pass num_classes")
        return info


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
        if mask.min() < 0 or (self.num_classes is not None and mask.max() >= self.num_classes):
            values = sorted(np.unique(mask).tolist())[:10]
            raise DataError(
                f"{item.image}: mask values {values} are not class ids in 0..{(self.num_classes or 0) - 1}; "
                "fix the labels or num_classes"
            )
        return mask.astype(np.int64)
