"""The LightningDataModule: data set by layout, a seeded split, patches for training, full images to validate."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Dataset, Subset

from ..config import DataConfig
from ..data import (
    DSB2018,
    ISBI2012,
    ArrayDataset,
    Decathlon,
    FolderPairs,
    PatchDataset,
    SegmentationDataset,
    Split,
    block_split,
    build_transforms,
    kfold_split,
    make_synthetic_em,
    random_split,
)
from ..errors import ConfigError, DataError

LAYOUTS = {"folders": FolderPairs, "isbi2012": ISBI2012, "dsb2018": DSB2018, "decathlon": Decathlon}


def open_dataset(cfg: DataConfig, spatial_dims: int, classes: int) -> SegmentationDataset:
    """The whole data set named by the config, read lazily and checked for pairing."""
    kwargs = {
        "spatial_dims": spatial_dims,
        "num_classes": max(2, classes),
        "channels": cfg.channels,
        "normalize": cfg.normalize,
        "cache": cfg.cache,
    }
    if cfg.layout == "synthetic":
        images, masks = make_synthetic_em(cfg.synthetic_images, cfg.synthetic_size, seed=0)
        return ArrayDataset(images, masks, **kwargs)
    if cfg.layout not in LAYOUTS:
        raise ConfigError(f"data.layout must be one of {[*LAYOUTS, 'synthetic']}, got {cfg.layout!r}")
    if not cfg.root:
        raise ConfigError("data.root is not set; pass the data set folder (e.g. --data path/to/images_and_masks)")
    if not Path(cfg.root).is_dir():
        raise DataError(f"{cfg.root}: no such folder; check the path given as data root")
    return LAYOUTS[cfg.layout](cfg.root, **kwargs)


def indices_of(wanted: list[str], ids: list[str], field: str) -> list[int]:
    """Positions of the named images, in data set order; an unknown name is an error."""
    unknown = sorted(set(wanted) - set(ids))
    if unknown:
        raise ConfigError(f"data.{field} names images that do not exist: {unknown[:5]}; ids look like {ids[:3]}")
    return [k for k, i in enumerate(ids) if i in set(wanted)]


def split_indices(cfg: DataConfig, ids: list[str], seed: int) -> Split:
    """Training and validation indices: explicit ids, contiguous blocks, random, or one of k folds."""
    if cfg.val_ids:
        val = indices_of(cfg.val_ids, ids, "val_ids")
        return Split([k for k in range(len(ids)) if k not in set(val)], val, [])
    if cfg.split == "block":
        return block_split(len(ids), cfg.val_fraction, seed=seed)
    if cfg.split == "random":
        return random_split(len(ids), cfg.val_fraction, seed=seed)
    if cfg.split == "kfold":
        folds = kfold_split(len(ids), cfg.folds, seed=seed)
        if not 0 <= cfg.fold < len(folds):
            raise ConfigError(f"data.fold must be in 0..{len(folds) - 1}, got {cfg.fold}")
        return folds[cfg.fold]
    raise ConfigError(f"data.split must be 'block', 'random' or 'kfold', got {cfg.split!r}")


class SegmentationDataModule(L.LightningDataModule):
    """Random (augmented) patches of the training images; whole validation images, one per batch.

    Validation images keep their size (the module pads them to a multiple of 2^depth and crops
    back), so the validation IoU is the IoU of whole images, as the paper reports it.
    """

    def __init__(self, cfg: DataConfig, *, spatial_dims: int, classes: int, in_channels: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.spatial_dims, self.classes, self.in_channels, self.seed = (
            cfg,
            spatial_dims,
            classes,
            in_channels,
            seed,
        )
        self.train_set: PatchDataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full = open_dataset(self.cfg, self.spatial_dims, self.classes)
        channels = full[0]["image"].shape[0]
        if channels != self.in_channels:
            raise ConfigError(
                f"images of {self.cfg.root or 'the data set'} have {channels} channel(s) but the model takes "
                f"{self.in_channels}; set model.in_channels={channels} or data.channels=grey/rgb"
            )
        pool = list(range(len(full))) if self.cfg.ids is None else indices_of(self.cfg.ids, full.ids, "ids")
        # Read every image once now: a bad file fails before anything is written, and with the cache
        # on, loading workers (started anew each epoch) inherit the decoded images instead of re-reading.
        for k in pool:
            full.load(k)
        split = split_indices(self.cfg, [full.ids[k] for k in pool], self.seed)
        train, val = [pool[k] for k in split.train], [pool[k] for k in split.val]
        self.train_set = PatchDataset(
            Subset(full, train),
            self.cfg.patch_size,
            fg_prob=self.cfg.fg_prob,
            patches_per_image=self.cfg.patches_per_image,
            spatial_dims=self.spatial_dims,
            seed=self.seed,
            transform=build_transforms(self.spatial_dims, self.cfg.augment),
        )
        self.val_set = Subset(full, val) if val else None

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) > self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,  # workers start anew each epoch, with that epoch's patches
        )

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of patches; called at the start of every training epoch."""
        if self.train_set is not None:
            self.train_set.set_epoch(epoch)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=1, num_workers=0)
