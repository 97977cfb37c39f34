"""Compare depths: the ensemble and every depth of one model on one image (the paper's Fig. 5 on the user's image).

Each mode is :func:`~unetpp.napari.core.segment`, so each layer equals ``unetpp predict --depth d``; the
parameters are those of the pruned model (:func:`unetpp.prune`), the latency the model's time here, and
IoU/Dice come from :mod:`unetpp.metrics` against a ground-truth label map.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from .core import Opened, Progress, Result, Source, depth_parameters, segment


@dataclass
class Row:
    """One line of the "compare depths" table (the paper's Fig. 5 on the user's image)."""

    result: Result
    parameters: int | None
    iou: float | None = None
    dice: float | None = None


def scores(labels: np.ndarray, truth: np.ndarray, classes: int, name: str = "ground truth") -> tuple[float, float]:
    """IoU and Dice of a label map against ground truth (foreground for one class, mean over classes 1..K-1).

    Raises:
        DataError: the shapes differ.
    """
    import torch

    from ..metrics import dice, iou, one_hot

    truth = np.asarray(truth)
    if truth.shape != labels.shape:
        raise DataError(f"{name}: has shape {truth.shape} but the prediction has shape {labels.shape}; choose another")
    if classes == 1:
        pred, target = torch.from_numpy(labels > 0)[None, None], torch.from_numpy(truth > 0)[None, None]
        background = True
    else:
        if truth.min(initial=0) < 0 or truth.max(initial=0) >= classes:
            raise DataError(f"{name}: holds labels outside 0..{classes - 1}, the model's classes; choose another")
        pred = one_hot(torch.from_numpy(labels.astype(np.int64))[None, None], classes)
        target = one_hot(torch.from_numpy(truth.astype(np.int64))[None, None], classes)
        background = False
    kw = {"include_background": background}
    return float(iou(pred, target, **kw).mean()), float(dice(pred, target, **kw).mean())


def compare_depths(
    opened: Opened,
    source: Source,
    *,
    threshold: float = 0.5,
    tta: bool = False,
    postprocess: bool = True,
    runtime: str = "auto",
    truth: np.ndarray | None = None,
    truth_name: str = "ground truth",
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[Row]:
    """The ensemble and every depth of one model on one image, with parameters, latency and (given truth) scores.

    Raises:
        ConfigError: a detector, which has no depths.
    """
    if opened.kind != "semantic":
        raise ConfigError(f"{opened.path}: compare depths takes a UNet++ with deep supervision, not a detector")
    modes = ["ensemble"] + ([f"select:{d}" for d in opened.heads] if len(opened.heads) > 1 else [])
    rows = []
    for k, mode in enumerate(modes):

        def step(done: int, total: int, what: str, k: int = k) -> None:
            if progress is not None:
                progress(k * total + done, len(modes) * total, what)

        settings = {"threshold": threshold, "tta": tta, "postprocess": postprocess, "runtime": runtime}
        result = segment(opened, source, mode, **settings, progress=step, cancel=cancel)
        depth = None if mode == "ensemble" else int(mode.partition(":")[2])
        row = Row(result, depth_parameters(opened, depth))
        if truth is not None:
            row.iou, row.dice = scores(result.labels, truth, opened.classes, truth_name)
        rows.append(row)
    return rows


__all__ = ["Row", "compare_depths", "scores"]
