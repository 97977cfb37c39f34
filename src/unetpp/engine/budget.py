"""`--minutes` as the user's wall clock: counted from the command's start, validation and saving included.

Lightning's ``max_time`` counts training only; reading the data before and the last validation and
checkpoint after came on top (a 6-minute budget ran 14). :class:`WallClockBudget` starts from the
command's start time, measures how long the end of an epoch takes (validation + checkpoints) and
stops training when the time left would not cover one more batch and that end; the progress bar
shows the time left. Under DDP every rank decides at the same hooks and the decisions are reduced
(any rank out of time stops all), so no rank goes on alone into a gradient all-reduce that its peers
never join.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

MARGIN_S = 2.0  # process exit, the last log lines


class WallClockBudget(Callback):
    """Stop training so that the whole command ends within `minutes` of `started` (``time.monotonic()``)."""

    def __init__(self, minutes: float, started: float) -> None:
        self.deadline = started + 60.0 * minutes
        self.batch_s = 0.0  # slowest recent training batch
        self.end_s: float | None = None  # measured: end of the last train batch -> end of epoch (val + checkpoints)
        self._batch_start = 0.0
        self._train_end = 0.0
        self.stopped_early = False

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def reserve(self, trainer: L.Trainer) -> float:
        """Seconds to keep for the end of the epoch: measured once seen, else validation ~ its batches x a batch."""
        if self.end_s is not None:
            return 1.25 * self.end_s + MARGIN_S
        val_batches = sum(int(n) for n in trainer.num_val_batches) if trainer.num_val_batches else 0
        return (val_batches + 2) * max(self.batch_s, 0.05) + MARGIN_S

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._batch_start = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.monotonic()
        self.batch_s = max(0.8 * self.batch_s, now - self._batch_start)
        self._train_end = now
        self._decide(trainer, self.deadline - now < self.batch_s + self.reserve(trainer))

    def _decide(self, trainer: L.Trainer, out_of_time: bool) -> None:
        """Stop when this rank or any other is out of time (a collective: every rank calls it at the same hook)."""
        if trainer.world_size > 1:
            out_of_time = trainer.strategy.reduce_boolean_decision(out_of_time, all=False)
        if out_of_time:
            trainer.should_stop = True
            self.stopped_early = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after validation and after the checkpoint callbacks of this epoch.
        if self._train_end:
            self.end_s = max(time.monotonic() - self._train_end, self.end_s or 0.0)
        self._decide(trainer, self.deadline - time.monotonic() < self.batch_s + self.reserve(trainer))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:  # each rank counts from its own start; the least time left holds for all
            left = torch.tensor(self.left(), dtype=torch.float64, device=trainer.strategy.root_device)
            self.deadline = time.monotonic() + float(trainer.strategy.reduce(left, reduce_op="min"))
        if self.left() <= 0:
            trainer.should_stop = True  # the data took the whole budget: stop after one batch, still saved


class ProgressWithTimeLeft(TQDMProgressBar):
    """Lightning's progress bar, plus the time the budget leaves (``left=4:31``)."""

    def __init__(self, budget: WallClockBudget) -> None:
        super().__init__()
        self.budget = budget

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        seconds = max(0, int(self.budget.left()))
        items["left"] = f"{seconds // 60}:{seconds % 60:02d}"
        return items
