"""The LightningModule: a built model plus the hybrid deep-supervision loss and per-head metrics.

The model stays a pure ``nn.Module`` (``self.model``); this class adds the training step, the
validation of every head and of the ensemble (the paper's two inference modes), and the optimizer.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from ..errors import TrainingError
from ..losses import DeepSupervisionLoss, HybridLoss
from ..metrics import iou, masks_from_labels, masks_from_probs
from ..models import build_model, ensemble, heads_and_ensemble
from ..models.checkpoint import HEADER_KEY
from ..models.provenance import ENSEMBLE_HEADS, VALIDATION_IOU
from ..utils.padding import pad_to_multiple
from .budget import WallClockBudget
from .checkpoints import add_model_header

log = logging.getLogger(__name__)


class SegmentationModule(L.LightningModule):
    """Trains any model of the family with the paper's loss; logs every head's loss and IoU.

    Args:
        model_config: keyword arguments of :func:`unetpp.build_model` (``name`` included); saved
            in every checkpoint, so a checkpoint alone rebuilds the model.
        lr, weight_decay: Adam's settings (the paper: Adam, lr 3e-4); ``lr`` is the schedule's peak.
        schedule: the learning rate over the run: ``"linear"``, ``"cosine"`` or ``"poly"`` (nnU-Net's
            exponent 0.9) decay to 0 at the end of the run (the time budget when there is one, else the
            last epoch's step), after a linear warm-up over the first ``warmup`` share; ``"paper"``: constant.
        head_weights: deep-supervision weight of each head; None gives 1 to every head (the paper).
        bce_weight, dice_weight: the hybrid loss's terms.
        encoder_lr_scale: learning rate of a backbone encoder relative to ``lr``.
        preprocessing: what prediction must repeat (``DataConfig.preprocessing()``: channels,
            normalisation and its statistics, target spacing, mask threshold); saved in the checkpoint's
            model header, so ``unetpp predict`` needs nothing but the checkpoint.
        compile: ``torch.compile`` the model in place (same checkpoint keys); the first step's time,
            which includes compiling, is logged against the second's.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        schedule: Literal["linear", "cosine", "poly", "paper"] = "paper",
        warmup: float = 0.02,
        head_weights: list[float] | None = None,
        bce_weight: float = 0.5,
        dice_weight: float = 1.0,
        encoder_lr_scale: float = 1.0,
        preprocessing: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        kwargs = dict(model_config)
        self.model = build_model(kwargs.pop("name"), **kwargs)
        self.heads = list(self.model.spec.heads)
        weights = head_weights if head_weights is not None else [1.0] * len(self.heads)
        self.loss = DeepSupervisionLoss(HybridLoss(bce_weight, dice_weight), weights)
        self._epoch_start, self._seen = time.perf_counter(), 0
        self._train_end = self._epoch_start
        if compile:
            self.model.compile()  # in place: the state dict's keys, and so checkpoints, stay the same
        self._step_seconds: list[float] = []
        # the heads whose mean the accurate mode uses: chosen on validation (all of them until then)
        self.ensemble_heads: list[int] = list(self.heads)
        self._subsets = head_subsets(self.heads)
        self.validation_iou: dict[str, float] = {}  # mode ("head1", "ensemble", "chosen") -> IoU, last validation

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
        if not torch.isfinite(total):  # the next optimizer step would make every weight NaN
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self._trainer is not None else self.hparams.lr
            raise TrainingError(
                f"the training loss became {float(total)} at step {self.global_step} (learning rate {lr:.3g}); "
                "the last finite checkpoint is kept; lower --lr (or --set train.lr=...) and start again"
            )
        n = batch["image"].shape[0]
        self._seen += n
        # epoch means: one point per epoch for the learning curves, however few steps an epoch has
        self.log("train/loss", total, prog_bar=True, batch_size=n, on_step=False, on_epoch=True)
        per_head_logs = {f"train/loss_head{j}": v for j, v in zip(self.heads, per_head, strict=True)}
        self.log_dict(per_head_logs, batch_size=n, on_step=False, on_epoch=True)
        return total

    def on_validation_epoch_start(self) -> None:
        self._val_sums: dict[str, Tensor] = {}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        image, crop = pad_to_multiple(batch["image"], 2**self.model.depth)
        heads = [h[crop] for h in self.model(image)]
        n = image.shape[0]
        total, per_head = self.loss.per_head(heads, self._target(batch["mask"]))
        truth = masks_from_labels(batch["mask"], self.classes)

        def score(probs: Tensor) -> Tensor:  # per image: mean IoU of the foreground classes
            return iou(masks_from_probs(probs), truth, include_background=self.classes == 1).reshape(n, -1).mean(1)

        scores = {f"val/iou_{mode}": score(p) for mode, p in heads_and_ensemble(heads, self.heads).items()}
        if self._subsets:  # every subset of heads the accurate mode may choose (the plain mean is one of them)
            probs = [ensemble([h]) for h in heads]
            for subset in self._subsets:
                picked = [probs[self.heads.index(j)] for j in subset]
                scores[_subset_key(subset)] = score(torch.stack(picked).mean(0))
        # losses are batch means: weighted by the batch size, as Lightning's epoch mean does
        sums = {k: v.sum() for k, v in scores.items()}
        sums["val/loss"] = total * n
        sums |= {f"val/loss_head{j}": v * n for j, v in zip(self.heads, per_head, strict=True)}
        sums["count"] = torch.tensor(float(n), device=image.device)
        for k, v in sums.items():
            v = v.detach().to(torch.float32 if v.device.type == "mps" else torch.float64)  # MPS has no float64
            self._val_sums[k] = self._val_sums.get(k, 0) + v

    def on_validation_epoch_end(self) -> None:
        """Exact means over the whole validation set: every rank's sums and counts added, then divided.

        Each rank validates a disjoint part (no image repeated, see the data module), so the reduced mean is
        the single-process mean; one all-reduce per epoch instead of one per logged value and step.
        """
        if not self._val_sums:
            return
        names = sorted(self._val_sums)
        stacked = torch.stack([torch.as_tensor(self._val_sums[k]) for k in names])
        if self.trainer.world_size > 1:
            stacked = self.trainer.strategy.reduce(stacked, reduce_op="sum")
        total = dict(zip(names, stacked, strict=True))
        count = total.pop("count")
        means = {k: float(v / count) for k, v in total.items()}
        subsets = {s: means.pop(_subset_key(s)) for s in self._subsets if _subset_key(s) in means}
        if subsets:  # ties go to more heads: the plain mean unless dropping a head helps
            self.ensemble_heads = list(max(subsets, key=lambda s: (subsets[s], len(s))))
            means["val/iou_chosen"] = subsets[tuple(self.ensemble_heads)]
        # the score that picks the best checkpoint: the ensemble prediction runs by default (the chosen heads),
        # else the only head; the paper's plain mean stays logged as val/iou_ensemble
        means["val/iou"] = means.get("val/iou_chosen", means[f"val/iou_head{self.heads[-1]}"])
        self.validation_iou = {k.removeprefix("val/iou_"): v for k, v in means.items() if k.startswith("val/iou_")}
        for k, v in means.items():
            self.log(k, torch.tensor(v), prog_bar=k == "val/iou", sync_dist=False, rank_zero_only=False)

    def on_fit_start(self) -> None:
        if self.device.type == "cuda" and self.model.spatial_dims == 2:  # tensor cores read NHWC without transposes
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        self._epoch_start, self._seen = time.perf_counter(), 0
        self._train_end = self._epoch_start

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._train_end = time.perf_counter()  # the rate counts training steps, not the validation after them
        if self.hparams.get("compile") and len(self._step_seconds) < 2:
            self._step_seconds.append(self._train_end - self._step_start)
            if len(self._step_seconds) == 2 and self.trainer.is_global_zero:
                first, second = self._step_seconds
                log.info(
                    "torch.compile: first step %.1f s, second %.2f s: compiling took about %.0f s",
                    first,
                    second,
                    first - second,
                )

    def on_train_epoch_end(self) -> None:
        """One line per epoch (after its validation): loss, validation IoU, images/s, time left of the budget."""
        trainer = self.trainer
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        seconds = max(self._train_end - self._epoch_start, 1e-9)
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if "train/loss" in metrics:
            parts.append(f"loss {float(metrics['train/loss']):.4f}")
        if "val/iou" in metrics:
            parts.append(f"val IoU {float(metrics['val/iou']):.4f}")
            if len(self.heads) > 1:  # the score is the chosen heads' mean; the paper's plain mean beside it
                plain = float(metrics.get("val/iou_ensemble", float("nan")))
                parts.append(f"(heads {','.join(map(str, self.ensemble_heads))}; plain mean {plain:.4f})")
        parts.append(f"{self._seen / seconds:.1f} patches/s")
        budget = next((c for c in trainer.callbacks if isinstance(c, WallClockBudget)), None)
        if budget is not None:
            parts.append(f"{max(budget.left(), 0.0) / 60:.1f} min of the budget left")
        log.info("  ".join(parts))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a model header, so that unetpp.load reads the model without knowing Lightning's layout; with the
        # preprocessing that prediction repeats (read by unetpp.inference.batch.saved_preprocessing)
        add_model_header(checkpoint, self.model.config)
        if self.hparams.get("preprocessing") is not None:
            checkpoint[HEADER_KEY]["preprocessing"] = dict(self.hparams.preprocessing)
        if len(self.heads) > 1:
            checkpoint[HEADER_KEY][ENSEMBLE_HEADS] = list(self.ensemble_heads)
        if self.validation_iou:  # the scores this checkpoint was judged by: `prune --auto` reads them
            checkpoint[HEADER_KEY][VALIDATION_IOU] = dict(self.validation_iou)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        chosen = checkpoint.get(HEADER_KEY, {}).get(ENSEMBLE_HEADS)
        if chosen and set(chosen) <= set(self.heads):
            self.ensemble_heads = list(chosen)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # a pretrained backbone may train at a lower rate: its group carries its own "lr"
        groups = self.model.parameter_groups(self.hparams.encoder_lr_scale, lr=self.hparams.lr)
        # fused: one kernel for all parameters instead of ~10 passes per tensor (0.4x the optimizer time on CPU)
        fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"]) or None
        optimizer = torch.optim.Adam(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=fused)
        schedule = self.hparams.get("schedule", "paper")
        if schedule == "paper":
            return optimizer
        shape = lr_factor(schedule, self.hparams.warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: shape(self._progress()))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _progress(self) -> float:
        """Share of the run done (0..1): of the time budget when there is one, of the epochs' steps otherwise.

        Under a time budget every rank follows the least advanced one, so that all ranks take the same step size.
        """
        trainer = self._trainer
        if trainer is None:
            return 0.0
        total = trainer.estimated_stepping_batches
        done = trainer.global_step / total if math.isfinite(total) and total > 0 else 0.0
        budget = next((c for c in trainer.callbacks if isinstance(c, WallClockBudget)), None)
        if budget is None or not budget.train_start:
            return min(done, 1.0)
        by_time = budget.progress()
        if trainer.world_size > 1:
            by_time = float(trainer.strategy.reduce(torch.tensor(by_time, device=self.device), reduce_op="min"))
        return min(max(done, by_time), 1.0)


def lr_factor(schedule: str, warmup: float):
    """The learning rate as a share of its peak, given the share of the run done."""

    def factor(progress: float) -> float:
        if warmup > 0 and progress < warmup:
            return 0.1 + 0.9 * progress / warmup
        rest = (progress - warmup) / (1.0 - warmup)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * rest))
        if schedule == "poly":
            return (1.0 - rest) ** 0.9
        return 1.0 - rest

    return factor


def head_subsets(heads: list[int]) -> list[tuple[int, ...]]:
    """The subsets of heads the accurate mode may average: all of them for up to 5 heads (31), else none."""
    if not 1 < len(heads) <= 5:
        return []
    return [s for r in range(1, len(heads) + 1) for s in itertools.combinations(heads, r)]


def _subset_key(subset: tuple[int, ...]) -> str:
    return "subset/" + "-".join(map(str, subset))
