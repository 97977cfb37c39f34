"""Cost of a model on this machine, per pruning level (the paper's Fig. 5), and the choice of a depth.

UNet++ (Zhou et al., "UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image
Segmentation", IEEE TMI 2019, doi:10.1109/TMI.2019.2959609) is trained with deep supervision and
pruned at inference: UNet++ L^d keeps the nodes with i + j <= d. The paper's Fig. 5 weighs each
depth's accuracy against its parameters and inference time; which depth to pick is left open, since
it depends on the data set. This module measures the cost side (:func:`measure`,
:func:`pruning_table`) and picks a depth from measured scores (:func:`choose_depth`).

Measurements, as in ``benchmarks/bench_models.py``:

* **GFLOPs** of one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (a multiply-add counts as 2 FLOPs).
* **Latency**: median wall time of a forward pass after a warm-up, in inference mode with batch norm
  folded (what :func:`unetpp.predict` runs). Depths are timed interleaved (L1, L2, ..., L1, L2, ...)
  so that load from other processes hits them alike.
* **Peak memory**: resident memory high-water mark of two forward passes, above what the built model
  already holds (so activations and workspace, not weights), in a fresh subprocess per model
  (:mod:`unetpp.profiling`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from ..models import NestedUNet, prune
from ..models.fusion import fuse_batch_norm
from ..profiling import check_shape, forward_gflops, inference_step, interleaved_seconds, n_params, peak_memory_mib
from ..utils.precision import canonical_precision
from ..utils.tables import markdown_table

logger = logging.getLogger(__name__)

Row = dict[str, float | int | str | None]
AUTO_TOLERANCE = 0.003  # IoU that `unetpp prune --auto` (and a study's pruning table) may give up: 0.3 points


# --------------------------------------------------------------------------------------------- pieces


def _step(model: NestedUNet, x: Tensor, precision: str, runtime: str) -> Callable[[], None]:
    if runtime == "torch":
        return inference_step(model, x, None, precision)
    from .backends import choose

    runner = choose(model, x, None, precision, runtime).runner
    return lambda: runner(x)


# --------------------------------------------------------------------------------------------- tables


def _timed_input(
    model: NestedUNet, shape: Sequence[int], reps: int, precision: str
) -> tuple[tuple[int, ...], str, NestedUNet, Tensor]:
    """The checked shape and precision, the batch-norm-folded model that is timed, and a random input it takes."""
    shape = check_shape(shape, reps)
    precision = canonical_precision(precision, ("32", "bf16"))
    net = fuse_batch_norm(model)
    x = torch.randn(shape, device=next(net.parameters()).device)
    net.check_input(x)
    return shape, precision, net, x


def measure(
    model: NestedUNet,
    shape: Sequence[int],
    reps: int = 10,
    *,
    head: int | None = None,
    precision: str = "32",
    memory: bool = True,
    warmup: int = 1,
) -> Row:
    """Parameters, GFLOPs, latency, throughput and peak memory of inference on a random input of `shape`.

    Batch norm is folded first (as in prediction); the caller's model is not modified.

    Args:
        model: any NestedUNet (pruned or not).
        shape: ``(B, C, *spatial)``; spatial sizes divisible by 2^depth.
        reps: timed forward passes (the median is reported).
        head: time head `head` only (``model(x, head=d)``); ``None`` runs every head.
        precision: ``"32"`` or ``"bf16"`` (autocast; old spellings accepted with a warning).
        memory: also measure peak memory (a subprocess; takes a few seconds).
        warmup: untimed passes first (oneDNN picks its kernels on the first call).

    Returns:
        ``params``, ``gflops``, ``latency_ms`` (median), ``throughput`` (images/s), ``peak_mib`` (or None).

    Raises:
        ConfigError: a bad shape, reps or precision.
        InputShapeError: a shape the model does not take.
    """
    shape, precision, net, x = _timed_input(model, shape, reps, precision)
    seconds = interleaved_seconds({"m": inference_step(net, x, head, precision)}, reps, warmup)["m"]
    return {
        "params": n_params(net if head is None else prune(net, head)),
        "gflops": forward_gflops(net, x, head),
        "latency_ms": seconds * 1e3,
        "throughput": shape[0] / seconds,
        "peak_mib": peak_memory_mib(net, shape, head, precision) if memory else None,
    }


def pruning_table(
    model: NestedUNet,
    shape: Sequence[int],
    reps: int = 10,
    *,
    precision: str = "32",
    memory: bool = True,
    warmup: int = 1,
    runtime: str = "torch",
) -> list[Row]:
    """The paper's Fig. 5 as rows: each pruned UNet++ L^d of `model`, then the ensemble of all heads.

    Every row has ``mode`` ("L1", ..., "ensemble"), ``depth`` (None for the ensemble) and the figures of
    :func:`measure`, plus ``params_vs_full``, ``gflops_vs_full``, ``latency_vs_full`` and
    ``memory_vs_full``: ratios to the deepest pruned model L^L (the paper's reference). Pruned models are
    timed interleaved with each other and with the ensemble, in `runtime` ("torch", "onnxruntime",
    "openvino", or "auto": each model in the fastest that matches eager; see
    :mod:`unetpp.deploy.backends`). Peak memory is PyTorch's.

    Raises:
        ConfigError: a bad shape or reps.
        InputShapeError: a shape the model does not take.
    """
    shape, precision, full, x = _timed_input(model, shape, reps, precision)
    models: dict[str, tuple[NestedUNet, int | None]] = {f"L{d}": (prune(full, d), d) for d in full.spec.heads}
    if len(full.spec.heads) > 1:
        models["ensemble"] = (full, None)
    seconds = interleaved_seconds({k: _step(m, x, precision, runtime) for k, (m, _) in models.items()}, reps, warmup)
    rows: list[Row] = []
    for k, (m, depth) in models.items():
        rows.append(
            {
                "mode": k,
                "depth": depth,
                "params": n_params(m),
                "gflops": forward_gflops(m, x),
                "latency_ms": seconds[k] * 1e3,
                "throughput": shape[0] / seconds[k],
                "peak_mib": peak_memory_mib(m, shape, None, precision) if memory else None,
            }
        )
    ref = rows[len(full.spec.heads) - 1]  # L^L, the deepest pruned model
    for row in rows:
        for key, out in (
            ("params", "params_vs_full"),
            ("gflops", "gflops_vs_full"),
            ("latency_ms", "latency_vs_full"),
            ("peak_mib", "memory_vs_full"),
        ):
            a, b = row[key], ref[key]
            row[out] = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of :func:`pruning_table` rows (also readable on a terminal).

    Rows that carry an ``iou`` score (in [0, 1], e.g. added by ``unetpp prune --data``) get an IoU column
    in percent, so that accuracy and cost of each depth read side by side, as in the paper's Fig. 5.
    """

    def pct(v: object) -> str:
        return f"{v:.0%}" if isinstance(v, float) else "–"

    with_iou = any(isinstance(r.get("iou"), float) for r in rows)
    headers = ["mode", *(["IoU %"] if with_iou else []), "params", "GFLOPs", "latency", "images/s", "peak memory"]
    headers += ["params vs L", "time vs L", "memory vs L"]
    cells = []
    for r in rows:
        mem = f"{r['peak_mib']:.0f} MiB" if isinstance(r["peak_mib"], float) else "–"
        iou = r.get("iou")
        score = [f"{100 * iou:.2f}" if isinstance(iou, float) else "–"] if with_iou else []
        row = [r["mode"], *score, f"{r['params']:,}", f"{r['gflops']:.2f}", f"{r['latency_ms']:.1f} ms"]
        row += [f"{r['throughput']:.1f}", mem, pct(r.get("params_vs_full")), pct(r.get("latency_vs_full"))]
        cells.append([*row, pct(r.get("memory_vs_full"))])
    return markdown_table(headers, cells)


# --------------------------------------------------------------------------------------------- choice


def choose_depth(
    scores: Mapping[int, float],
    tolerance: float = 0.0,
    *,
    latencies: Mapping[int, float] | None = None,
    max_latency: float | None = None,
) -> int:
    """The depth to prune to, from each depth's validation score (higher is better, e.g. IoU).

    Without a budget: the shallowest depth whose score is within `tolerance` of the best score (the
    paper leaves the optimal depth open; this makes "as fast as possible at almost no loss" explicit).
    With `max_latency`: only depths whose latency fits the budget compete, and among them the same rule
    applies, so ``tolerance=0`` gives the most accurate depth under the budget (the shallower on ties).

    Args:
        scores: depth -> score, e.g. ``{1: 0.80, 2: 0.84, 3: 0.85, 4: 0.852}``.
        tolerance: score that may be given up for speed, in the scores' units (0.003 = 0.3 IoU points
            for IoU in [0, 1]).
        latencies: depth -> latency (any unit, the same as `max_latency`); needed with `max_latency`.
        max_latency: the budget.

    Raises:
        ConfigError: no scores, a NaN score, a negative tolerance, missing latencies, or no depth within
            the budget (the message names the fastest depth and its latency).

    Example:
        >>> choose_depth({1: 0.80, 2: 0.84, 3: 0.85, 4: 0.852}, tolerance=0.005)
        3
    """
    if not scores:
        raise ConfigError("no scores given; evaluate at least one depth")
    bad = [d for d, s in scores.items() if not isinstance(s, (int, float)) or math.isnan(s)]
    if bad:
        raise ConfigError(f"scores of depth {bad} are not numbers ({[scores[d] for d in bad]}); evaluate them again")
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance!r}")
    candidates = dict(scores)
    if max_latency is not None:
        if latencies is None or any(d not in latencies for d in scores):
            missing = sorted(set(scores) - set(latencies or {}))
            raise ConfigError(f"max_latency needs the latency of every depth; missing for depth {missing}")
        candidates = {d: s for d, s in scores.items() if latencies[d] <= max_latency}
        if not candidates:
            fastest = min(scores, key=lambda d: latencies[d])
            raise ConfigError(
                f"no depth runs within {max_latency:g} (fastest: depth {fastest} at {latencies[fastest]:g}); "
                "raise the budget, use a smaller input or a faster machine"
            )
    best = max(candidates.values())
    return min(d for d, s in candidates.items() if s >= best - tolerance - 1e-12)  # 1e-12: float rounding


__all__ = ["AUTO_TOLERANCE", "Row", "choose_depth", "format_table", "measure", "pruning_table"]
