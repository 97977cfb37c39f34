"""The LightningDataModule: batches only. Layouts and splits are in :mod:`unetpp.data.layouts`."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Subset

from ..config import DataConfig, RunConfig
from ..data import PatchDataset, build_transforms
from ..data.layouts import indices_of, open_dataset, split_indices
from ..errors import ConfigError

log = logging.getLogger(__name__)


class SegmentationDataModule(L.LightningDataModule):
    """Random (augmented) patches of the training images; whole validation images, one per batch.

    Validation images keep their size (the module pads them to a multiple of 2^depth and crops
    back), so the validation IoU is the IoU of whole images, as the paper reports it.

    Under DDP, Lightning gives the training loader a ``DistributedSampler``: each rank takes every
    N-th patch of a shuffled order, and when the patch count is not a multiple of N the first few
    patches are repeated to even the ranks out (at most N - 1 of them per epoch; the ranks must take
    the same number of optimizer steps). Validation uses an ``UnrepeatedDistributedSampler``: every
    image exactly once across ranks, so the module's reduced sums give the whole set's mean.
    """

    def __init__(
        self,
        cfg: DataConfig,
        *,
        spatial_dims: int,
        classes: int,
        in_channels: int,
        seed: int = 0,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.spatial_dims, self.classes, self.in_channels, self.seed = (
            cfg,
            spatial_dims,
            classes,
            in_channels,
            seed,
        )
        self.steps_per_epoch = steps_per_epoch
        self.train_set: PatchDataset | None = None
        self.val_set: Dataset | None = None
        self._val_view: ValidationView | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> SegmentationDataModule:
        """The data of a run: its data section, read as its model expects (2D/3D, classes, channels)."""
        m = cfg.model
        t = cfg.train
        return cls(
            cfg.data,
            spatial_dims=m.spatial_dims,
            classes=m.classes,
            in_channels=m.in_channels,
            seed=t.seed,
            steps_per_epoch=t.steps_per_epoch,
        )

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
        full.verify(pool)
        files, changed, total = full.thresholded
        if files:  # one line for the data set, not one per file
            log.warning(
                "masks thresholded at %g: %d of %d pixels (%.2f%%) in %d mask file(s) (%s) were neither background "
                "nor the foreground value (compression noise) and were set to 0 or 1",
                self.cfg.mask_threshold,
                changed,
                total,
                100.0 * changed / max(total, 1),
                files,
                ", ".join(str(p) for p in full.noisy_masks[:3]) + (", ..." if files > 3 else ""),
            )
        split = split_indices(self.cfg, [full.ids[k] for k in pool], self.seed)
        train, val = [pool[k] for k in split.train], [pool[k] for k in split.val]
        self.train_set = PatchDataset(
            Subset(full, train),
            self.cfg.patch_size,
            fg_prob=self.cfg.fg_prob,
            patches_per_image=self.cfg.patches_per_image,
            num_patches=self._patches_per_epoch(),
            spatial_dims=self.spatial_dims,
            seed=self.seed,
            transform=build_transforms(self.spatial_dims, self.cfg.augment, self.cfg.patch_size),
        )
        self.val_set = Subset(full, val) if val else None

    def _patches_per_epoch(self) -> int | None:
        """A fixed number of steps per epoch (on every rank) whatever the data set's size; None: per image."""
        if self.steps_per_epoch is None:
            return None
        trainer = getattr(self, "trainer", None)
        ranks = trainer.world_size if trainer is not None else 1
        return self.steps_per_epoch * self.cfg.batch_size * ranks

    def validation_sizes(self) -> list[int]:
        """Voxels of each validation image (read from the cache): what a validation pass costs scales with them."""
        assert self.val_set is not None
        return [int(self.val_set[k]["image"][0].numel()) for k in range(len(self.val_set))]

    def limit_validation(self, keep: int) -> list[int]:
        """Validate on `keep` evenly spaced images from now on (the same ones every time); returns their indices."""
        from .budget import evenly_spaced

        assert self.val_set is not None
        chosen = evenly_spaced(len(self.val_set), keep)
        if self._val_view is None:
            self._val_view = ValidationView(self.val_set)
        self._val_view.indices = chosen
        return chosen

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        self.train_set.num_patches = self._patches_per_epoch()  # the trainer (its world size) is known by now
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) > self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,  # workers start anew each epoch, with that epoch's patches
            pin_memory=self._on_cuda(),
        )

    def _on_cuda(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of patches; called at the start of every training epoch."""
        if self.train_set is not None:
            self.train_set.set_epoch(epoch)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        # a view the budget can cut after Lightning has built this loader (it does so before the first step)
        if self._val_view is None:
            self._val_view = ValidationView(self.val_set)
        images = self._val_view
        trainer = getattr(self, "trainer", None)
        sampler = None
        if trainer is not None and trainer.world_size > 1:  # Lightning keeps a DistributedSampler it is given
            sampler = UnrepeatedDistributedSampler(
                images, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return DataLoader(images, batch_size=1, num_workers=0, sampler=sampler, pin_memory=self._on_cuda())


class ValidationView(Dataset):
    """The validation images, or the fixed subset a time budget keeps: its length is read each time it is iterated."""

    def __init__(self, images: Dataset) -> None:
        self.images = images
        self.indices: list[int] = list(range(len(images)))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        return self.images[self.indices[k]]
