"""The figures of a study report: learning curves over epochs and wall-clock time, box plots, Fig. 6, Fig. 7.

Every function writes one PNG (atomically) and returns its path; Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from .runner import RunResult
from .stats import by_model, per_image


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def epoch_seconds(folder: Path) -> dict[int, float]:
    """Wall-clock seconds at the end of each epoch, from ``timing.json`` (each session's time spread
    evenly over the epochs it trained: validation and start-up included)."""
    path = folder / "timing.json"
    if not path.is_file():
        return {}
    clock, out = 0.0, {}
    for s in json.loads(path.read_text()):
        a, b = s["epochs"]
        for e in range(a, b):
            out[e] = clock + (e - a + 1) * s["seconds"] / (b - a)
        clock += s["seconds"]
    return out


def learning_curves(results: Sequence[RunResult], path: Path) -> Path:
    """Validation IoU and training loss per epoch and per wall-clock minute; one colour per model, a line per seed."""
    from ..utils.run_metrics import read_run_metrics

    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (model, runs) in enumerate(by_model(results).items()):
        colour = colours[k % len(colours)]
        for n, run in enumerate(runs):
            series = read_run_metrics(run.folder)
            clock = epoch_seconds(run.folder)
            for row, key in ((0, "val/iou"), (1, "train/loss")):
                points = sorted(dict(series.get(key, [])).items())
                if not points:
                    continue
                label = model if n == 0 else None
                epochs, values = zip(*points, strict=True)
                axes[row][0].plot([e + 1 for e in epochs], values, color=colour, marker=".", label=label, alpha=0.8)
                timed = [(clock[e] / 60, v) for e, v in points if e in clock]
                if timed:
                    axes[row][1].plot(*zip(*timed, strict=True), color=colour, marker=".", label=label, alpha=0.8)
    for (row, col), (x, y) in {
        (0, 0): ("epoch", "validation IoU"),
        (0, 1): ("wall-clock minutes", "validation IoU"),
        (1, 0): ("epoch", "training loss (sum over heads)"),
        (1, 1): ("wall-clock minutes", "training loss (sum over heads)"),
    }.items():
        ax = axes[row][col]
        ax.set(xlabel=x, ylabel=y)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0][0].set_title("per epoch (the fair unit)")
    axes[0][1].set_title("per wall-clock time (what a budget buys here)")
    fig.tight_layout()
    return _save(fig, path)


def box_plot(results: Sequence[RunResult], path: Path) -> Path:
    """Per model: the test images' IoU (mean over seeds) as a box, each seed's mean IoU as a dot."""
    from .stats import main_mode, run_mean

    plt = _plt()
    groups = by_model(results)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(groups) + 2), 4.5))
    names = list(groups)
    ax.boxplot([list(per_image(groups[m]).values()) for m in names], showmeans=True)
    for k, m in enumerate(names, 1):
        seeds = [run_mean(r, main_mode(r)) for r in groups[m]]
        ax.scatter([k + 0.25] * len(seeds), seeds, color="black", s=14, zorder=3, label="seed mean" if k == 1 else None)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    ax.set(ylabel="IoU", title="Test IoU per image (box) and per seed (dots)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def size_group_plot(groups: dict, path: Path) -> Path | None:
    """Fig. 7: box plots of object IoU per size group, one box per model; None without object scores."""
    if not groups.get("groups"):
        return None
    plt = _plt()
    gs = groups["groups"]
    models = list(gs[0]["models"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(gs) * len(models)), 4.5))
    width = 0.8 / max(1, len(models))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, model in enumerate(models):
        data = [g["models"][model]["values"] or [float("nan")] for g in gs]
        pos = [k + (m - (len(models) - 1) / 2) * width for k in range(len(gs))]
        box = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, manage_ticks=False)
        for patch in box["boxes"]:
            patch.set_facecolor(colours[m % len(colours)])
            patch.set_alpha(0.6)
        ax.plot([], [], color=colours[m % len(colours)], linewidth=8, alpha=0.6, label=model)
    labels = [f"{g['low']:.0f}–{_edge(g['high'])}\n(n={g['count']})" for g in gs]
    ax.set_xticks(range(len(gs)), labels)
    ax.set(xlabel="object size (pixels/voxels)", ylabel="object IoU", title="IoU by object size (paper Fig. 7)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _edge(x: float) -> str:
    return "∞" if x == float("inf") else f"{x:.0f}"


def embedded_plot(rows: Sequence[dict], path: Path) -> Path | None:
    """Fig. 6: IoU of UNet++ L^d embedded (head d of the full model) and isolated (trained alone) per depth."""
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    depths = [r["depth"] for r in rows]
    # points and lines over depth with the y axis fitted to the data: bars from 0 would flatten gaps of a few points
    for shift, key, label in (
        (-0.05, "embedded", "embedded (head d of UNet++)"),
        (0.05, "isolated", "isolated (L^d alone)"),
    ):
        ax.errorbar(
            [d + shift for d in depths],
            [r[key] for r in rows],
            yerr=[r[f"{key}_sd"] for r in rows],
            marker="o",
            capsize=4,
            label=label,
        )
    ax.set_xticks(depths, [f"L{d}" for d in depths])
    ax.set(ylabel="test IoU (mean ± s.d. over seeds)", title="Embedded vs isolated training (paper Fig. 6)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
