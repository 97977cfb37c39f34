"""Flips at prediction, chosen once on validation at the end of training and recorded in the best checkpoint.

Averaging over flips (test-time augmentation) costs 4 passes in 2D and 8 in 3D. What it buys depends on the
data: +0.6 to +1.0 Dice on the hippocampus, nothing on ISBI (``benchmarks/RESULTS.md``, issue 19). So each run
measures it on its own validation images with its best model, as the accurate mode's heads are chosen there,
and records the choice; ``predict`` and ``evaluate`` follow it unless told (``--tta`` / ``--no-tta``).

The images are taken in a seeded random order until the time given runs out (under ``--minutes`` the budget
keeps that time for it), so a slow machine checks fewer images rather than overrunning the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.flips import probabilities_per_flip
from ..metrics import iou, masks_from_labels, masks_from_probs
from ..models import NestedUNet
from ..models.checkpoint import HEADER_KEY, load, torch_save
from ..models.provenance import TTA, recorded_ensemble_heads

log = logging.getLogger(__name__)

TTA_MARGIN = 0.002  # mean validation IoU (0..1) that flips must add to be worth 4-8x the prediction time
MIN_IMAGES = 2  # fewer images checked in the time given: no choice is recorded (prediction runs one pass)


@dataclass(frozen=True)
class TtaChoice:
    """The check's outcome: `use` flips when they add at least ``TTA_MARGIN`` to the mean IoU of `images`."""

    use: bool
    iou: float  # the prediction's mode (the chosen heads), one pass
    iou_tta: float  # the same, averaged over flips
    images: int
    seconds: float


def prediction_mode(modes: Sequence[str]) -> str:
    """The mode ``predict`` runs by default: the chosen heads, else the plain mean, else the only head."""
    return next((m for m in ("chosen", "ensemble") if m in modes), modes[0])


@torch.inference_mode()
def iou_one_pass_and_flipped(
    model: NestedUNet, sample: dict, ensemble_heads: Sequence[int] | None = None
) -> tuple[float, float]:
    """IoU of the default prediction of one sample, in one pass and averaged over flips (the identity pass is one
    of the flips, so this costs the flips' passes only). Scored as ``unetpp evaluate`` scores (in eval mode)."""
    model.eval()
    image = sample["image"][None].to(next(model.parameters()).device)
    truth = masks_from_labels(sample["mask"][None].to(image.device), model.classes)
    passes = [p[prediction_mode(list(p))] for p in probabilities_per_flip(model, image, ensemble_heads)]

    def score(probs: torch.Tensor) -> float:
        return float(iou(masks_from_probs(probs), truth, include_background=model.classes == 1).mean())

    return score(passes[0]), score(torch.stack(passes).mean(0))


def measure_tta(
    model: NestedUNet,
    samples: Sequence[dict],
    ensemble_heads: Sequence[int] | None,
    *,
    seconds: float | None = None,
    bf16: bool = False,
    seed: int = 0,
) -> TtaChoice | None:
    """IoU of the default prediction with and without flips on `samples`, within `seconds` (None: all images).

    Returns None when fewer than ``MIN_IMAGES`` images fit the time.
    """
    start = time.monotonic()
    order = np.random.default_rng(seed).permutation(len(samples))
    scores: list[tuple[float, float]] = []
    per_image = 0.0
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    for k in order:
        if seconds is not None and time.monotonic() - start + per_image > seconds:
            break
        with autocast:
            scores.append(iou_one_pass_and_flipped(model, samples[int(k)], ensemble_heads))
        per_image = (time.monotonic() - start) / len(scores)
    if len(scores) < MIN_IMAGES:
        return None
    iou_one, iou_tta = (float(v) for v in np.mean(scores, axis=0))
    return TtaChoice(iou_tta - iou_one >= TTA_MARGIN, iou_one, iou_tta, len(scores), time.monotonic() - start)


def choose_tta(best: Path, samples: Sequence[dict], *, seconds: float | None, bf16: bool) -> TtaChoice | None:
    """Measure flips with the model of `best` (a training checkpoint) and record the choice in it (atomically)."""
    choice = measure_tta(load(best), samples, recorded_ensemble_heads(best), seconds=seconds, bf16=bf16)
    if choice is None:
        log.info("flips: no time left to check them on validation; prediction runs one pass (--tta: flips)")
        return None
    ckpt: dict[str, Any] = torch.load(best, map_location="cpu", weights_only=True)  # rewritten with the choice
    ckpt.setdefault(HEADER_KEY, {})[TTA] = asdict(choice)
    torch_save(ckpt, best, overwrite=True)
    verdict = "prediction averages over flips (--no-tta: one pass)" if choice.use else "prediction runs one pass"
    log.info(
        "flips: validation IoU %.4f in one pass, %.4f over flips (%d images, %.0f s): %s",
        choice.iou,
        choice.iou_tta,
        choice.images,
        choice.seconds,
        verdict,
    )
    return choice
