"""The one table of data-set layouts: how each is read, how it is split, how to recognise it on disk.

The engine, the CLI, evaluation and the download helpers all open data through :func:`open_dataset`
and this table, so a new layout is one row here (downloadable copies of a layout are the records of
:data:`unetpp.data.download.REMOTE_DATASETS`, each naming its layout). Splitting lives here too,
because the right default split is a property of the layout: serial sections (ISBI, folders of
slices) are correlated and are split into contiguous blocks; independent images (DSB, MSD) at random.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ..errors import ConfigError, DataError
from .datasets import ArrayDataset, FolderPairs, SegmentationDataset
from .public import DSB2018, ISBI2012, Decathlon
from .splits import Split, block_split, kfold_split, random_split
from .synthetic import make_synthetic_em


class DataSource(Protocol):
    """What opening and splitting a data set reads: :class:`unetpp.config.DataConfig` has it all.

    A protocol rather than the config class itself, so that ``data/`` imports nothing above it.
    """

    root: str
    layout: str
    channels: str
    normalize: str
    cache: bool
    mask_threshold: float | None
    target_spacing: Sequence[float] | None
    synthetic_images: int
    synthetic_size: int
    val_ids: Sequence[str] | None
    val_fraction: float
    split: str
    folds: int
    fold: int

    @property
    def intensity_stats(self) -> tuple[tuple[float, float, float, float], ...] | None: ...


@dataclass(frozen=True)
class Layout:
    """One way a data set lies on disk.

    Args:
        name: what users pass as ``--layout``.
        reader: ``reader(root, **options)`` builds the data set (options: spatial_dims, classes, channels...).
        split: the default split (``data.split=auto``): ``"block"`` for correlated serial sections.
        looks_like: whether a folder holds this layout (to find it inside a downloaded archive).
        description: one line for ``--help``.
    """

    name: str
    reader: Callable[..., SegmentationDataset]
    split: Literal["block", "random"]
    looks_like: Callable[[Path], bool] | None = None
    description: str = ""


def synthetic_dataset(root: object = None, *, images: int = 24, size: int = 256, **kwargs: Any) -> SegmentationDataset:
    """The embedded demo data (:func:`~unetpp.data.synthetic.make_synthetic_em`, seed 0); `root` is unused."""
    arrays, masks = make_synthetic_em(images, size, seed=0)
    return ArrayDataset(arrays, masks, **kwargs)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "folders",
            FolderPairs,
            "block",
            lambda d: (d / "images").is_dir() and ((d / "masks").is_dir() or (d / "labels").is_dir()),
            description="images/ + masks/ (or labels/), matched by file name",
        ),
        Layout(
            "isbi2012",
            ISBI2012,
            "block",
            lambda d: (d / ISBI2012.VOLUME).is_file() or ((d / "images").is_dir() and (d / "labels").is_dir()),
            "ISBI 2012 EM: train-volume.tif + train-labels.tif, or images/ + labels/",
        ),
        Layout(
            "dsb2018",
            DSB2018,
            "random",
            lambda d: any((c / "images").is_dir() and (c / "masks").is_dir() for c in d.iterdir() if c.is_dir()),
            "2018 Data Science Bowl (Kaggle): <id>/images/<id>.png + <id>/masks/*.png",
        ),
        Layout(
            "decathlon",
            Decathlon,
            "random",
            lambda d: (d / "imagesTr").is_dir() and (d / "labelsTr").is_dir(),
            "Medical Segmentation Decathlon: imagesTr/ + labelsTr/ + dataset.json",
        ),
        Layout("synthetic", synthetic_dataset, "block", description="the embedded demo data (generated, no folder)"),
    )
}


def layout(name: str) -> Layout:
    """The row of `name`.

    Raises:
        ConfigError: an unknown name (the known ones are listed).
    """
    if name not in LAYOUTS:
        raise ConfigError(f"unknown layout {name!r}; expected one of {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def open_dataset(cfg: DataSource, spatial_dims: int, classes: int | None) -> SegmentationDataset:
    """The whole data set named by the config, read lazily and checked for pairing.

    `classes` is the model's (1 = binary); ``None`` accepts any label ids (to fingerprint a data set).

    Raises:
        ConfigError: unknown layout or no root folder given.
        DataError: a missing folder, or the layout's own problems (unpaired files, ...), naming the file.
    """
    row = layout(cfg.layout)
    if row.name != "synthetic":
        if not cfg.root:
            raise ConfigError("data.root is not set; pass the data set folder (e.g. --data path/to/images_and_masks)")
        if not Path(cfg.root).is_dir():
            raise DataError(f"{cfg.root}: no such folder; check the path given as data root")
    kwargs: dict[str, Any] = {
        "spatial_dims": spatial_dims,
        "classes": classes,
        "channels": cfg.channels,
        "normalize": cfg.normalize,
        "cache": cfg.cache,
        "intensity_stats": cfg.intensity_stats,
        "mask_threshold": cfg.mask_threshold,
        "target_spacing": cfg.target_spacing if spatial_dims == 3 else None,
    }
    if row.name == "synthetic":
        kwargs.update(images=cfg.synthetic_images, size=cfg.synthetic_size)
    return row.reader(cfg.root, **kwargs)


def indices_of(wanted: tuple[str, ...], ids: list[str], field: str) -> list[int]:
    """Positions of the named images, in data set order; an unknown name is an error."""
    unknown = sorted(set(wanted) - set(ids))
    if unknown:
        raise ConfigError(f"data.{field} names images that do not exist: {unknown[:5]}; ids look like {ids[:3]}")
    chosen = set(wanted)
    return [k for k, i in enumerate(ids) if i in chosen]


def split_indices(cfg: DataSource, ids: list[str], seed: int) -> Split:
    """Training and validation indices: explicit ids, contiguous blocks, random, or one of k folds.

    Raises:
        ConfigError: unknown ids, or a fold outside the folds.
    """
    if cfg.val_ids:
        val = indices_of(cfg.val_ids, ids, "val_ids")
        return Split([k for k in range(len(ids)) if k not in set(val)], val, [])
    kind = layout(cfg.layout).split if cfg.split == "auto" else cfg.split
    if len(ids) < 2:  # nothing to split (the splitters' own message speaks of "n")
        if cfg.val_fraction == 0 and kind != "kfold":
            return Split(list(range(len(ids))), [], [])
        raise ConfigError(
            f"{cfg.root or 'the data set'}: {len(ids)} image(s) cannot be split into training and validation; "
            "add images, or set data.val_fraction=0 to train without validation"
        )
    if kind == "block":
        return block_split(len(ids), cfg.val_fraction, seed=seed)
    if kind == "random":
        return random_split(len(ids), cfg.val_fraction, seed=seed)
    folds = kfold_split(len(ids), cfg.folds, seed=seed, contiguous=layout(cfg.layout).split == "block")
    if not 0 <= cfg.fold < len(folds):
        raise ConfigError(f"data.fold must be in 0..{len(folds) - 1}, got {cfg.fold}")
    return folds[cfg.fold]
