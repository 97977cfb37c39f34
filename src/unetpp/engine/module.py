"""The LightningModule: a built model plus the hybrid deep-supervision loss and per-head metrics.

The model stays a pure ``nn.Module`` (``self.model``); this class adds the training step, the
validation of every head and of the ensemble (the paper's two inference modes), and the optimizer.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from ..losses import DeepSupervisionLoss, HybridLoss
from ..metrics import iou, masks_from_labels, masks_from_probs
from ..models import build_model, ensemble
from ..padding import pad_to_multiple
from .checkpoints import add_model_header


class SegmentationModule(L.LightningModule):
    """Trains any model of the family with the paper's loss; logs every head's loss and IoU.

    Args:
        model_config: keyword arguments of :func:`unetpp.build_model` (``name`` included); saved
            in every checkpoint, so a checkpoint alone rebuilds the model.
        lr, weight_decay: Adam's settings (the paper: Adam, lr 3e-4).
        head_weights: deep-supervision weight of each head; None gives 1 to every head (the paper).
        bce_weight, dice_weight: the hybrid loss's terms.
        encoder_lr_scale: learning rate of a backbone encoder relative to ``lr``.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        head_weights: list[float] | None = None,
        bce_weight: float = 0.5,
        dice_weight: float = 1.0,
        encoder_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        kwargs = dict(model_config)
        self.model = build_model(kwargs.pop("name"), **kwargs)
        self.heads = list(self.model.spec.heads)
        weights = head_weights if head_weights is not None else [1.0] * len(self.heads)
        self.loss = DeepSupervisionLoss(HybridLoss(bce_weight, dice_weight), weights)

    @property
    def classes(self) -> int:
        return self.model.classes

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model(x)

    def _target(self, mask: Tensor) -> Tensor:
        return mask.float() if self.classes == 1 else mask

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        heads = self.model(batch["image"])
        total, per_head = self.loss.per_head(heads, self._target(batch["mask"]))
        n = batch["image"].shape[0]
        # epoch means: one point per epoch for the learning curves, however few steps an epoch has
        self.log("train/loss", total, prog_bar=True, batch_size=n, on_step=False, on_epoch=True)
        per_head_logs = {f"train/loss_head{j}": v for j, v in zip(self.heads, per_head, strict=True)}
        self.log_dict(per_head_logs, batch_size=n, on_step=False, on_epoch=True)
        return total

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        image, crop = pad_to_multiple(batch["image"], 2**self.model.depth)
        heads = [h[crop] for h in self.model(image)]
        n = image.shape[0]
        total, per_head = self.loss.per_head(heads, self._target(batch["mask"]))
        truth = masks_from_labels(batch["mask"], self.classes)

        def score(probs: Tensor) -> Tensor:  # mean IoU of the foreground classes
            return iou(masks_from_probs(probs), truth, include_background=self.classes == 1).mean()

        scores = {f"val/iou_head{j}": score(ensemble([h])) for j, h in zip(self.heads, heads, strict=True)}
        if len(heads) > 1:
            scores["val/iou_ensemble"] = score(ensemble(heads))
        # the score that picks the best checkpoint: the ensemble when there is one, else the only head
        best = scores.get("val/iou_ensemble", scores[f"val/iou_head{self.heads[-1]}"])
        self.log("val/iou", best, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/loss", total, batch_size=n, sync_dist=True)
        self.log_dict({f"val/loss_head{j}": v for j, v in zip(self.heads, per_head, strict=True)}, batch_size=n)
        self.log_dict(scores, batch_size=n, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a model header, so that unetpp.load reads the model without knowing Lightning's layout
        add_model_header(checkpoint, self.model.config)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # a pretrained backbone may train at a lower rate: its group carries its own "lr"
        groups = self.model.parameter_groups(self.hparams.encoder_lr_scale, lr=self.hparams.lr)
        # fused: one kernel for all parameters instead of ~10 passes per tensor (0.4x the optimizer time on CPU)
        fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"]) or None
        return torch.optim.Adam(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=fused)
