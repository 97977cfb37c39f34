"""Evaluation as in the paper: IoU, Dice and HD95 per image, for every head and the ensemble.

The paper reports IoU and Dice as mean ± s.d.; here every image gets a row per mode (``head{j}``,
``ensemble``, the plain mean, and ``chosen``, the mean of the heads training chose on validation), so
means, standard deviations and paired t-tests between modes or models come from the same table
(:func:`summarize`; the t-tests are :mod:`unetpp.study.stats`).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..inference.flips import probabilities_per_flip
from ..metrics import dice, hd95, iou, masks_from_labels, masks_from_probs, one_hot
from ..models import NestedUNet
from ..utils.atomic import write_text
from ..utils.tables import markdown_table

METRICS = ("iou", "dice", "hd95")


@dataclass(frozen=True)
class Row:
    image: str
    mode: str
    iou: float
    dice: float
    hd95: float


@torch.inference_mode()
def probabilities_per_mode(
    model: NestedUNet, image: Tensor, ensemble_heads: Sequence[int] | None = None, tta: bool = False
) -> dict[str, Tensor]:
    """Probabilities of every head and of the ensembles for one ``(1, C, *spatial)`` image of any size.

    `tta`: each mode's probabilities averaged over the flips of every spatial axis (as ``predict --tta``
    and nnU-Net's mirroring), so that evaluation scores what such a prediction delivers.
    """
    passes = list(itertools.islice(probabilities_per_flip(model, image, ensemble_heads), None if tta else 1))
    return {mode: sum(p[mode] for p in passes) / len(passes) for mode in passes[0]}  # type: ignore[misc]


def evaluate(
    model: NestedUNet,
    samples: Iterable[dict],
    *,
    with_hd95: bool = True,
    spacing: Sequence[float] | None = None,
    per_class: bool = False,
    ensemble_heads: Sequence[int] | None = None,
    tta: bool = False,
    min_sizes: Sequence[int] | None = None,
) -> list[Row]:
    """One row per image and mode; scores are means over the foreground classes.

    Args:
        model: any model of the family (put in eval mode here).
        samples: dicts with ``image (C, *spatial)``, ``mask (1, *spatial)`` and ``id``, as the data sets yield.
        with_hd95: also compute the 95th-percentile Hausdorff distance (slower: distance transforms).
        spacing: voxel spacing for HD95 (default 1 per axis).
        per_class: for a multi-class model, also one row per foreground class, mode ``"<mode> class <c>"``.
        ensemble_heads: the heads training chose (a model file's record,
            :func:`unetpp.models.provenance.recorded_ensemble_heads`): adds mode ``"chosen"``, their mean.
        tta: score the mean over flips of every spatial axis (4 passes in 2D, 8 in 3D).
        min_sizes: per foreground class, the smallest component the ensembles' masks keep (a model file's record,
            :func:`unetpp.models.provenance.recorded_min_sizes`), as ``predict`` removes them; heads keep all.
    """
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for sample in samples:
        image = sample["image"][None].to(device)
        truth = masks_from_labels(sample["mask"][None].to(device), model.classes)
        fg = model.classes == 1
        for mode, probs in probabilities_per_mode(model, image, ensemble_heads, tta).items():
            pred = masks_from_probs(probs)
            if min_sizes is not None and not mode.startswith("head"):
                pred = _without_small_components(pred, min_sizes)
            per = hd95(pred, truth, spacing=spacing, include_background=fg)[0] if with_hd95 else None
            distance = per.mean() if per is not None else math.nan
            if per_class and not fg:
                ious, dices = (
                    iou(pred, truth, include_background=False)[0],
                    dice(pred, truth, include_background=False)[0],
                )
                for c in range(len(ious)):
                    h = float(per[c]) if per is not None else math.nan
                    rows.append(Row(str(sample["id"]), f"{mode} class {c + 1}", float(ious[c]), float(dices[c]), h))
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


def _without_small_components(pred: Tensor, min_sizes: Sequence[int]) -> Tensor:
    """Masks ``(1, C, *spatial)`` less the components smaller than `min_sizes` (per foreground class)."""
    from ..inference.components import remove_small_components

    classes = pred.shape[1]
    labels = pred[0, 0] if classes == 1 else pred[0].to(torch.uint8).argmax(0)
    kept = torch.from_numpy(remove_small_components(labels.cpu().numpy(), min_sizes)).to(pred.device)
    return kept[None, None] if classes == 1 else one_hot(kept[None, None].long(), classes)


def summarize(rows: Sequence[Row]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and sample standard deviation of each metric per mode, over the images where it is defined.

    HD95 is undefined (inf or NaN) for an image whose prediction or ground truth is empty; ``"hd95_undefined"``
    holds ``(undefined images, images)`` so that a report says how many were left out.
    """
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for mode in dict.fromkeys(r.mode for r in rows):
        out[mode] = {}
        for m in METRICS:
            values = torch.tensor([getattr(r, m) for r in rows if r.mode == mode], dtype=torch.float64)
            defined = values[torch.isfinite(values)]
            sd = float(defined.std()) if len(defined) > 1 else math.nan
            out[mode][m] = (float(defined.mean()) if len(defined) else math.nan, sd)
            if m == "hd95":
                out[mode]["hd95_undefined"] = (float(len(values) - len(defined)), float(len(values)))
    return out


def write_csv(rows: Sequence[Row], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Per-image rows as CSV, through the one writer (atomic; an existing file only with `overwrite`)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["image", "mode", *METRICS])
    writer.writerows([r.image, r.mode, f"{r.iou:.6f}", f"{r.dice:.6f}", f"{r.hd95:.4f}"] for r in rows)
    return write_text(path, text.getvalue(), overwrite)


def format_table(summaries: dict[str, dict[str, dict[str, tuple[float, float]]]], hd95: bool = True) -> str:
    """A Markdown table (readable on a terminal): one line per model and mode, IoU/Dice in %.

    HD95 is summarised over the images where it is defined, and the cell says how many were not; with
    ``hd95=False`` (not computed) the column is left out.
    """
    cells = []
    undefined_any = False
    for model, modes in summaries.items():
        for mode, s in modes.items():
            row = [model, mode, _mean_sd(*s["iou"], 100), _mean_sd(*s["dice"], 100)]
            if hd95:
                bad, n = (int(v) for v in s.get("hd95_undefined", (0, 0)))
                undefined_any |= bad > 0
                cell = f"undefined in all {n}" if n and bad == n else _mean_sd(*s["hd95"])
                row.append(f"{cell}{f' ({bad} of {n} undefined)' if 0 < bad < n else ''}")
            cells.append(row)
    headers = ["model", "mode", "IoU (%)", "Dice (%)"] + (["HD95"] if hd95 else [])
    lines = [markdown_table(headers, cells, "ll" + "r" * (len(headers) - 2))]
    if undefined_any:
        lines.append(
            "\nHD95 is undefined for an image whose prediction or ground truth is empty: left out of the mean."
        )
    return "\n".join(lines)


def _mean_sd(mean: float, sd: float, scale: float = 1.0) -> str:
    return f"{scale * mean:.2f}" if math.isnan(sd) else f"{scale * mean:.2f} ± {scale * sd:.2f}"
