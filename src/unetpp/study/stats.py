"""The statistics the paper reports, from a study's finished runs.

* Table IV: per model, the mean ± s.d. over seeds of each run's mean test IoU (and Dice, HD95), and
  a two-sample t-test of the model against the reference model over seeds (Welch's, which does not
  assume equal variances: ``scipy.stats.ttest_ind(equal_var=False)``); p < 0.05 is marked.
* The paired comparison over test images: each image's score averaged over seeds, model against
  reference, ``scipy.stats.ttest_rel`` (the same images scored two ways).
* Fig. 6: head d of the deeply supervised UNet++ (embedded) against UNet++ L^d trained alone
  (isolated), per depth.
* Fig. 7: ground-truth objects binned by size (:func:`unetpp.metrics.by_object_size`), each model's
  object IoU per group, and a paired t-test per group over the objects (the same objects for every
  model).

A model is compared by its *main mode*: the ensemble of its heads when it has several, else its head.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from statistics import fmean, stdev

import numpy as np
import torch

from .runner import RunResult

SIGNIFICANT = 0.05
METRICS = ("iou", "dice", "hd95")


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's two-sample t statistic and two-sided p-value; NaN when either side has < 2 values."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    res = ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def paired(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test; NaN with fewer than 2 pairs or no variation at all."""
    from scipy.stats import ttest_rel

    if len(a) < 2 or np.allclose(np.subtract(a, b), 0):
        return math.nan
    return float(ttest_rel(a, b).pvalue)


def format_p(p: float) -> str:
    """``0.0123 *`` when significant at 0.05, ``0.31``; ``–`` when there is no test."""
    if not isinstance(p, float) or math.isnan(p):
        return "–"
    text = f"{p:.2g}" if p < 0.001 else f"{p:.3f}"
    return text + (" *" if p < SIGNIFICANT else "")


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return fmean(finite), (stdev(finite) if len(finite) > 1 else math.nan)


def main_mode(run: RunResult) -> str:
    return run.info.get("main_mode") or (
        "ensemble" if any(r["mode"] == "ensemble" for r in run.scores) else run.scores[-1]["mode"]
    )


def run_mean(run: RunResult, mode: str, metric: str = "iou") -> float:
    """The mean over test images of one run's `metric` in `mode` (HD95: over finite values)."""
    values = [r[metric] for r in run.scores if r["mode"] == mode]
    return mean_sd(values)[0]


def per_image(runs: Sequence[RunResult], mode: str | None = None, metric: str = "iou") -> dict[str, float]:
    """Each test image's score averaged over seeds (in each run's main mode unless `mode` is given)."""
    acc: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        m = mode or main_mode(run)
        for r in run.scores:
            if r["mode"] == m:
                acc[r["image"]].append(r[metric])
    return {image: fmean(v) for image, v in acc.items()}


def by_model(results: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    out: dict[str, list[RunResult]] = {}
    for r in results:
        out.setdefault(r.model, []).append(r)
    return out


def model_table(results: Sequence[RunResult], reference: str) -> list[dict]:
    """One row per model: scores (mean ± s.d. over seeds), tests against the reference, cost."""
    groups = by_model(results)
    ref_runs = groups.get(reference, [])
    ref_seeds = [run_mean(r, main_mode(r)) for r in ref_runs]
    ref_images = per_image(ref_runs)
    rows = []
    for model, runs in groups.items():
        row: dict = {"model": model, "mode": main_mode(runs[0]), "seeds": [r.seed for r in runs]}
        for metric in METRICS:
            values = [run_mean(r, main_mode(r), metric) for r in runs]
            row[metric], row[f"{metric}_sd"] = mean_sd(values)
            row[f"{metric}_per_seed"] = values
        if model == reference:
            row["p_welch"] = row["p_paired"] = math.nan
        else:
            row["t_welch"], row["p_welch"] = welch(row["iou_per_seed"], ref_seeds)
            images = per_image(runs)
            common = sorted(set(images) & set(ref_images))
            row["p_paired"] = paired([images[i] for i in common], [ref_images[i] for i in common])
        row["delta_iou"] = row["iou"] - mean_sd(ref_seeds)[0] if ref_seeds else math.nan
        for key in ("epochs", "seconds", "seconds_per_epoch", "patches_per_second", "params"):
            row[key] = mean_sd([float(r.info[key]) for r in runs if r.info.get(key) is not None])[0]
        rows.append(row)
    return rows


def head_table(results: Sequence[RunResult], *, per_class: bool = False) -> list[dict]:
    """Every head and the ensemble of every model: IoU and Dice mean ± s.d. over seeds.

    `per_class`: instead, each foreground class of the model's main mode (multi-class studies; the rows
    ``"<mode> class <c>"`` that :func:`unetpp.evaluation.semantic.evaluate` adds), with ``"class"`` in each row.
    """
    rows = []
    for model, runs in by_model(results).items():
        modes = list(dict.fromkeys(r["mode"] for r in runs[0].scores))
        prefix = f"{main_mode(runs[0])} class "
        for mode in [m for m in modes if m.startswith(prefix) == per_class and (per_class or " class " not in m)]:
            row = {"model": model, "mode": mode} | ({"class": int(mode[len(prefix) :])} if per_class else {})
            if mode == "chosen":  # which heads validation kept, per seed
                row["heads"] = {r.seed: r.info.get("ensemble_heads") for r in runs}
            for metric in ("iou", "dice"):
                row[metric], row[f"{metric}_sd"] = mean_sd([run_mean(r, mode, metric) for r in runs])
            rows.append(row)
    return rows


def embedded_vs_isolated(results: Sequence[RunResult], full: str, isolated: dict[int, str]) -> list[dict]:
    """Fig. 6: per depth d, head d of `full` (embedded) against the model `isolated[d]` (trained alone)."""
    groups = by_model(results)
    rows = []
    for depth, name in sorted(isolated.items()):
        emb = [run_mean(r, f"head{depth}") for r in groups.get(full, [])]
        iso = [run_mean(r, main_mode(r)) for r in groups.get(name, [])]
        (em, esd), (im, isd) = mean_sd(emb), mean_sd(iso)
        _, p = welch(emb, iso)
        rows.append({"depth": depth, "embedded": em, "embedded_sd": esd, "isolated": im, "isolated_sd": isd, "p": p})
    return rows


def default_bins(sizes: Sequence[float], groups: int = 4) -> list[float]:
    """Edges that put about the same number of objects in each group (quantiles), from 0 to infinity."""
    if not len(sizes):
        return [0.0, math.inf]
    inner = sorted(
        {float(round(q)) for q in np.quantile(np.asarray(sizes, float), np.linspace(0, 1, groups + 1)[1:-1])}
    )
    return [0.0, *[e for e in inner if e > 0], math.inf]


def size_groups(results: Sequence[RunResult], reference: str, bins: Sequence[float] = ()) -> dict:
    """Fig. 7: per size group, each model's object IoU (per object, averaged over seeds) and a paired
    t-test against the reference over the group's objects.

    Returns:
        ``{"bins": edges, "groups": [{"low", "high", "count", "models": {model: {"iou", "values", "p"}}}]}``;
        no groups when the runs carry no object scores (multi-class studies).
    """
    from ..metrics import ObjectScores, by_object_size

    groups = by_model(results)
    per_model: dict[str, dict[tuple[str, int], tuple[float, list[float]]]] = {}
    for model, runs in groups.items():
        acc: dict[tuple[str, int], tuple[float, list[float]]] = {}
        for run in runs:
            for o in run.objects:
                key = (o["image"], int(o["object"]))
                acc.setdefault(key, (o["size"], []))[1].append(o["iou"])
        if acc:
            per_model[model] = acc
    if not per_model:
        return {"bins": [], "groups": []}
    any_model = per_model.get(reference) or next(iter(per_model.values()))
    edges = [float(b) for b in bins] or default_bins([s for s, _ in any_model.values()])
    out = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        out.append({"low": lo, "high": hi, "count": 0, "models": {}})
    for model, acc in per_model.items():
        keys = sorted(acc)
        sizes = torch.tensor([acc[k][0] for k in keys], dtype=torch.float64)
        ious = torch.tensor([fmean(acc[k][1]) for k in keys], dtype=torch.float64)
        zeros = torch.zeros(len(keys), dtype=torch.long)
        scores = ObjectScores(zeros, zeros, sizes, ious, ious)
        for g, size_bin in zip(out, by_object_size(scores, edges), strict=True):
            inside = [k for k in keys if g["low"] <= acc[k][0] < g["high"]]
            g["count"] = size_bin.count
            g["models"][model] = {"iou": size_bin.iou, "values": [fmean(acc[k][1]) for k in inside], "keys": inside}
    ref = reference if reference in per_model else None
    for g in out:
        ref_stats = g["models"].get(ref) if ref else None
        for model, stats in g["models"].items():
            if ref_stats is None or model == ref:
                stats["p"] = math.nan
                continue
            ref_by_key = dict(zip(map(tuple, ref_stats["keys"]), ref_stats["values"], strict=True))
            pairs = [
                (v, ref_by_key[tuple(k)])
                for k, v in zip(stats["keys"], stats["values"], strict=True)
                if tuple(k) in ref_by_key
            ]
            stats["p"] = paired([a for a, _ in pairs], [b for _, b in pairs])
        for stats in g["models"].values():
            del stats["keys"]
    return {"bins": edges, "groups": out}
