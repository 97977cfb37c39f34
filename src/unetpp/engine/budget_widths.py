"""Widths a wall-clock budget can train: under ``--minutes``, a model too slow to take ``MIN_STEPS`` steps is narrowed.

At equal wall clock the number of optimizer steps decided more than the widths: on the MSD hippocampus
(3D, 2-core CPU with bf16, 15 minutes, held-out volumes; benchmarks/RESULTS.md, issue 19) UNet++ at the
paper's widths 32-256 took 261 steps of batch 8 and reached 80.7 mean Dice; at 16-128 it took 693 steps
and reached 84.9, as U-Net at 32-256 did (530 steps, 85.3). So when ``--minutes`` is given and the widths are
not, the plan times a training step of the planned model on this machine (the device, precision,
patch and batch of the run) and halves the widths while the budget buys fewer than ``MIN_STEPS`` steps,
down to a first width of ``MIN_FIRST_WIDTH``. A longer budget keeps the paper's widths.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

from ..config import RunConfig
from ..plan.record import Plan
from .budget import TRAINING_SHARE

MIN_STEPS = 400  # between the 261 steps that fell 4 Dice points short on the hippocampus and the 530-693 that did not
MIN_FIRST_WIDTH = 16  # narrower was not measured
TIMED_SHARE = 0.5  # one step is timed at this share of the batch and scaled: per-sample cost is near linear there


def steps_affordable(step_s: float, minutes: float) -> int:
    """Training steps `minutes` buy at `step_s` a step (the share the budget keeps for training)."""
    return int(TRAINING_SHARE * 60.0 * minutes / max(step_s, 1e-9))


def narrowed(widths: tuple[int, ...]) -> tuple[int, ...] | None:
    """Half the widths, or None where the first would fall under ``MIN_FIRST_WIDTH``."""
    if widths[0] // 2 < MIN_FIRST_WIDTH:
        return None
    return tuple(w // 2 for w in widths)  # the first is the narrowest: all stay >= MIN_FIRST_WIDTH


def fit_widths(
    plan: Plan, minutes: float, step_seconds: Callable[[Plan], float], replan: Callable[[tuple[int, ...]], Plan]
) -> tuple[Plan, int]:
    """The plan, narrowed (`replan` with halved widths) while `minutes` buy fewer than ``MIN_STEPS`` steps, and the
    steps its widths buy.

    `step_seconds` times one training step of a plan; the reason beside the widths gives the steps bought.
    """
    paper, step_s = plan, step_seconds(plan)
    steps = first_steps = steps_affordable(step_s, minutes)
    while steps < MIN_STEPS and (widths := narrowed(plan.widths)) is not None:
        plan = replan(widths)
        steps = steps_affordable(step_seconds(plan), minutes)
    bought = f"{minutes:g} min buy about {steps} steps here"
    if plan.widths == paper.widths:
        reason = f"{bought} (>= {MIN_STEPS})" if steps >= MIN_STEPS else f"{bought}; narrower is not planned"
    else:
        reason = f"{bought}; at widths {'x'.join(map(str, paper.widths))} only {first_steps} (< {MIN_STEPS})"
    return dataclasses.replace(plan, reasons={**plan.reasons, "widths": reason}), steps


def training_step_seconds(cfg: RunConfig, device: str) -> float:
    """Seconds of one training step of `cfg`'s model, planned patch, batch and precision on `device` (the faster
    of two steps at ``TIMED_SHARE`` of the batch after a warm-up step, scaled to the batch; at batch 2 a 2D step
    was overestimated by up to 1.4x: small batches use the cores less well)."""
    from ..models import build_model
    from ..profiling import train_step

    where = torch.device(device)
    model = build_model(**cfg.model.build_kwargs()).to(where)
    batch = max(1, round(TIMED_SHARE * cfg.data.batch_size))
    x = torch.randn(batch, cfg.model.in_channels, *(cfg.data.patch_size or ()), device=where)
    step = train_step(model, x, "bf16" if cfg.train.precision == "bf16" else "32")
    step()  # warm-up: allocation, kernel choice
    timed = []
    for _ in range(2):  # the faster of two: a step slowed by the rest of the machine is not the model's cost
        _synchronize(where)
        start = time.perf_counter()
        step()
        _synchronize(where)
        timed.append(time.perf_counter() - start)
    return min(timed) * cfg.data.batch_size / batch


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
