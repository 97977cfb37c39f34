"""Instance segmentation data: images with one mask per object, as torchvision's detectors take them.

Three layouts on disk, one kind of sample: ``(image, target)`` where ``image`` is a float32
``(C, H, W)`` tensor in [0, 1] and ``target`` holds ``boxes`` (N, 4) float32 xyxy, ``labels`` (N,)
int64 (1.. for the object classes, 0 is the background) and ``masks`` (N, H, W) uint8; N may be 0
(an image without objects trains the detector's background).

- :class:`DSB2018Instances`: Kaggle's ``<id>/images/<id>.png`` + ``<id>/masks/*.png``, one binary
  mask per nucleus. Overlapping masks are an error: the competition's nuclei do not overlap, so an
  overlap means a broken or foreign file, and the score's one-to-one matching assumes disjoint objects.
- :class:`LabelMapInstances`: ``images/`` + ``labels/`` paired by name, each label an instance map
  (16-bit PNG or TIFF, 0 background, 1..N objects). A gap in the ids (1, 2, 4) is an error unless
  ``relabel=True``: a gap usually means objects were deleted by hand or the file is a *class* map
  rather than an instance map, and silently renumbering would hide that.
- :class:`CocoInstances`: a COCO JSON file (pycocotools rasterises polygons and RLE); category ids
  become labels 1..K in ascending id order; crowd annotations are skipped, as torchvision's
  references do. A file without images is an error.

Boxes are computed from the masks, in pixel-edge coordinates: a mask covering columns 3..5 gets
x0 = 3, x1 = 6, so a one-pixel object has a positive-area box (torchvision rejects empty boxes).
Images are scaled to [0, 1]: uint8 by 255, anything else by its 0.5/99.5 percentiles.
Every problem with a file is one :class:`~unetpp.errors.DataError` line naming it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .datasets import ChannelMode, convert_channels, pair_folders
from .io import PathLike, is_supported, read_image, read_mask
from .public import dsb_sample_folders

Target = dict[str, Tensor]
Sample = tuple[Tensor, Target]


# --------------------------------------------------------------------------------------------- targets


def boxes_from_masks(masks: Tensor) -> Tensor:
    """xyxy boxes (pixel edges) of ``(N, H, W)`` masks; every mask must have a pixel."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (N, H), (N, W)
    h, w = rows.shape[1], cols.shape[1]
    y0 = rows.float().argmax(dim=1)
    y1 = h - rows.flip(1).float().argmax(dim=1)
    x0 = cols.float().argmax(dim=1)
    x1 = w - cols.flip(1).float().argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)


def make_target(masks: np.ndarray | Tensor, labels: Sequence[int] | Tensor | None = None) -> Target:
    """torchvision's target from ``(N, H, W)`` masks; masks without a pixel are dropped (with their label)."""
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, Tensor) else masks).to(torch.uint8)
    lab = torch.ones(m.shape[0], dtype=torch.int64) if labels is None else torch.as_tensor(labels, dtype=torch.int64)
    keep = m.flatten(1).bool().any(dim=1) if m.shape[0] else torch.zeros(0, dtype=torch.bool)
    m, lab = m[keep], lab[keep]
    return {"boxes": boxes_from_masks(m.bool()), "labels": lab, "masks": m}


def masks_from_label_map(labels: np.ndarray, path: PathLike, relabel: bool = False) -> np.ndarray:
    """``(N, H, W)`` uint8 masks of an instance label map whose ids are 1..N.

    Raises:
        DataError: a gap in the ids (unless `relabel`), naming the file and the missing ids.
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    expected = np.arange(1, len(ids) + 1)
    if not relabel and not np.array_equal(ids, expected):
        missing = sorted(set(range(1, int(ids.max()) + 1)) - set(ids.tolist()))
        shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{path}: instance ids must run 1..N without gaps, but id(s) {shown} are missing (max id "
            f"{int(ids.max())}); a class map is not an instance map -- pass relabel=True if the gaps are intended"
        )
    return (labels[None] == ids[:, None, None]).astype(np.uint8)


def scale_image(image: np.ndarray, stored: np.dtype | None = None) -> np.ndarray:
    """float32 in [0, 1]: uint8 files divided by 255, other types by their per-image 0.5/99.5 percentiles.

    `stored` is the file's dtype when `image` was converted since (grey from RGB is float).
    """
    x = image.astype(np.float32)
    if (stored or image.dtype) == np.uint8:
        return x / np.float32(255.0)
    lo, hi = np.percentile(x, [0.5, 99.5]).astype(np.float32)
    return np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(x)


# --------------------------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class InstanceItem:
    """One sample on disk: an id, its image and a function reading its ``(N, H, W)`` masks and labels."""

    id: str
    image: Path
    read: Callable[[], tuple[np.ndarray, np.ndarray]]


class InstanceDataset(Dataset):
    """Images and instance targets; ``dataset[i]`` is ``(image, target)``, ``dataset.ids[i]`` its id.

    Args:
        items: the samples.
        channels: "grey", "rgb" or "keep" (see :func:`unetpp.data.convert_channels`).
        transform: called on ``(image, target)`` (e.g. :class:`InstanceAugment`).
    """

    def __init__(
        self,
        items: Sequence[InstanceItem],
        channels: ChannelMode = "rgb",
        transform: Callable[[Tensor, Target], Sample] | None = None,
    ) -> None:
        self.items, self.channels, self.transform = list(items), channels, transform

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def read_image(self, index: int) -> Tensor:
        item = self.items[index]
        raw = read_image(item.image, 2)
        image = convert_channels(raw, self.channels, item.image)
        return torch.from_numpy(scale_image(np.ascontiguousarray(image), raw.dtype))

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        image = self.read_image(index)
        masks, labels = item.read()
        if len(masks) == 0:  # an image without objects (its folder may hold no mask to take a size from)
            masks = np.zeros((0, *image.shape[1:]), dtype=np.uint8)
        if masks.shape[1:] != tuple(image.shape[1:]):
            raise DataError(
                f"{item.image}: image is {'x'.join(map(str, image.shape[1:]))} but its masks are "
                f"{'x'.join(map(str, masks.shape[1:]))}; masks must match their image"
            )
        target = make_target(masks, labels)
        return self.transform(image, target) if self.transform is not None else (image, target)

    def label_map(self, index: int) -> np.ndarray:
        """The true instance label map ``(H, W)`` int32 (ids 1..N in target order), for scoring."""
        masks, _ = self.items[index].read()
        shape = masks.shape[1:] if len(masks) else tuple(self.read_image(index).shape[1:])
        labels = np.zeros(shape, dtype=np.int32)
        for k, m in enumerate(masks, start=1):
            labels[m > 0] = k
        return labels


def _dsb_masks(files: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    masks: list[np.ndarray] = []
    covered: np.ndarray | None = None
    for path in files:
        m = read_mask(path, 2, label_count=2, dtype=bool)
        if covered is None:
            covered = np.zeros_like(m)
        elif m.shape != covered.shape:
            raise DataError(f"{path}: mask is {m.shape} but the other masks of this image are {covered.shape}")
        if (covered & m).any():
            raise DataError(
                f"{path}: overlaps another nucleus mask of the same image by {int((covered & m).sum())} pixel(s); "
                "instance masks must be disjoint -- fix or remove the file"
            )
        covered |= m
        if m.any():  # an empty mask file is no object
            masks.append(m)
    shape = covered.shape if covered is not None else (0, 0)
    stack = np.stack(masks).astype(np.uint8) if masks else np.zeros((0, *shape), dtype=np.uint8)
    return stack, np.ones(len(masks), dtype=np.int64)


class DSB2018Instances(InstanceDataset):
    """2018 Data Science Bowl nuclei in Kaggle's layout, one target per image (one mask file per nucleus).

    Args:
        root: ``stage1_train`` or a folder containing it.
        ids: image ids to use (default: all, sorted).
        channels, transform: see :class:`InstanceDataset`.

    Raises:
        DataError: missing folder, unknown ids, an image without its PNG (on reading: overlapping masks).
    """

    def __init__(self, root: PathLike, *, ids: Sequence[str] | None = None, **kwargs) -> None:
        root, found = dsb_sample_folders(root, ids)
        super().__init__([self._item(root / name) for name in found], **kwargs)

    @staticmethod
    def _item(folder: Path) -> InstanceItem:
        image = folder / "images" / f"{folder.name}.png"
        if not image.is_file():
            raise DataError(f"{image}: no such file; each DSB sample folder holds images/<id>.png")
        files = tuple(sorted(p for p in (folder / "masks").glob("*") if is_supported(p)))
        return InstanceItem(folder.name, image, lambda: _dsb_masks(files))


class LabelMapInstances(InstanceDataset):
    """``images/`` + ``labels/`` (or explicit folders), each label file an instance map (0 background).

    Args:
        root: folder holding ``images/`` and ``labels/`` (ignored when both folders are given).
        image_dir, label_dir: explicit folders, paired by file name without suffix.
        relabel: accept gaps in the ids (renumbered in ascending order).
        channels, transform: see :class:`InstanceDataset`.

    Raises:
        DataError: missing folders or unpaired files (on reading: gaps in the ids, unreadable files).
    """

    def __init__(
        self,
        root: PathLike | None = None,
        *,
        image_dir: PathLike | None = None,
        label_dir: PathLike | None = None,
        relabel: bool = False,
        **kwargs,
    ) -> None:
        if image_dir is None or label_dir is None:
            if root is None:
                raise ConfigError("LabelMapInstances needs root= (with images/, labels/) or image_dir=, label_dir=")
            image_dir, label_dir = Path(root) / "images", Path(root) / "labels"
        pairs = pair_folders(Path(image_dir), Path(label_dir))
        items = [InstanceItem(p.id, p.image, self._reader(p.mask, relabel)) for p in pairs]  # type: ignore[arg-type]
        super().__init__(items, **kwargs)

    @staticmethod
    def _reader(path: Path, relabel: bool) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        def read() -> tuple[np.ndarray, np.ndarray]:
            masks = masks_from_label_map(read_mask(path, 2), path, relabel)
            return masks, np.ones(len(masks), dtype=np.int64)

        return read


class CocoInstances(InstanceDataset):
    """Images listed in a COCO JSON file, with its instance annotations (polygons or RLE).

    Args:
        annotations: the ``instances_*.json`` file.
        image_dir: folder that the images' ``file_name`` are relative to (default: the JSON's folder).
        channels, transform: see :class:`InstanceDataset`.

    Attributes:
        categories: COCO category ids in label order (label k is ``categories[k - 1]``).

    Raises:
        DataError: unreadable JSON, no images in it, or a listed image missing on disk.
    """

    def __init__(self, annotations: PathLike, image_dir: PathLike | None = None, **kwargs) -> None:
        from pycocotools.coco import COCO

        path = Path(annotations)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: no such COCO annotation file; check the path") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable COCO JSON file ({type(e).__name__}: {e})") from None
        if not isinstance(data, dict) or not data.get("images"):
            raise DataError(f"{path}: COCO file lists no images; it needs 'images', 'annotations' and 'categories'")
        data.setdefault("annotations", [])
        data.setdefault("categories", [])
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        self.coco = coco
        self.categories = sorted(int(c["id"]) for c in data["categories"])
        folder = Path(image_dir) if image_dir is not None else path.parent
        items = []
        for info in sorted(data["images"], key=lambda i: i["id"]):
            image = folder / info["file_name"]
            if not image.is_file():
                raise DataError(f"{path}: image {info['file_name']!r} (id {info['id']}) not found in {folder}")
            items.append(InstanceItem(str(info["id"]), image, self._reader(int(info["id"]), path)))
        super().__init__(items, **kwargs)

    def _reader(self, image_id: int, path: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        def read() -> tuple[np.ndarray, np.ndarray]:
            info = self.coco.imgs[image_id]
            anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
            label_of = {c: k for k, c in enumerate(self.categories, start=1)}
            unknown = sorted({a["category_id"] for a in anns} - set(label_of))
            if unknown:
                raise DataError(f"{path}: annotations of image {image_id} use unknown category id(s) {unknown}")
            shape = (int(info["height"]), int(info["width"]))
            masks = [self.coco.annToMask(a) for a in anns]
            stack = np.stack(masks).astype(np.uint8) if masks else np.zeros((0, *shape), dtype=np.uint8)
            return stack, np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64)

        return read


# --------------------------------------------------------------------------------------------- augmentation


class InstanceAugment:
    """Random crop, 90° rotations and flips applied to the image and every mask alike; boxes recomputed.

    Recomputing the boxes from the transformed masks (instead of transforming box corners) keeps
    them exact; instances left without a pixel by the crop are dropped with their label.

    Args:
        crop: side of a random square crop (images smaller than it are kept whole); None: no crop.
        rot90: rotate by a random multiple of 90°.
        flip: flip left-right with probability 0.5 (with rot90, all 8 symmetries of the square).
    """

    def __init__(self, crop: int | None = None, rot90: bool = True, flip: bool = True) -> None:
        if crop is not None and (not isinstance(crop, int) or crop < 1):
            raise ConfigError(f"crop must be a positive integer or None, got {crop!r}")
        self.crop, self.rot90, self.flip = crop, rot90, flip

    def __call__(self, image: Tensor, target: Target) -> Sample:
        masks = target["masks"]
        if self.crop is not None:
            h, w = image.shape[-2:]
            ch, cw = min(self.crop, h), min(self.crop, w)
            y = int(torch.randint(0, h - ch + 1, ()))
            x = int(torch.randint(0, w - cw + 1, ()))
            image, masks = image[:, y : y + ch, x : x + cw], masks[:, y : y + ch, x : x + cw]
        if self.rot90:
            k = int(torch.randint(0, 4, ()))
            image, masks = torch.rot90(image, k, (1, 2)), torch.rot90(masks, k, (1, 2))
        if self.flip and bool(torch.rand(()) < 0.5):
            image, masks = image.flip(2), masks.flip(2)
        return image.contiguous(), make_target(masks.contiguous(), target["labels"])


def collate_instances(batch: Sequence[Sample]) -> tuple[list[Tensor], list[Target]]:
    """DataLoader collate for detectors: images differ in size and objects in number, so keep lists."""
    return [image for image, _ in batch], [target for _, target in batch]


# --------------------------------------------------------------------------------------------- layouts


def _open_folders(root: Path, **kwargs) -> InstanceDataset:
    labels = root / "labels" if (root / "labels").is_dir() or not (root / "masks").is_dir() else root / "masks"
    return LabelMapInstances(image_dir=root / "images", label_dir=labels, **kwargs)


def _open_coco(root: Path, **kwargs) -> InstanceDataset:
    if root.is_dir():
        files = sorted(root.glob("*.json"))
        if len(files) != 1:
            found = f"{len(files)} ({', '.join(p.name for p in files[:3])})" if files else "none"
            raise DataError(f"{root}: a coco folder must hold exactly one .json file, found {found}; pass the file")
        root = files[0]
    return CocoInstances(root, **kwargs)


INSTANCE_LAYOUTS: dict[str, tuple[Callable[..., InstanceDataset], str]] = {
    "dsb2018": (DSB2018Instances, "Kaggle's <id>/images/<id>.png + <id>/masks/*.png, one mask file per object"),
    "folders": (_open_folders, "images/ + labels/ (or masks/) paired by name; labels are instance maps, 0 background"),
    "coco": (_open_coco, "a COCO JSON file (or a folder holding one); image file names relative to it"),
}
"""Instance layouts, keyed by the names of :data:`unetpp.data.layouts.LAYOUTS` where both exist."""


def open_instances(
    layout: str, root: PathLike, *, channels: ChannelMode = "rgb", transform: Callable | None = None
) -> InstanceDataset:
    """The instance data set at `root` in `layout` (one of :data:`INSTANCE_LAYOUTS`).

    Raises:
        ConfigError: a layout without instance labels.
        DataError: a missing path, or the layout's own problems (naming the file).
    """
    if layout not in INSTANCE_LAYOUTS:
        raise ConfigError(
            f"data.layout: {layout!r} has no instance labels; instance segmentation reads {', '.join(INSTANCE_LAYOUTS)}"
        )
    if not root or not Path(root).exists():
        raise DataError(f"{root or '(data.root not set)'}: no such file or folder; pass the data set with --data")
    return INSTANCE_LAYOUTS[layout][0](Path(root), channels=channels, transform=transform)
