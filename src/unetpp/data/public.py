"""Readers of the public data sets the paper's experiments use, each in the layout its users download.

ISBI 2012 EM (Arganda-Carreras et al., Front. Neuroanat. 2015) as per-section files or the original
``train-volume.tif``/``train-labels.tif`` stacks; the 2018 Data Science Bowl in Kaggle's layout (Caicedo
et al., Nat. Methods 2019); the Medical Segmentation Decathlon (Antonelli et al., Nat. Commun. 2022).
Which layout name maps to which reader is in :mod:`unetpp.data.layouts`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import DataError
from .datasets import Item, PathLike, SegmentationDataset, listed, pair_folders, pick_mask_dir
from .io import is_supported, read_image, read_mask


class ISBI2012(SegmentationDataset):
    """ISBI 2012 EM segmentation (ssTEM, Drosophila VNC): 512x512 grey sections, 1 = cell interior.

    Two layouts are accepted: per-section files ``images/NN.png`` + ``labels/NN.png``, or the challenge's
    stacks ``train-volume.tif`` + ``train-labels.tif`` (one page per section). Labels are 255 for cell
    interior and 0 for membrane, read as 1 and 0. Sections are consecutive and correlated: split them with
    :func:`~unetpp.data.splits.block_split`, not at random.

    Args:
        root: the folder holding either layout.
        **kwargs: see :class:`SegmentationDataset` (defaults here: ``channels="grey"``, ``classes=1``).

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
            items = pair_folders(root / "images", pick_mask_dir(root, None))
        else:
            raise DataError(
                f"{root}: not an ISBI 2012 folder; expected {self.VOLUME} + {self.LABELS}, or images/ + labels/"
            )
        super().__init__(items, **kwargs)

    def _read_stacks(self) -> tuple[np.ndarray, np.ndarray]:
        # 30 sections of 512x512 are 8 MB: read each stack once, not once per section
        if self._stacks is None:
            volume = read_image(self.root / self.VOLUME, spatial_dims=3)  # (1, Z, H, W)
            labels = read_mask(self.root / self.LABELS, spatial_dims=3, label_count=2)  # (Z, H, W)
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


def dsb_sample_folders(root: PathLike, ids: Sequence[str] | None = None) -> tuple[Path, list[str]]:
    """The ``stage1_train`` folder (`root` or inside it) and its sample ids (all, sorted, or `ids` checked).

    Raises:
        DataError: missing or empty folder, or ids without a sample folder.
    """
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
            raise DataError(f"{root}: no sample folder for id(s) {listed(unknown)}; check the ids")
        found = list(ids)
    return root, found


class DSB2018(SegmentationDataset):
    """2018 Data Science Bowl nuclei in Kaggle's layout: ``<id>/images/<id>.png`` + ``<id>/masks/*.png``.

    Images are RGBA PNGs (mostly grey stored as colour); ``channels`` picks ``"rgb"`` (default) or
    ``"grey"``. Each mask file holds one nucleus; the semantic mask is their union (1 = nucleus) and
    :meth:`instances` gives the instance label map.

    Args:
        root: the ``stage1_train`` folder, or a folder containing it.
        ids: a subset of image ids to use (default: all, sorted).
        **kwargs: see :class:`SegmentationDataset` (defaults here: ``channels="rgb"``, ``classes=1``).

    Raises:
        DataError: missing or empty folder, a sample folder without its image or without masks, unknown ids.
    """

    def __init__(self, root: PathLike, *, ids: Sequence[str] | None = None, **kwargs) -> None:
        root, found = dsb_sample_folders(root, ids)
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
        # a sample has ~50 mask PNGs: decoded on threads (Pillow and numpy release the GIL), 2.3x faster on 2
        # cores, which was most of a DSB run's set-up; each thread also finds its nucleus' pixels, so the main
        # thread only writes ~400 labels per file instead of scanning the whole image (1.4 of 3.8 s for 60 images)
        paths: list[Path] = list(item.mask)  # type: ignore[arg-type]
        labels: np.ndarray | None = None

        def pixels(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
            nucleus = read_mask(path, 2, label_count=2, dtype=bool)
            return nucleus.shape, np.flatnonzero(nucleus)

        with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1, 8)) as pool:
            for k, (path, (shape, where)) in enumerate(zip(paths, pool.map(pixels, paths), strict=True), start=1):
                if labels is None:
                    labels = np.zeros(shape, dtype=np.int32)
                elif shape != labels.shape:
                    raise DataError(
                        f"{path}: mask is {'x'.join(map(str, shape))} but the other masks of {item.id} "
                        f"are {'x'.join(map(str, labels.shape))}; masks must match their image"
                    )
                labels.flat[where] = k  # DSB nuclei do not overlap; if they did, the later file would win
        return labels  # type: ignore[return-value]

    def read_mask(self, item: Item) -> np.ndarray:
        return (self._instances(item) > 0).astype(np.int64)


class Decathlon(SegmentationDataset):
    """A Medical Segmentation Decathlon task: ``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz``, ``dataset.json``.

    Labels are label maps (e.g. Hippocampus: 0 background, 1 anterior, 2 posterior); ``classes`` (background
    included) is read from ``dataset.json``'s ``labels``. Images and labels are paired by file name from the folders
    rather than from ``dataset.json``'s ``training`` list, so a partial copy works. macOS ``._*`` files,
    which the official archives contain, are skipped. Images are ``(C, X, Y, Z)``, C the modalities.

    Args:
        root: the task folder (e.g. ``Task04_Hippocampus``).
        **kwargs: see :class:`SegmentationDataset` (``classes`` overrides ``dataset.json``).

    Raises:
        DataError: missing folder, missing or unreadable ``dataset.json`` (unless ``classes`` is
            given), unpaired files.
    """

    def __init__(self, root: PathLike, **kwargs) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder; point to the task folder holding imagesTr and labelsTr")
        self.root = root
        self.info = self._read_info(root / "dataset.json", required="classes" not in kwargs)
        if "classes" not in kwargs:
            kwargs["classes"] = len(self.info["labels"])
        kwargs.setdefault("spatial_dims", 3)
        super().__init__(pair_folders(root / "imagesTr", root / "labelsTr"), **kwargs)

    @staticmethod
    def _read_info(path: Path, required: bool) -> dict:
        if not path.is_file():
            if required:
                raise DataError(f"{path}: no such file; it names the labels (or pass classes)")
            return {}
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not readable JSON ({e}); re-download the task") from e
        if required and not (isinstance(info, dict) and isinstance(info.get("labels"), dict) and info["labels"]):
            raise DataError(f"{path}: has no 'labels' mapping; re-download the task or pass classes")
        return info
