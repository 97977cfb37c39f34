"""Instance evaluation, the columns of the paper's Table V, for detectors and semantic models alike.

Per image: semantic IoU and Dice of the union of the objects, the DSB 2018 score, AP@0.5
(TP / (TP + FP + FN) at IoU 0.5), object precision and recall at IoU 0.5, and the number of true
and predicted objects (definitions: :mod:`unetpp.metrics.instances`); the last row is the mean
over images. A detector's instances are those scoring >= 0.5 at its own scale; a semantic model's
are the connected components of its thresholded (ensemble) foreground, so the four rows of Table V
(U-Net, UNet++, Mask R-CNN, Mask R-CNN++) are scored alike. ``unetpp evaluate`` calls
:func:`run_evaluate` for a detector checkpoint, or for any model with ``--instances``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from ..data.instances import InstanceDataset, open_instances
from ..inference.instances import detector_label_map, is_detector, semantic_label_map
from ..metrics.instances import instance_scores, masks_to_label_map, mean_scores
from ..models.hub import run_folder_of
from ..utils.atomic import check_output, write_text

COLUMNS = ("iou", "dice", "dsb_score", "ap50", "precision", "recall", "n_true", "n_pred")
HEADERS = ("IoU %", "Dice %", "DSB score", "AP@0.5", "precision", "recall", "true", "predicted")


def label_map_of(model: nn.Module, image: Any):  # noqa: ANN201
    """The model's instance label map of one ``(C, H, W)`` image in [0, 1] (detector or components)."""
    return detector_label_map(model, image) if is_detector(model) else semantic_label_map(model, image)


def evaluate_instances(model: nn.Module, data: InstanceDataset) -> list[dict[str, Any]]:
    """One row per image: ``{"image": id, iou, dice, dsb_score, ap50, precision, recall, n_true, n_pred}``."""
    model.eval()
    rows = []
    for k in range(len(data)):
        image, target = data[k]
        scores = instance_scores(label_map_of(model, image), masks_to_label_map(target["masks"]))
        rows.append({"image": data.ids[k], **dataclasses.asdict(scores)})
    return rows


def mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over images (object counts summed), as the last row of the table."""
    from ..metrics.instances import InstanceScores

    fields = [f.name for f in dataclasses.fields(InstanceScores)]
    return {
        "image": "mean",
        **dataclasses.asdict(mean_scores([InstanceScores(**{f: r[f] for f in fields}) for r in rows])),
    }


def format_instance_table(rows: list[dict[str, Any]]) -> str:
    """Per-image rows and their mean as an aligned text table (IoU and Dice in %)."""

    def cells(r: dict[str, Any]) -> list[str]:
        out = [str(r["image"])]
        for col in COLUMNS:
            v = r[col]
            out.append(
                f"{v:.0f}" if col.startswith("n_") else f"{100 * v:.2f}" if col in ("iou", "dice") else f"{v:.3f}"
            )
        return out

    table = [["image", *HEADERS], *(cells(r) for r in rows), cells(mean_row(rows))]
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    return "\n".join(
        "  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths, strict=True)))
        for row in table
    )


def csv_rows(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["image", *COLUMNS])
    writer.writeheader()
    writer.writerows([{k: r[k] for k in ("image", *COLUMNS)} for r in [*rows, mean_row(rows)]])
    return text.getvalue()


def run_evaluate(model: nn.Module, args: argparse.Namespace) -> int:
    """``unetpp evaluate`` for instances: print the table, write the per-image CSV (checked before any work)."""
    out = Path(args.out) if args.out else run_folder_of(args.checkpoint) / "evaluation_instances.csv"
    check_output(out, args.overwrite)
    channels = model.config["in_channels"] if is_detector(model) else model.in_channels
    data = open_instances(args.layout, args.data, channels={1: "grey", 3: "rgb"}.get(channels, "keep"))
    rows = evaluate_instances(model, data)
    write_text(out, csv_rows(rows), args.overwrite)
    print(format_instance_table(rows))
    print(f"per-image scores: {out}")
    return 0
