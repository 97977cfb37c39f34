"""The run folder as files on disk, read back: a run's logged metrics over its sessions."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def read_run_metrics(run_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """A run's CSV logs, every session in order, as ``{metric: [(epoch, value), ...]}`` (empty cells skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(run_dir).glob("logs/part-*/metrics.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k not in ("epoch", "step") and v not in ("", None):
                        series.setdefault(k, []).append((int(row["epoch"]), float(v)))
    return series
