"""Peak resident memory of a model's inference or training, measured in a fresh subprocess.

The resident-memory high-water mark of two forward passes (or training steps), above what the built
model already holds, in a fresh subprocess per model. The kernel's mark is reset through
``/proc/self/clear_refs`` and glibc is told to return freed blocks (``MALLOC_MMAP_THRESHOLD_``),
otherwise it keeps them and hides the peak. Linux only; ``None`` elsewhere. Used by ``unetpp bench``,
the planner's memory model (:mod:`unetpp.plan.memory`) and the benchmark scripts.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import ConfigError

if TYPE_CHECKING:
    from .models import NestedUNet

logger = logging.getLogger(__name__)


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe_main() -> None:
    """The child process of :func:`peak_memory_mib`: argv = model, shape, head, precision, threads, mode, steps.

    The model is a file written by :func:`unetpp.save`, or ``file.py:function`` that builds any
    nn.Module (a peer's model, for the benchmarks). mode "infer": forward passes (a NestedUNet with batch
    norm folded), above the built model. "train" / "train+weights": Adam steps of the deep-supervision
    hybrid loss, above the built model or from before it is built; "...:efficient" turns memory-efficient
    training on (a training option a model file does not carry).
    """
    from .deploy.bench import inference_step, train_step
    from .models import NestedUNet, load
    from .models.fusion import fuse_batch_norm

    source, shape, head, precision, threads, mode, steps = sys.argv[1:8]
    torch.set_num_threads(int(threads))
    x = torch.randn(tuple(int(s) for s in shape.split("x")))
    gc.collect()
    base = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    built = ".py:" in source  # a factory's model runs as built (folded or not, efficient or not)
    model = _factory(source)() if built else load(source)
    if mode.startswith("infer"):
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
    for _ in range(int(steps)):
        run()
    sys.stdout.write(f"{(rss_kib('VmHWM') - base) / 1024}\n")


def _factory(source: str) -> Callable[[], nn.Module]:
    """``path/to/file.py:function`` -> the function (the benchmarks' peers are built this way)."""
    import importlib.util

    file, _, name = source.rpartition(":")
    spec = importlib.util.spec_from_file_location(Path(file).stem, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{file}: cannot import a model factory from it")
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
) -> float | None:
    """Peak resident memory (MiB) of inference or training, measured in a fresh subprocess.

    `model` is a NestedUNet, or ``"path/to/file.py:function"`` that builds any model in the subprocess
    (how the benchmarks measure their peers with the same probe).

    Inference (default): two forward passes with batch norm folded, above the built model. Training:
    `steps` steps (forward, hybrid deep-supervision loss, backward, Adam), as the model is configured
    (``model.memory_efficient`` is honoured); above the built model, or with `with_weights` from
    before it is loaded (weights, gradients and Adam's state counted, as
    :func:`unetpp.plan.memory.measure_peak_bytes` wants). ``None`` where ``/proc/self/clear_refs`` is
    missing (not Linux) or the probe fails (logged).
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
        cmd = [sys.executable, "-c", "from unetpp.profiling import probe_main; probe_main()", *args]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        logger.warning("memory probe failed: %s", out.stderr.strip().splitlines()[-1:] or out.returncode)
        return None
    return float(out.stdout.strip().splitlines()[-1])
