"""Evaluation as in the paper: IoU, Dice and HD95 per image, for every head and the ensemble.

The paper reports IoU and Dice as mean ± s.d.; here every image gets a row per mode (``head{j}``
and ``ensemble``), so means, standard deviations and paired t-tests between modes or models come
from the same table (:func:`summarize`, :func:`paired_t_test`).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .files import write_text
from .metrics import dice, hd95, iou, masks_from_labels, masks_from_probs
from .models import NestedUNet, ensemble
from .padding import pad_to_multiple

METRICS = ("iou", "dice", "hd95")


@dataclass(frozen=True)
class Row:
    image: str
    mode: str
    iou: float
    dice: float
    hd95: float


@torch.inference_mode()
def probabilities_per_mode(model: NestedUNet, image: Tensor) -> dict[str, Tensor]:
    """Probabilities of every head and of the ensemble for one ``(1, C, *spatial)`` image of any size."""
    padded, crop = pad_to_multiple(image, 2**model.depth)
    heads = [h[crop] for h in model(padded)]
    probs = {f"head{j}": ensemble([h]) for j, h in zip(model.spec.heads, heads, strict=True)}
    if len(heads) > 1:
        probs["ensemble"] = ensemble(heads)
    return probs


def evaluate(
    model: NestedUNet, samples: Iterable[dict], *, with_hd95: bool = True, spacing: Sequence[float] | None = None
) -> list[Row]:
    """One row per image and mode; scores are means over the foreground classes.

    Args:
        model: any model of the family (put in eval mode here).
        samples: dicts with ``image (C, *spatial)``, ``mask (1, *spatial)`` and ``id``, as the data sets yield.
        with_hd95: also compute the 95th-percentile Hausdorff distance (slower: distance transforms).
        spacing: voxel spacing for HD95 (default 1 per axis).
    """
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for sample in samples:
        image = sample["image"][None].to(device)
        truth = masks_from_labels(sample["mask"][None].to(device), model.classes)
        fg = model.classes == 1
        for mode, probs in probabilities_per_mode(model, image).items():
            pred = masks_from_probs(probs)
            distance = hd95(pred, truth, spacing=spacing, include_background=fg).mean() if with_hd95 else math.nan
            rows.append(
                Row(
                    image=str(sample["id"]),
                    mode=mode,
                    iou=float(iou(pred, truth, include_background=fg).mean()),
                    dice=float(dice(pred, truth, include_background=fg).mean()),
                    hd95=float(distance),
                )
            )
    return rows


def summarize(rows: Sequence[Row]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and sample standard deviation of each metric per mode (HD95 over finite values only)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for mode in dict.fromkeys(r.mode for r in rows):
        out[mode] = {}
        for m in METRICS:
            values = torch.tensor([getattr(r, m) for r in rows if r.mode == mode], dtype=torch.float64)
            values = values[torch.isfinite(values)]
            sd = float(values.std()) if len(values) > 1 else math.nan
            out[mode][m] = (float(values.mean()) if len(values) else math.nan, sd)
    return out


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test (same images scored two ways), via SciPy."""
    from scipy.stats import ttest_rel

    return float(ttest_rel(a, b).pvalue)


def write_csv(rows: Sequence[Row], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Per-image rows as CSV, through the one writer (atomic; an existing file only with `overwrite`)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["image", "mode", *METRICS])
    writer.writerows([r.image, r.mode, f"{r.iou:.6f}", f"{r.dice:.6f}", f"{r.hd95:.4f}"] for r in rows)
    return write_text(path, text.getvalue(), overwrite)


def format_table(summaries: dict[str, dict[str, dict[str, tuple[float, float]]]]) -> str:
    """A Markdown table (readable on a terminal): one line per model and mode, IoU/Dice in %."""
    lines = ["| model | mode | IoU (%) | Dice (%) | HD95 |", "|---|---|---:|---:|---:|"]
    for model, modes in summaries.items():
        for mode, s in modes.items():
            (iu, iu_sd), (dc, dc_sd), (hd, hd_sd) = s["iou"], s["dice"], s["hd95"]
            lines.append(
                f"| {model} | {mode} | {100 * iu:.2f} ± {100 * iu_sd:.2f} | {100 * dc:.2f} ± {100 * dc_sd:.2f} "
                f"| {hd:.2f} ± {hd_sd:.2f} |"
            )
    return "\n".join(lines)
