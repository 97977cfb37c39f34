"""What prediction runs, chosen once on validation at the end of training and recorded in the best checkpoint:
flips, and the smallest component kept per class.

Averaging over flips (test-time augmentation) costs 4 passes in 2D and 8 in 3D. What it buys depends on the
data: +0.6 to +1.0 Dice on the hippocampus, nothing on ISBI (``benchmarks/RESULTS.md``, issue 19). So each run
measures it on its own validation images with its best model, as the accurate mode's heads are chosen there,
and records the choice; ``predict`` and ``evaluate`` follow it unless told (``--tta`` / ``--no-tta``). The same
predictions price every minimum component size (:mod:`unetpp.engine.postprocess`) for the prediction chosen,
one pass or flips (``--postprocess`` / ``--no-postprocess``).

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

from ..inference.components import mask_of
from ..inference.flips import probabilities_per_flip
from ..models import NestedUNet
from ..models.checkpoint import HEADER_KEY, load, torch_save
from ..models.provenance import POSTPROCESS, TTA, recorded_ensemble_heads
from .postprocess import MIN_IMAGES, PostprocessChoice, choose_min_sizes, iou_per_min_size, object_sizes

log = logging.getLogger(__name__)

TTA_MARGIN = 0.002  # mean validation IoU (0..1) that flips must add to be worth 4-8x the prediction time


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


@dataclass(frozen=True)
class ImageCheck:
    """One validation image's scores: IoU per class and minimum size (:func:`iou_per_min_size`) of the default
    prediction in one pass and averaged over flips, and the sizes of its true objects per class."""

    one_pass: np.ndarray
    flipped: np.ndarray
    objects: list[list[int]]

    @property
    def iou(self) -> tuple[float, float]:
        """Mean IoU over the classes, nothing removed, in one pass and over flips (as ``unetpp evaluate``)."""
        return float(self.one_pass[:, 0].mean()), float(self.flipped[:, 0].mean())


@torch.inference_mode()
def check_image(model: NestedUNet, sample: dict, ensemble_heads: Sequence[int] | None = None) -> ImageCheck:
    """Score the default prediction of one sample in one pass and averaged over flips (the identity pass is one of
    the flips, so this costs the flips' passes only), in eval mode, as ``unetpp evaluate`` scores."""
    model.eval()
    image = sample["image"][None].to(next(model.parameters()).device)
    truth = sample["mask"][0].cpu().numpy()
    passes = [p[prediction_mode(list(p))] for p in probabilities_per_flip(model, image, ensemble_heads)]

    one, flipped = (mask_of(p[0].float().cpu().numpy()) for p in (passes[0], torch.stack(passes).mean(0)))
    return ImageCheck(
        iou_per_min_size(one, truth, model.classes),
        iou_per_min_size(flipped, truth, model.classes),
        object_sizes(truth, model.classes),
    )


@dataclass(frozen=True)
class PredictionChoice:
    tta: TtaChoice
    postprocess: PostprocessChoice | None


def measure_prediction(
    model: NestedUNet,
    samples: Sequence[dict],
    ensemble_heads: Sequence[int] | None,
    *,
    seconds: float | None = None,
    bf16: bool = False,
    seed: int = 0,
) -> PredictionChoice | None:
    """Flips and minimum component sizes measured on `samples` within `seconds` (None: all images).

    Returns None when fewer than ``MIN_IMAGES`` images fit the time.
    """
    start = time.monotonic()
    order = np.random.default_rng(seed).permutation(len(samples))
    checks: list[ImageCheck] = []
    per_image = 0.0
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    for k in order:
        if seconds is not None and time.monotonic() - start + per_image > seconds:
            break
        with autocast:
            checks.append(check_image(model, samples[int(k)], ensemble_heads))
        per_image = (time.monotonic() - start) / len(checks)
    if len(checks) < MIN_IMAGES:
        return None
    iou_one, iou_tta = (float(v) for v in np.mean([c.iou for c in checks], axis=0))
    use = iou_tta - iou_one >= TTA_MARGIN
    tables = [c.flipped if use else c.one_pass for c in checks]
    sizes = [sum((c.objects[k] for c in checks), []) for k in range(len(checks[0].objects))]
    tta = TtaChoice(use, iou_one, iou_tta, len(checks), time.monotonic() - start)
    return PredictionChoice(tta, choose_min_sizes(tables, sizes))


def choose_prediction(
    best: Path, samples: Sequence[dict], *, seconds: float | None, bf16: bool
) -> PredictionChoice | None:
    """Measure flips and component sizes with the model of `best` (a training checkpoint) and record the choice
    in it (atomically)."""
    choice = measure_prediction(load(best), samples, recorded_ensemble_heads(best), seconds=seconds, bf16=bf16)
    if choice is None:
        log.info("flips: no time left to check them on validation; prediction runs one pass (--tta: flips)")
        return None
    ckpt: dict[str, Any] = torch.load(best, map_location="cpu", weights_only=True)  # rewritten with the choice
    header = ckpt.setdefault(HEADER_KEY, {})
    header[TTA] = asdict(choice.tta)
    if choice.postprocess is not None:
        header[POSTPROCESS] = {**asdict(choice.postprocess), "min_size": list(choice.postprocess.min_size)}  # as JSON
    torch_save(ckpt, best, overwrite=True)
    tta = choice.tta
    verdict = "prediction averages over flips (--no-tta: one pass)" if tta.use else "prediction runs one pass"
    log.info(
        "flips: validation IoU %.4f in one pass, %.4f over flips (%d images, %.0f s): %s",
        tta.iou,
        tta.iou_tta,
        tta.images,
        tta.seconds,
        verdict,
    )
    pp = choice.postprocess
    if pp is not None and any(size > 1 for size in pp.min_size):
        log.info(
            "small components: validation IoU %.4f -> %.4f when prediction removes components under %s voxels "
            "(per class; --no-postprocess: keep them)",
            pp.iou,
            pp.iou_after,
            list(pp.min_size),
        )
    elif pp is not None:
        log.info("small components: removing them would not help on validation; prediction keeps them")
    return choice
