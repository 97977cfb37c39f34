"""`--minutes` as the user's wall clock, spent on training: validation measured, bounded and scheduled.

The budget counts from the command's start (reading the data, the last validation and the last
checkpoint included). What it guards against is a budget that does not train: a first batch slowed
by warm-up taken as the step time, or a validation of every whole image guessed from a training
batch, once reserved 400-1500 s of a 6-minute run, which then stopped after one step. So:

- **Step time is steady-state**: the median of recent training steps, the first ``WARMUP_STEPS``
  of the run and the first step of each epoch (loader start-up) left out.
- **Validation is measured before it runs**: on the first training batch one validation image of
  median size goes through the module's own ``validation_step`` (twice: the first is warm-up), and
  the cost of a pass is that time scaled by the validation images' sizes. The validation set is cut
  to a fixed, evenly spaced subset whose pass costs at most ``PASS_SHARE`` of the budget (at least
  ``MIN_VAL_IMAGES`` images), so every validation scores the same images.
- **Validating is scheduled, never a reason to stop**: all validations together get at most
  ``VAL_SHARE`` of the budget, and less where the set-up (reading the data), the epoch boundaries and
  the end already take time, so that training keeps ``TRAINING_SHARE`` of the budget; the validations
  that fit are spread evenly over the run, and one is always kept for the end (the best checkpoint and
  the chosen ensemble come from it).
- **Stopping early** happens only when the next step, the final validation and the checkpoints
  would not fit in the time left.
- **What runs after training** (the flips check of :mod:`unetpp.engine.tta`: ``check_passes`` forward
  passes over each validation image) is kept in the end's reserve, at most ``CHECK_SHARE`` of the budget.
- **The end fits what the set-up left**: the last validation (with its margin) and the check share what
  ``TRAINING_SHARE`` leaves after the set-up; where reading the data took most of it (DSB 2018 at 6 minutes:
  28-48 s of 360), the validation subset shrinks (to ``MIN_VAL_IMAGES`` at the least) and the check gets
  what is left of it, down to none, rather than training falling under the promised 85 %.
  A forward pass is timed on the probe's image too, and kept apart from the measured validation passes:
  a validation step also computes the loss and scores every subset of heads, and a measured pass adds
  the loader and Lightning's loop, so a pass costs about 2.3x the forwards in 3D, and a reserve counted
  in validation passes left the hippocampus idle for half a minute at 15 minutes.

Under DDP every rank decides at the same hooks and the decisions are reduced (any rank out of time
stops all; the smallest validation subset holds for all), so no rank goes on alone into a
collective that its peers never join. Without ``--minutes`` nothing here runs: epochs and
``train.val_every`` decide.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from ..utils.padding import pad_to_multiple

log = logging.getLogger(__name__)

MARGIN_S = 2.0  # process exit, the last log lines
LAST_PASS_MARGIN = 1.25  # the last validation (and its checkpoints) kept at this multiple of their measured time
WARMUP_STEPS = 3  # the first steps of a run (allocation, oneDNN kernel choice) are not the step time
VAL_SHARE = 0.10  # at most this share of the budget validating, all validations together
TRAINING_SHARE = 0.88  # mid-run validations are dropped before training falls under this share (85% promised)
PASS_SHARE = 0.025  # one validation pass: its subset is cut to cost at most this share
MIN_VAL_IMAGES = 4  # a subset never smaller than this (or the whole set, when smaller)
CHECK_SHARE = 0.04  # the check after training: the time kept for it (the check stops when that is spent)
NEVER = 10**9  # check_val_every_n_epoch for an epoch that does not validate


class WallClockBudget(Callback):
    """Train until `minutes` after `started` (``time.monotonic()``), validation and saving included."""

    def __init__(self, minutes: float, started: float, check_passes: int = 0) -> None:
        self.total_s = 60.0 * minutes
        self.check_passes = check_passes  # validation passes' worth of work after training (the flips check)
        self.deadline = started + self.total_s
        self.steps: deque[float] = deque(maxlen=25)  # steady training step durations
        self.val_s: float | None = None  # one validation pass: measured, else the probe's estimate
        self.forward_pass_s = 0.0  # the model's forward alone over the validation subset (the probe's estimate)
        self.check_room = float("inf")  # what the set-up left the check (set by the probe)
        self.gap_s = 0.0  # epoch boundary besides validation: checkpoints, loader start-up (measured)
        self.gaps_spent = 0.0  # all the epoch boundaries crossed so far (validation excluded)
        self.val_spent = 0.0
        self.trained_s = 0.0  # the training loop's time: steps and loading their batches, warm-up included
        self._loop_mark = 0.0
        self.validations = 0
        self.train_start = 0.0
        self.last_val_end = 0.0
        self.stopped_early = False
        self._batch_start = 0.0
        self._train_end = 0.0  # end of the last training batch
        self._val_start = 0.0
        self._epoch_val_s = 0.0
        self._batches_seen = 0
        self._first_of_epoch = True

    # ------------------------------------------------------------------ what is left and what it costs
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def step_s(self) -> float:
        """Median of the recent steady steps; 0 until the warm-up is over."""
        return statistics.median(self.steps) if self.steps else 0.0

    def final_reserve(self) -> float:
        """Seconds kept for the end: the last validation, the checkpoints after it and the check after training."""
        return LAST_PASS_MARGIN * ((self.val_s or 0.0) + self.gap_s) + self.check_reserve() + MARGIN_S

    def check_reserve(self) -> float:
        """Seconds kept for the check after training: its forward passes over as many images as a validation pass
        scores, within the share (the check takes validation images in a random order until that time is spent)."""
        return min(self._check_s(self.forward_pass_s), self.check_room)

    def _check_s(self, forward_pass_s: float) -> float:
        """The check's forward passes over a subset whose forward takes `forward_pass_s`, within its share."""
        return min(self.check_passes * forward_pass_s, CHECK_SHARE * self.total_s)

    def setup_s(self) -> float:
        """Seconds from the command's start to the first training step (reading the data, the plan's timing)."""
        return self.train_start - (self.deadline - self.total_s)

    def end_room(self) -> float:
        """Seconds the end (the last validation with its margin, and the check) may take so that training keeps
        ``TRAINING_SHARE`` of the budget after the set-up."""
        return (1.0 - TRAINING_SHARE) * self.total_s - self.setup_s() - MARGIN_S

    def progress(self) -> float:
        """Share of the training time used (0..1): what a schedule that lands at the deadline follows."""
        span = self.deadline - self.final_reserve() - self.train_start
        return min(max((time.monotonic() - self.train_start) / max(span, 1e-9), 0.0), 1.0)

    def summary(self) -> dict[str, float]:
        """Where the budget went: for the last log line and the benchmarks."""
        used = max(time.monotonic() - (self.deadline - self.total_s), 1e-9)
        return {
            "budget_s": self.total_s,
            "used_s": used,
            "setup_s": self.setup_s(),
            "boundaries_s": self.gaps_spent,
            "training_s": self.trained_s,
            "training_share": self.trained_s / self.total_s,
            "validations": float(self.validations),
            "validating_s": self.val_spent,
            "validating_share": self.val_spent / self.total_s,
            "step_s": self.step_s(),
        }

    def state_dict(self) -> dict[str, Any]:  # kept in checkpoints: the benchmarks read where the time went
        return self.summary()

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:  # each rank counts from its own start; the least time left holds for all
            left = torch.tensor(self.left(), dtype=torch.float64, device=trainer.strategy.root_device)
            self.deadline = time.monotonic() + float(trainer.strategy.reduce(left, reduce_op="min"))
        self.train_start = self.last_val_end = time.monotonic()
        if self.left() <= 0:
            trainer.should_stop = True  # the data took the whole budget: stop after one batch, still saved
            trainer.check_val_every_n_epoch = 1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_of_epoch = True
        self._epoch_val_s = 0.0
        self._loop_mark = time.monotonic()
        trainer.check_val_every_n_epoch = 1 if self._validate_this_epoch(trainer) else NEVER

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        now = time.monotonic()
        if self._train_end and self._first_of_epoch:  # the boundary just crossed, validation excluded
            gap = now - self._train_end - self._epoch_val_s
            self.gap_s = max(self.gap_s, gap)
            self.gaps_spent += gap
        self._batch_start = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        self._batches_seen += 1
        self.trained_s += now - self._loop_mark
        if self._batches_seen > WARMUP_STEPS and not self._first_of_epoch:
            self.steps.append(now - self._batch_start)
        if self._batches_seen == 1 and self.val_s is None:
            self._probe_validation(trainer, pl_module)
        self._first_of_epoch = False
        self._train_end = self._loop_mark = time.monotonic()  # the probe, if it ran, is not training
        last_of_epoch = batch_idx + 1 == trainer.num_training_batches
        # decided at the epoch's last batch, where stopping still runs the final validation (after it, it would not)
        boundary = self.gap_s if last_of_epoch else 0.0
        self._decide(trainer, self.left() < boundary + self.step_s() + self.final_reserve())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.monotonic()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.monotonic()
        took = now - self._val_start
        self.val_s = took if self.validations == 0 else max(took, 0.8 * (self.val_s or took))
        self.val_spent += took
        self._epoch_val_s += took
        self.validations += 1
        self.last_val_end = now

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After this epoch's validation; the next epoch pays its boundary (checkpoints, loader start-up) first.
        self._decide(trainer, self.left() < self.gap_s + self.step_s() + self.final_reserve())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            s = self.summary()
            log.info(
                "budget: %.0f of %.0f s used; set-up %.0f s; training %.0f s (%.1f%%); %d validation(s) took %.0f s "
                "(%.1f%%); epoch boundaries %.0f s; steady step %.3f s",
                s["used_s"],
                s["budget_s"],
                s["setup_s"],
                s["training_s"],
                100 * s["training_share"],
                self.validations,
                s["validating_s"],
                100 * s["validating_share"],
                s["boundaries_s"],
                s["step_s"],
            )

    # ------------------------------------------------------------------ decisions
    def _decide(self, trainer: L.Trainer, out_of_time: bool) -> None:
        """Stop when this rank or any other is out of time (a collective: every rank calls it at the same hook)."""
        if trainer.world_size > 1:
            out_of_time = trainer.strategy.reduce_boolean_decision(out_of_time, all=False)
        if out_of_time:
            trainer.should_stop = True
            trainer.check_val_every_n_epoch = 1  # the final validation always runs
            self.stopped_early = True

    def _validate_this_epoch(self, trainer: L.Trainer) -> bool:
        """Spread the validations the share allows evenly over the run; the last epoch always validates."""
        if trainer.current_epoch + 1 >= (trainer.max_epochs or NEVER) or self.left() <= 0:
            return True
        val_s = self.val_s or 0.0
        epoch_s = self.step_s() * trainer.num_training_batches if trainer.num_training_batches != float("inf") else 0
        allowance = self.validation_allowance(epoch_s)
        if val_s <= 0 or allowance < val_s:
            return False
        affordable = int(allowance // val_s)
        spacing = (self.left() - self.final_reserve()) / (affordable + 1)
        return time.monotonic() + epoch_s - self.last_val_end >= spacing

    def validation_allowance(self, epoch_s: float) -> float:
        """Seconds the validations still to come may take, the final one (kept for the end) left out.

        At most ``VAL_SHARE`` of the budget in all; less where the set-up, the epoch boundaries (those past and
        those ahead, at the longest measured) and the end's reserve would leave training under ``TRAINING_SHARE``.
        """
        val_s = self.val_s or 0.0
        by_share = VAL_SHARE * self.total_s - self.val_spent - val_s
        ahead = max(self.left() - self.final_reserve(), 0.0)
        boundaries_ahead = ahead / epoch_s if epoch_s > 0 else 0.0
        others = self.setup_s() + self.gaps_spent + self.gap_s * boundaries_ahead + self.final_reserve()
        by_floor = (1.0 - TRAINING_SHARE) * self.total_s - others - self.val_spent
        return min(by_share, by_floor)

    def validation_images(self, sizes: list[int], per_voxel: float, forward_per_voxel: float) -> int:
        """How many evenly spaced validation images (of `sizes` voxels) to keep: a pass within ``PASS_SHARE``, and the
        end (the last pass with its margin, and the check) within what the set-up left (:meth:`end_room`)."""
        room = self.end_room()

        def fits(voxels: int) -> bool:
            val = per_voxel * voxels
            return (
                val <= PASS_SHARE * self.total_s
                and LAST_PASS_MARGIN * val + self._check_s(forward_per_voxel * voxels) <= room
            )

        return _evenly_spaced(len(sizes), sizes, fits)

    def set_validation(self, voxels: int, per_voxel: float, forward_per_voxel: float) -> None:
        """The chosen subset's costs: a validation pass, the forwards the check repeats, what the check may take."""
        self.val_s = per_voxel * voxels
        self.forward_pass_s = forward_per_voxel * voxels
        self.check_room = max(self.end_room() - LAST_PASS_MARGIN * self.val_s, 0.0)

    def _probe_validation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Time one median-size validation image through ``validation_step``; cut the set to what the share allows."""
        data = trainer.datamodule
        if getattr(data, "val_set", None) is None or not hasattr(data, "limit_validation"):
            return
        sizes = data.validation_sizes()
        order = sorted(range(len(sizes)), key=sizes.__getitem__)
        median = order[len(order) // 2]
        seconds, forward_s = _time_validation_step(trainer, pl_module, data.val_set[median])
        per_voxel = 1.1 * seconds / max(sizes[median], 1)
        forward_per_voxel = 1.1 * forward_s / max(sizes[median], 1)
        keep = self.validation_images(sizes, per_voxel, forward_per_voxel)
        if trainer.world_size > 1:
            keep = int(trainer.strategy.reduce(torch.tensor(float(keep)), reduce_op="min"))
        chosen = data.limit_validation(keep)
        self.set_validation(sum(sizes[k] for k in chosen), per_voxel, forward_per_voxel)
        if trainer.is_global_zero:
            subset = f"{len(chosen)} of {len(sizes)} images" if len(chosen) < len(sizes) else f"all {len(sizes)} images"
            log.info(
                "validation: %s, about %.1f s a pass, the model's forward alone %.1f s (measured on one image)",
                subset,
                self.val_s,
                self.forward_pass_s,
            )


def _evenly_spaced(n: int, sizes: list[int], fits: Callable[[int], bool]) -> int:
    """How many of `n` evenly spaced validation images `fits` their voxels (at least MIN_VAL_IMAGES or all)."""
    for keep in range(n, 0, -1):
        if keep <= MIN_VAL_IMAGES or fits(sum(sizes[k] for k in evenly_spaced(n, keep))):
            return max(keep, min(n, MIN_VAL_IMAGES))
    return min(n, MIN_VAL_IMAGES)


def evenly_spaced(n: int, keep: int) -> list[int]:
    """`keep` indices spread evenly over range(n), first and last included: a fixed, representative subset."""
    if keep >= n:
        return list(range(n))
    if keep <= 1:
        return [n // 2][:keep]
    return sorted({round(k * (n - 1) / (keep - 1)) for k in range(keep)})


def _time_validation_step(
    trainer: L.Trainer, pl_module: L.LightningModule, sample: dict[str, Any]
) -> tuple[float, float]:
    """Seconds of one ``validation_step`` on one image, as validation runs it (eval, no grad, precision), and of
    the model's forward pass alone on the same image (what prediction and the flips check cost a pass)."""
    batch = {
        k: (v.unsqueeze(0).to(pl_module.device) if isinstance(v, torch.Tensor) else v)
        for k, v in sample.items()
        if k in ("image", "mask")
    }
    was_training = pl_module.training
    pl_module.eval()
    seconds = forward_s = 0.0
    padded, _ = pad_to_multiple(batch["image"], 2**pl_module.model.depth)
    try:
        with torch.no_grad(), trainer.precision_plugin.val_step_context():
            for _ in range(2):  # the first pays for warm-up in eval mode
                pl_module.on_validation_epoch_start()
                start = time.monotonic()
                pl_module.validation_step(batch, 0)
                seconds = time.monotonic() - start
            start = time.monotonic()
            pl_module.model(padded)
            forward_s = time.monotonic() - start
    finally:
        pl_module.on_validation_epoch_start()  # forget the probe's sums
        pl_module.train(was_training)
    return seconds, forward_s


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
