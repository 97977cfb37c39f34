"""``unetpp bench --runtimes``: every installed runtime and precision on one model and input shape.

Latency is the median of calls interleaved across runtimes in one process (load from other processes
hits all alike; read the ratio to eager float32, measured alongside); peak memory is measured per
runtime in a fresh subprocess, by the one probe, :func:`unetpp.profiling.peak_memory_mib`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..models import NestedUNet, ensemble
from ..models.fusion import fuse_batch_norm
from ..profiling import check_shape, interleaved_seconds, peak_memory_mib
from ..utils.precision import bf16_supported
from ..utils.tables import markdown_table
from .backends import CANDIDATES, Runner

logger = logging.getLogger(__name__)


def runtime_table(
    model: NestedUNet,
    shape: tuple[int, ...],
    reps: int = 5,
    *,
    precisions: tuple[str, ...] = ("32", "bf16", "int8"),
    memory: bool = True,
    head: int | None = None,
) -> list[dict[str, Any]]:
    """Every installed runtime and precision on one input shape: the rows of ``unetpp bench --runtimes``.

    Rows: ``runtime``, ``precision``, ``shape``, ``latency_ms`` (median, interleaved with the others),
    ``throughput`` (images/s), ``speedup`` (vs eager float32 in the same process), ``peak_mib`` (resident
    memory of two calls above the built runner, in a fresh subprocess; None off Linux) and
    ``max_abs_diff`` (probabilities vs eager float32). bf16 only where the CPU has it natively; int8 is
    ONNX Runtime's static quantization calibrated on random inputs, so its difference here says
    nothing of accuracy: measure its IoU change on labelled data before using it.
    """
    shape = check_shape(shape, reps)
    net = fuse_batch_norm(model)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    net.check_input(x)
    builds: dict[tuple[str, str], Callable[[], Runner]] = {}
    for name, candidate in CANDIDATES.items():
        if not candidate.available():
            continue
        for precision in precisions:
            if precision == "bf16" and (name == "onnxruntime" or not bf16_supported()):
                continue
            if precision == "int8" and name != "onnxruntime":
                continue
            build = (
                (lambda c=candidate, p=precision: c.build(net, x, p))
                if precision != "int8"
                else (lambda: _int8_onnx(net, x))
            )
            builds[(name, precision)] = build
    runners: dict[str, Runner] = {}
    rows: dict[str, dict[str, Any]] = {}
    with torch.inference_mode():
        want = ensemble(net(x, head=head))
        for (name, precision), build in builds.items():
            label = f"{name} {precision}"
            try:
                runners[label] = build()
                got = ensemble(runners[label](x, head=head))
            except Exception as e:
                logger.warning("%s: not measured (%s: %s)", label, type(e).__name__, str(e)[:200])
                runners.pop(label, None)
                continue
            diff = float((got.float() - want.float()).abs().max())
            rows[label] = {
                "runtime": name,
                "precision": precision,
                "shape": "x".join(map(str, shape)),
                "max_abs_diff": diff,
            }
        seconds = interleaved_seconds({k: (lambda r=r: r(x, head=head)) for k, r in runners.items()}, reps, settle=1)
    base = seconds.get("torch 32")
    for label, row in rows.items():
        row["latency_ms"] = seconds[label] * 1e3
        row["throughput"] = shape[0] / seconds[label]
        row["speedup"] = base / seconds[label] if base else None
        row["peak_mib"] = runtime_peak_mib(net, shape, row["runtime"], row["precision"]) if memory else None
    return list(rows.values())


def _int8_onnx(net: NestedUNet, x: Tensor) -> Runner:
    from ..inference.runtimes import OnnxRunner
    from .export import export_onnx, quantize_onnx

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        export_onnx(net, src, tuple(x.shape), fuse=False, verify=False)
        quantize_onnx(src, dst, "static", calibration=[x[i : i + 1] for i in range(min(4, len(x)))])
        return OnnxRunner(dst)


def format_runtime_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`runtime_table` rows."""
    headers = ["runtime", "precision", "shape", "latency", "images/s", "vs torch 32", "peak memory", "max abs diff"]
    cells = []
    for r in rows:
        mem = f"{r['peak_mib']:.0f} MiB" if isinstance(r.get("peak_mib"), float) else "–"
        speed = f"{r['speedup']:.2f}×" if isinstance(r.get("speedup"), float) else "–"
        cells.append(
            [
                r["runtime"],
                r["precision"],
                r["shape"],
                f"{r['latency_ms']:.1f} ms",
                f"{r['throughput']:.1f}",
                speed,
                mem,
            ]
            + [f"{r['max_abs_diff']:.1e}"]
        )
    return markdown_table(headers, cells, "lll" + "r" * 5)


def runtime_peak_mib(net: NestedUNet, shape: tuple[int, ...], runtime: str, precision: str) -> float | None:
    """Peak resident memory (MiB) of two calls of a runtime above the built runner, in a fresh subprocess."""
    step = f"{__name__}:runtime_step"
    return peak_memory_mib(net, shape, precision=precision, step=step, step_args=(runtime,))


def runtime_step(net: NestedUNet, x: Tensor, precision: str, runtime: str) -> Callable[[], object]:
    """One call of `net` in `runtime` at `precision` ("int8": ONNX Runtime's static quantization), built now."""
    runner = _int8_onnx(net, x) if precision == "int8" else CANDIDATES[runtime].build(net, x, precision)
    return lambda: runner(x)


__all__ = ["format_runtime_table", "runtime_peak_mib", "runtime_table"]
