"""Instance segmentation on the same engine: Mask R-CNN / Mask R-CNN++ as a LightningModule and its data.

:func:`unetpp.engine.train.fit` picks these classes when ``model.task == "instance"``; everything
else -- the run folder, ``config.yaml``, best/last checkpoints (best by ``val/score``, the DSB
2018 score), atomic writes, resume, logs, interruption -- is the segmentation engine's, unchanged.

- Training: torchvision's detector returns its loss dict in train mode; the step sums it (as
  torchvision's references do) and logs every term (``train/loss_classifier``, ``train/loss_mask``...).
- Validation: whole validation images at the detector's scale, instances scoring >= 0.5 pasted
  into a label map (higher score wins an overlap), scored against the true instances with the
  Table V columns (:func:`unetpp.metrics.instances.instance_scores`): ``val/score`` (DSB score),
  ``val/ap50``, ``val/iou`` and ``val/dice`` of the union, ``val/precision``, ``val/recall``.
- Data: :func:`unetpp.data.instances.open_instances` (dsb2018, folders of instance label maps,
  coco); random square crops of ``data.patch_size`` (default 256) with the 8 symmetries, boxes
  recomputed from the masks; ``data.patches_per_image`` crops per image per epoch; the split is
  :func:`unetpp.data.layouts.split_indices` (instance images are independent: random by default).

Config mapping (``model.*`` -> :func:`unetpp.detection.build_detector`): ``classes`` means what it
means for the semantic models -- 1 is one object class (binary), K > 1 is K classes counting the
background -- so the detector gets ``max(2, classes)``; ``pyramid_width`` is the width of the pyramid
and of the heads; ``anchor_sizes`` and ``min_size`` (None: native scale) are passed through;
``encoder`` None is the paper's ResNet-101. ``depth``, ``widths``, ``deep_supervision``, ``norm``,
``dropout`` and ``encoder_freeze`` belong to the nested family: the detectors' pyramids have no
normalisation, as torchvision's FPN, so that the two detectors differ only in their skips.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from ..config import PAPER_LR, DataConfig, ModelConfig, RunConfig
from ..data.instances import INSTANCE_LAYOUTS, InstanceAugment, InstanceDataset, collate_instances, open_instances
from ..data.layouts import indices_of, split_indices
from ..errors import ConfigError
from ..inference.instances import detector_label_map
from ..metrics.instances import instance_scores, masks_to_label_map
from ..models import build_model
from .checkpoints import add_model_header

DEFAULT_CROP = 256


def detector_kwargs(model: ModelConfig) -> dict[str, Any]:
    """Arguments of :func:`unetpp.build_model` for a detector config (see the module docstring)."""
    kwargs: dict[str, Any] = {
        "name": model.name,
        "in_channels": model.in_channels,
        "classes": max(2, model.classes),
        "pyramid_width": model.pyramid_width,
        "head_width": model.pyramid_width,
        "anchor_sizes": list(model.anchor_sizes),
        "min_size": model.min_size,
        "encoder_weights": model.encoder_weights,
    }
    if model.encoder is not None:
        kwargs["encoder"] = model.encoder
    return kwargs


class InstanceModule(L.LightningModule):
    """Trains a detector on torchvision's summed losses; validates with the DSB score and Table V's columns.

    Args:
        model_config: keyword arguments of :func:`unetpp.build_model` (``name`` included).
        lr, weight_decay: Adam's settings.
    """

    def __init__(self, model_config: dict[str, Any], lr: float = 3e-4, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        kwargs = dict(model_config)
        self.model = build_model(kwargs.pop("name"), **kwargs)

    def training_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        total = sum(losses.values())
        n = len(images)
        self.log("train/loss", total, prog_bar=True, batch_size=n, on_step=False, on_epoch=True)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=n, on_step=False, on_epoch=True)
        return total

    def validation_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        images, targets = batch
        for image, target in zip(images, targets, strict=True):
            s = instance_scores(detector_label_map(self.model, image), masks_to_label_map(target["masks"].cpu()))
            self.log("val/score", s.dsb_score, prog_bar=True, batch_size=1)
            values = {"ap50": s.ap50, "iou": s.iou, "dice": s.dice, "precision": s.precision, "recall": s.recall}
            self.log_dict({f"val/{k}": v for k, v in values.items()}, batch_size=1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        add_model_header(checkpoint, self.model.config)  # unetpp.load rebuilds the detector from it

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class InstanceDataModule(L.LightningDataModule):
    """Random augmented crops of the training images (lists of images and targets); whole validation images."""

    def __init__(self, cfg: DataConfig, *, in_channels: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.in_channels, self.seed = cfg, in_channels, seed
        self.train_set: Subset | None = None
        self.val_set: Subset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        channels = self.cfg.channels if self.cfg.channels != "keep" else {1: "grey", 3: "rgb"}.get(self.in_channels)
        full = open_instances(self.cfg.layout, self.cfg.root, channels=channels or "keep")
        if not len(full):
            raise ConfigError(f"{self.cfg.root}: the data set holds no images")
        found = full.read_image(0).shape[0]  # the first image read now: a bad file fails before anything is written
        if found != self.in_channels:
            raise ConfigError(
                f"images of {self.cfg.root} have {found} channel(s) but the model takes {self.in_channels}; "
                f"set model.in_channels={found} or data.channels=grey/rgb"
            )
        pool = list(range(len(full))) if self.cfg.ids is None else indices_of(self.cfg.ids, full.ids, "ids")
        # instance images are independent images: the layout's own split would be "random" for all of them
        split_cfg = dataclasses.replace(self.cfg, layout="dsb2018") if self.cfg.layout == "coco" else self.cfg
        split = split_indices(split_cfg, [full.ids[k] for k in pool], self.seed)
        train, val = [pool[k] for k in split.train], [pool[k] for k in split.val]
        if not train:
            raise ConfigError(f"{self.cfg.root}: no training images left after the validation split; add images")
        crop = self.cfg.patch_size[0] if self.cfg.patch_size else DEFAULT_CROP
        augment = InstanceAugment(crop=crop, rot90=self.cfg.augment != "none", flip=self.cfg.augment != "none")
        augmented = InstanceDataset(full.items, full.channels, augment)
        self.train_set = Subset(augmented, train * self.cfg.patches_per_image)
        self.val_set = Subset(full, val) if val else None

    def set_epoch(self, epoch: int) -> None:
        """Crops are drawn at random each time an image is read: nothing to redraw."""

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) > self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            collate_fn=collate_instances,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=1, num_workers=0, collate_fn=collate_instances)


def instance_parts(cfg: RunConfig) -> tuple[InstanceModule, InstanceDataModule]:
    """The module and the data of an instance run (for :func:`unetpp.engine.train.fit`)."""
    if cfg.model.spatial_dims != 2:
        raise ConfigError("model.spatial_dims: instance segmentation is 2-D (Mask R-CNN); set model.spatial_dims=2")
    if cfg.data.layout not in INSTANCE_LAYOUTS:  # before building the model (which may download weights)
        raise ConfigError(
            f"data.layout: {cfg.data.layout!r} has no instance labels; instance segmentation reads "
            f"{', '.join(INSTANCE_LAYOUTS)}"
        )
    module = InstanceModule(
        detector_kwargs(cfg.model), lr=cfg.train.lr or PAPER_LR, weight_decay=cfg.train.weight_decay
    )
    return module, InstanceDataModule(cfg.data, in_channels=cfg.model.in_channels, seed=cfg.train.seed)
