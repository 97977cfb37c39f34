"""The smallest component worth keeping, per class, chosen on validation at the end of training.

What it buys depends on the data and on how long the model trained, so it is measured, not assumed
(``benchmarks/RESULTS.md``, issue 19): on images without objects a few false-positive pixels cost the
whole image's score, and short runs leave such specks. For each validation image the check
(:mod:`unetpp.engine.tta`) scores the prediction with every candidate minimum size at once: a component
of ``s`` voxels overlapping ``o`` true voxels leaves the intersection ``o`` and the union ``s - o``
smaller when it goes, so one labelling per class prices every candidate.

Candidates are powers of two (and the steps between) up to an eighth of the median true object of the
class on the validation images checked. The cap is measured: choosing on 2-8 DSB 2018 validation images
(what a short budget's check sees) with candidates up to half the median object lost up to 8.9 held-out
IoU points in some draws (small true nuclei removed), while with an eighth no draw lost anything; on the
large objects of ``dsb-large`` the best candidate under the cap scored within 1 point of the best overall.
A class gets the candidate with the best mean IoU when it beats keeping everything at all, else keeps
all: under the cap no margin was needed (in the same draws a margin of 0.1 IoU points only made the check
choose less often, on 2-8 images half to two thirds as often, and gain less).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..inference.components import components

MARGIN = 0.0  # mean validation IoU (0..1) a minimum size must add over keeping every component (more than)
MAX_SHARE = 0.125  # of the median true object of the class: larger candidates are not offered
CANDIDATES = np.unique(np.round(2.0 ** np.arange(1.0, 20.5, 0.5)).astype(np.int64))  # 2 .. ~1.4 M voxels
MIN_IMAGES = 2  # fewer images checked in the time given: no choice is recorded (nor flips: engine/tta.py)


@dataclass(frozen=True)
class PostprocessChoice:
    """Per foreground class, the smallest component prediction keeps (1: all), and the mean validation IoU of
    the prediction without and with it on `images` images."""

    min_size: tuple[int, ...]
    iou: float
    iou_after: float
    images: int


def iou_per_min_size(pred: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """IoU of each foreground class (rows) when components smaller than each of ``(1, *CANDIDATES)`` are removed
    from `pred` (columns); `pred` and `truth` are class-id maps of one image. Empty truth and prediction: 1."""
    rows = []
    for cls in range(1, max(classes, 2)):
        predicted, target = pred == cls, truth == cls
        found, sizes = components(predicted)
        overlap = np.bincount(found.ravel(), weights=target.ravel(), minlength=len(sizes))
        sizes, overlap = sizes[1:], overlap[1:]
        drop = sizes[None, :] < np.concatenate(([1], CANDIDATES))[:, None]  # (candidates + 1, components)
        inter = overlap.sum() - drop @ overlap
        union = target.sum() + (sizes.sum() - drop @ sizes) - inter
        rows.append(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
    return np.stack(rows)


def object_sizes(truth: np.ndarray, classes: int) -> list[list[int]]:
    """Sizes of the true objects (components) of each foreground class in one class-id map."""
    return [components(truth == cls)[1][1:].tolist() for cls in range(1, max(classes, 2))]


def choose_min_sizes(tables: Sequence[np.ndarray], sizes: Sequence[Sequence[int]]) -> PostprocessChoice | None:
    """The choice from every image's :func:`iou_per_min_size` table and the classes' true object sizes (pooled
    over the images); None with fewer than ``MIN_IMAGES`` images."""
    if len(tables) < MIN_IMAGES:
        return None
    mean = np.mean(tables, axis=0)  # (classes, candidates + 1)
    chosen, after = [], []
    for cls, scores in enumerate(mean):
        limit = MAX_SHARE * float(np.median(sizes[cls])) if len(sizes[cls]) else 0.0
        offered = np.concatenate(([True], limit >= CANDIDATES))
        best = int(np.argmax(np.where(offered, scores, -np.inf)))
        if scores[best] - scores[0] <= MARGIN:
            best = 0
        chosen.append(1 if best == 0 else int(CANDIDATES[best - 1]))
        after.append(scores[best])
    return PostprocessChoice(tuple(chosen), float(mean[:, 0].mean()), float(np.mean(after)), len(tables))
