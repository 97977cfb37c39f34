"""Time and memory of a model on this machine: the primitives every benchmark, table and the planner share.

* **Timing**: :func:`interleaved_seconds` times several steps A, B, C, A, B, C, ... so that load from
  other processes hits them alike; :func:`inference_step` and :func:`train_step` are the steps as
  prediction and the engine run them; :func:`forward_gflops` counts FLOPs.
* **Memory**: :func:`peak_memory_mib`, the one subprocess memory probe: the resident-memory high-water
  mark of two forward passes (or training steps), above what the built model already holds, in a fresh
  subprocess per model. The kernel's mark is reset through ``/proc/self/clear_refs`` and glibc is told
  to return freed blocks (``MALLOC_MMAP_THRESHOLD_``), otherwise it keeps them and hides the peak. Linux
  only; ``None`` elsewhere. Used by ``unetpp bench`` (:mod:`unetpp.deploy.bench`,
  :mod:`unetpp.deploy.runtime_table`), the planner's memory model (:mod:`unetpp.plan.memory`) and the
  benchmark scripts.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .errors import ConfigError

if TYPE_CHECKING:
    from .models import NestedUNet

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- time


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_gflops(model: nn.Module, x: Tensor, head: int | None = None) -> float:
    """GFLOPs of one forward pass on `x` (multiply-add = 2 FLOPs)."""
    # imported here: it pulls in ~100 MB of modules that the memory probe must not count as preloaded
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x) if head is None else model(x, head=head)
    return counter.get_total_flops() / 1e9


def inference_step(model: nn.Module, x: Tensor, head: int | None, precision: str) -> Callable[[], None]:
    bf16 = precision == "bf16"

    def run() -> None:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            model(x) if head is None else model(x, head=head)

    return run


def interleaved_seconds(
    steps: Mapping[str, Callable[[], None]], reps: int, warmup: int = 1, settle: int = 0
) -> dict[str, float]:
    """Median seconds per call of each step, timed A, B, C, A, B, C, ... after `warmup` calls each.

    `settle` untimed calls run before each timed one: needed when steps run in different runtimes,
    whose idle threads (ONNX Runtime's, OpenVINO's) may still hold the cores when the next step starts.
    """
    for run in steps.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for k, run in steps.items():
            for _ in range(settle):
                run()
            t = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def check_shape(shape: Sequence[int], reps: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3 or any(s < 1 for s in shape):
        raise ConfigError(f"shape must be (B, C, *spatial) with positive sizes, got {shape}")
    if not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be a positive integer, got {reps!r}")
    return shape


def train_step(model: nn.Module, x: Tensor, precision: str = "32") -> Callable[[], None]:
    """One training step as the engine runs it: fused Adam, hybrid loss on every head, optional bf16 autocast.

    Works for any model returning a list of heads' logits (a peer's too); the target is binary unless
    the model says ``classes``.
    """
    from .losses import DeepSupervisionLoss, HybridLoss

    model.train()
    g = torch.Generator().manual_seed(0)
    classes = max(2, int(getattr(model, "classes", 1)))
    y = torch.randint(0, classes, (x.shape[0], 1, *x.shape[2:]), generator=g).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, fused=x.device.type in ("cpu", "cuda") or None)  # as the engine
    loss: list[DeepSupervisionLoss] = []

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            heads = model(x)
        heads = [heads] if isinstance(heads, Tensor) else list(heads)
        if not loss:
            loss.append(DeepSupervisionLoss(HybridLoss(), [1.0] * len(heads)))
        loss[0]([h.float() for h in heads], y).backward()
        opt.step()

    return run


# --------------------------------------------------------------------------------------------- memory


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe_main() -> None:
    """The child process of :func:`peak_memory_mib`: argv = model, shape, head, precision, threads, mode, steps,
    step and its arguments.

    The model is a file written by :func:`unetpp.save`, or ``file.py:function`` that builds any
    nn.Module (a peer's model, for the benchmarks). mode "infer": forward passes (a NestedUNet with batch
    norm folded), above the built model. "train" / "train+weights": Adam steps of the deep-supervision
    hybrid loss, above the built model or from before it is built; "...:efficient" turns memory-efficient
    training on (a training option a model file does not carry). A `step` (``module:function``, "-" for
    none) replaces the inference step: ``function(model, x, precision, *args)`` returns what is called.
    """
    from .models import NestedUNet, load
    from .models.fusion import fuse_batch_norm

    source, shape, head, precision, threads, mode, steps, step, *step_args = sys.argv[1:]
    torch.set_num_threads(int(threads))
    x = torch.randn(tuple(int(s) for s in shape.split("x")))
    gc.collect()
    base = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    built = ".py:" in source  # a factory's model runs as built (folded or not, efficient or not)
    model = _callable(source)() if built else load(source)
    if step != "-":
        run = _callable(step)(model.eval(), x, precision, *step_args)
    elif mode.startswith("infer"):
        model = fuse_batch_norm(model) if isinstance(model, NestedUNet) and not built else model.eval()
        run = inference_step(model, x, None if head == "all" else int(head), precision)
    else:
        if isinstance(model, NestedUNet) and not built:
            model.memory_efficient = mode.endswith(":efficient")
        run = train_step(model, x, precision)
    if "weights" not in mode:
        gc.collect()
        base = rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
    with torch.inference_mode(mode.startswith("infer")):
        for _ in range(int(steps)):
            run()
    sys.stdout.write(f"{(rss_kib('VmHWM') - base) / 1024}\n")


def _callable(ref: str) -> Callable[..., object]:
    """``path/to/file.py:function`` (the benchmarks' peers) or ``package.module:function`` -> the function."""
    import importlib.util

    where, _, name = ref.rpartition(":")
    if not where.endswith(".py"):
        return getattr(importlib.import_module(where), name)
    spec = importlib.util.spec_from_file_location(Path(where).stem, where)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: cannot import a model factory from it")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def peak_memory_mib(
    model: NestedUNet | str,
    shape: Sequence[int],
    head: int | None = None,
    precision: str = "32",
    *,
    training: bool = False,
    with_weights: bool = False,
    steps: int = 2,
    threads: int | None = None,
    step: str | None = None,
    step_args: Sequence[str] = (),
) -> float | None:
    """Peak resident memory (MiB) of inference or training, measured in a fresh subprocess.

    `model` is a NestedUNet, or ``"path/to/file.py:function"`` that builds any model in the subprocess
    (how the benchmarks measure their peers with the same probe).

    Inference (default): two forward passes with batch norm folded, above the built model. Training:
    `steps` steps (forward, hybrid deep-supervision loss, backward, Adam), as the model is configured
    (``model.memory_efficient`` is honoured); above the built model, or with `with_weights` from
    before it is loaded (weights, gradients and Adam's state counted, as
    :func:`unetpp.plan.memory.measure_peak_bytes` wants). `step` (``"package.module:function"``) measures
    another way of running the model instead, built in the subprocess as ``function(model, x, precision,
    *step_args)`` (another runtime: :mod:`unetpp.deploy.runtime_table`), above what building it holds.
    ``None`` where ``/proc/self/clear_refs`` is missing (not Linux) or the probe fails (logged).
    """
    if not Path("/proc/self/clear_refs").exists():
        return None
    from .models import save

    src = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "MALLOC_TRIM_THRESHOLD_": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    mode = "infer" if not training else "train" + ("+weights" if with_weights else "")
    mode += ":efficient" if training and getattr(model, "memory_efficient", False) else ""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = model if isinstance(model, str) else save(model, Path(tmp) / "model.pt")
        args = [str(ckpt), "x".join(map(str, shape)), "all" if head is None else str(head), precision]
        args += [str(threads or torch.get_num_threads()), mode, str(2 if not training else steps)]
        args += [step or "-", *step_args]
        cmd = [sys.executable, "-c", "from unetpp.profiling import probe_main; probe_main()", *args]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        logger.warning("memory probe failed: %s", out.stderr.strip().splitlines()[-1:] or out.returncode)
        return None
    return float(out.stdout.strip().splitlines()[-1])


__all__ = [
    "check_shape",
    "forward_gflops",
    "inference_step",
    "interleaved_seconds",
    "n_params",
    "peak_memory_mib",
    "rss_kib",
    "train_step",
]
