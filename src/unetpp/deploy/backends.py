"""Runtimes for a prepared model, the fastest one on this machine chosen by measurement, and the one-liner.

Prediction (:class:`unetpp.inference.Predictor`) runs any :class:`~unetpp.inference.Segmenter`; this
module composes one that runs a model in another runtime (:class:`RuntimeModel`, :func:`with_runtime`),
so the caller decides, and :func:`predictor` / :func:`predict` (``unetpp.predict``) do it for them.

The same UNet++ runs at very different speeds in eager PyTorch, ONNX Runtime and OpenVINO, and which
wins depends on the CPU (AVX2 or AVX-512, bf16 or not), the thread count, the window and the batch.
So the user does not guess: ``runtime="auto"`` times the installed candidates on the actual model and
input shape (a few seconds, once), keeps those whose probabilities match eager float32 PyTorch within
:data:`TOLERANCE`, uses the fastest, and caches the choice per model, shape and machine in
``$XDG_CACHE_HOME/unetpp/runtimes.json`` (with the measured times, logged at debug level: ``--verbose``).

Candidates (:data:`CANDIDATES`), each a runner ``runner(x, head=None) -> list of logits``:

* ``torch``: the model itself (batch norm folded by :class:`~unetpp.inference.predictor.Predictor`);
  ``bf16`` under CPU autocast where the CPU has native bf16 (:func:`unetpp.utils.precision.bf16_supported`).
* ``onnxruntime``: the model exported by :func:`unetpp.deploy.export.export_onnx` into a temporary file.
* ``openvino``: the model converted by ``openvino.convert_model`` from PyTorch, compiled for the CPU with
  float32 inference (OpenVINO would otherwise pick bf16 on CPUs that have it), or bf16 when asked.

onnxruntime and openvino are optional (``pip install 'unetpp[fast]'``) and imported only when used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..inference import PredictOptions, Predictor, Segmenter, load_model
from ..inference.outputs import PathLike
from ..inference.predictor import parse_mode
from ..inference.segmenter import RUNTIMES, Runtime
from ..models import NestedUNet, ensemble
from ..models.fusion import fuse_batch_norm
from ..profiling import interleaved_seconds
from ..utils.precision import bf16_supported, cpu_flags

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest absolute difference in probabilities from eager float32 that auto accepts
BUDGET_S = 3.0  # seconds of timing per choice, all candidates together
Runner = Callable[..., list[Tensor]]


@dataclass(frozen=True)
class Candidate:
    """A way to run a model: whether it is installed, and how to build a runner for it."""

    name: str
    available: Callable[[], bool]
    build: Callable[[NestedUNet, Tensor, str], Runner]  # (BN-folded model, example input, precision)


def _torch(model: NestedUNet, x: Tensor, precision: str) -> Runner:
    bf16 = precision == "bf16"

    def run(x: Tensor, head: int | None = None) -> list[Tensor]:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(x, head=head)

    return run


def _onnxruntime(model: NestedUNet, x: Tensor, precision: str) -> Runner:
    from ..inference.runtimes import OnnxRunner
    from .export import export_onnx

    if precision != "32":
        raise ConfigError(f"onnxruntime runs float32 here, got precision {precision!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, tuple(x.shape), fuse=False, verify=False)
        return OnnxRunner(path)  # the session holds the graph; the file may go


def _openvino(model: NestedUNet, x: Tensor, precision: str) -> Runner:
    import openvino as ov

    from .export import deployable

    net = deployable(model, fuse=False)
    heads = list(model.spec.heads)
    dims = [-1, model.in_channels, *([-1] * model.spatial_dims)]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation, which OpenVINO's converter still uses
        converted = ov.convert_model(net, example_input=x, input=[ov.PartialShape(dims)])
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,  # pinned threads contend with PyTorch's on a shared machine
    }
    compiled = ov.Core().compile_model(converted, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: Tensor, head: int | None = None) -> list[Tensor]:
        request.infer([x.detach().to("cpu", torch.float32).contiguous().numpy()])
        outputs = [torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in range(len(heads))]
        return outputs if head is None else [outputs[heads.index(head)]]

    return run


CANDIDATES: dict[str, Candidate] = {
    "torch": Candidate("torch", lambda: True, _torch),
    "onnxruntime": Candidate("onnxruntime", lambda: find_spec("onnxruntime") is not None, _onnxruntime),
    "openvino": Candidate("openvino", lambda: find_spec("openvino") is not None, _openvino),
}


def precisions(runtime: str, precision: str, device: torch.device) -> str:
    """The precision a runtime runs for the user's `precision`, or raise where it cannot."""
    if precision == "bf16" and runtime == "onnxruntime":
        raise ConfigError("--precision bf16 runs on torch or openvino; for ONNX Runtime quantize to int8 instead")
    if precision == "bf16" and runtime == "openvino" and not bf16_supported():
        raise ConfigError("--precision bf16 with openvino needs a CPU with native bf16 (AVX512-BF16 or AMX)")
    if runtime != "torch" and device.type != "cpu":
        raise ConfigError(f"runtime {runtime!r} runs on the CPU here; use --runtime torch on {device.type}")
    return precision


# --------------------------------------------------------------------------------------------- choice


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/unetpp/runtimes.json`` (``~/.cache`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "unetpp" / "runtimes.json"


def machine() -> str:
    """What makes timings differ between machines: CPU, its vector flags, threads and library versions."""
    flags = "+".join(cpu_flags())
    capability = torch.backends.cpu.get_cpu_capability()  # what ATen dispatches to (ATEN_CPU_CAPABILITY caps it)
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    flags += f" aten={capability}" + (f" onednn<={cap}" if cap else "")
    versions = [f"torch {torch.__version__}"]
    for name in ("onnxruntime", "openvino"):
        if find_spec(name) is not None:
            versions.append(f"{name} {_version(name)}")
    return f"{platform.processor() or platform.machine()} {flags} threads={torch.get_num_threads()} " + ", ".join(
        versions
    )


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def choice_key(model: NestedUNet, shape: tuple[int, ...], head: int | None, precision: str) -> str:
    """The cache key: the architecture (not the weights), input shape, head, precision and machine."""
    text = json.dumps([model.config, list(shape), head, precision, machine()], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, entry: Mapping[str, Any]) -> None:
    from ..utils.atomic import write_text

    data = _read_cache(path)
    data[key] = dict(entry)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(data, indent=1), overwrite=True)  # our own cache file
    except Exception as e:  # a read-only home must not stop a prediction
        logger.debug("runtime choice not cached (%s: %s)", type(e).__name__, e)


def time_runners(runners: Mapping[str, Callable[[], object]], budget_s: float = BUDGET_S) -> dict[str, float]:
    """Median seconds per call of each runner, interleaved, with as many repetitions as fit in `budget_s`."""
    t = time.perf_counter()
    for run in runners.values():  # the warm-up call, also a first estimate of the cost
        run()
    once = max(time.perf_counter() - t, 1e-6)
    reps = int(min(20, max(3, budget_s / once / 2)))
    return interleaved_seconds(runners, reps, warmup=0, settle=1)  # settle: other runtimes' threads idle


@dataclass
class Chosen:
    """A runner and why it was chosen: the candidate, the times (ms) and differences measured, the cache use."""

    runtime: str
    runner: Runner
    times_ms: dict[str, float]
    diffs: dict[str, float]
    cached: bool


def choose(
    model: NestedUNet,
    x: Tensor,
    head: int | None = None,
    precision: str = "32",
    runtime: str = "auto",
    *,
    use_cache: bool = True,
) -> Chosen:
    """The runner for `model` (BN folded, eval mode) on inputs shaped like `x`.

    A named `runtime` is built and returned (:class:`ConfigError` when it is not installed). ``"auto"``
    reuses a cached choice when the cache names an installed runtime; otherwise it builds every installed
    candidate, drops those that fail to build or whose probabilities differ from eager float32 by more
    than :data:`TOLERANCE`, times the rest interleaved (:func:`time_runners`), keeps the fastest and
    caches it. Eager PyTorch in float32 always qualifies, so there is always an answer.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    device = x.device
    if runtime != "auto":
        candidate = CANDIDATES.get(runtime)
        if candidate is None or not candidate.available():
            raise ConfigError(f"runtime {runtime!r} is not installed; pip install 'unetpp[fast]' or use --runtime auto")
        runner = candidate.build(model, x, precisions(runtime, precision, device))
        return Chosen(runtime, runner, {}, {}, False)
    names = [n for n, c in CANDIDATES.items() if c.available() and (n == "torch" or device.type == "cpu")]
    if precision == "bf16":
        names = [n for n in names if n != "onnxruntime" and (n == "torch" or bf16_supported())]
    key, path = choice_key(model, tuple(x.shape), head, precision), cache_path()
    entry = _read_cache(path).get(key) if use_cache else None
    if isinstance(entry, dict) and entry.get("runtime") in names:
        name = entry["runtime"]
        try:
            runner = CANDIDATES[name].build(model, x, precision)
        except Exception as e:  # the cached runtime broke (an update?): measure again
            logger.debug("cached runtime %s failed to build (%s); measuring again", name, e)
        else:
            logger.debug("runtime %s (cached for %s: %s)", name, key, _times_text(entry.get("times_ms", {})))
            return Chosen(name, runner, dict(entry.get("times_ms", {})), dict(entry.get("diffs", {})), True)
    with torch.inference_mode():
        want = ensemble(CANDIDATES["torch"].build(model, x, "32")(x, head))
    runners: dict[str, Runner] = {}
    diffs: dict[str, float] = {}
    for name in names:
        try:
            runner = CANDIDATES[name].build(model, x, precision)
            with torch.inference_mode():
                got = ensemble(runner(x, head))
        except Exception as e:  # a converter that cannot take this model: not a candidate
            logger.debug("runtime %s not usable here (%s: %s)", name, type(e).__name__, str(e)[:200])
            continue
        diffs[name] = float((got.float().cpu() - want.float().cpu()).abs().max())
        if diffs[name] <= TOLERANCE or (name == "torch" and precision == "bf16"):
            runners[name] = runner
        else:
            logger.debug("runtime %s differs from eager by %.2e > %.0e: not used", name, diffs[name], TOLERANCE)
    if not runners:  # e.g. bf16 everywhere disagreeing: float32 eager is the reference
        runners["torch"] = CANDIDATES["torch"].build(model, x, "32")
    with torch.inference_mode():
        seconds = time_runners({n: (lambda r=r: r(x, head)) for n, r in runners.items()})
    times_ms = {n: s * 1e3 for n, s in seconds.items()}
    best = min(times_ms, key=times_ms.__getitem__)
    logger.debug("runtime %s chosen for %s: %s", best, tuple(x.shape), _times_text(times_ms))
    if use_cache:
        entry = {"runtime": best, "times_ms": times_ms, "diffs": diffs, "shape": list(x.shape), "machine": machine()}
        _write_cache(path, key, {**entry, "head": head, "precision": precision})
    return Chosen(best, runners[best], times_ms, diffs, False)


def _times_text(times_ms: Mapping[str, float]) -> str:
    return ", ".join(f"{n} {t:.1f} ms" for n, t in sorted(times_ms.items(), key=lambda kv: kv[1]))


# --------------------------------------------------------------------------------------------- composition


class RuntimeModel:
    """A NestedUNet run in another runtime: a :class:`~unetpp.inference.Segmenter` to give a Predictor.

    The runner is built on the first call, from the shape of that batch of windows (with ``"auto"``:
    measured there, or taken from the cache, by :func:`choose`); :attr:`chosen` then says which runtime
    runs and why.

    Args:
        model: a NestedUNet (batch norm is folded in a copy).
        runtime: ``"onnxruntime"``, ``"openvino"``, ``"torch"`` or ``"auto"``.
        precision: ``"32"`` or ``"bf16"`` (torch and openvino).
    """

    def __init__(self, model: NestedUNet, runtime: str, precision: str = "32") -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.model = fuse_batch_norm(model)
        self.runtime, self.precision = runtime, precision
        self.spec, self.in_channels, self.classes = model.spec, model.in_channels, model.classes
        self.spatial_dims, self.config = model.spatial_dims, model.config
        self.chosen: Chosen | None = None

    def describe(self) -> str:
        return f"{self.model.describe()} in runtime {self.runtime}"

    def __call__(self, x: Tensor, head: int | None = None) -> list[Tensor]:
        if self.chosen is None:
            self.chosen = choose(self.model, x, head, self.precision, self.runtime)
        return self.chosen.runner(x, head=head)


def with_runtime(model: Segmenter, options: PredictOptions) -> Segmenter:
    """`model` as it runs in ``options.runtime``: itself for torch, else a :class:`RuntimeModel`.

    Raises:
        ConfigError: another runtime for a model that is not a NestedUNet (e.g. an ONNX file).
    """
    if options.runtime == "torch":
        return model
    if not isinstance(model, NestedUNet):
        raise ConfigError(f"--runtime {options.runtime} takes a PyTorch model file, not {type(model).__name__}")
    return RuntimeModel(model, options.runtime, options.precision)


def predictor(model: Segmenter | PathLike, options: PredictOptions | None = None) -> Predictor:
    """A :class:`~unetpp.inference.Predictor` of `model` (or of a model file) in the runtime `options` names.

    Raises:
        CheckpointError: a model file that cannot be read.
        ConfigError: see :class:`~unetpp.inference.Predictor` and :func:`with_runtime`.
    """
    options = options or PredictOptions()
    source = None
    if isinstance(model, (str, os.PathLike)):
        source, model = model, load_model(model)
    return Predictor(with_runtime(model, options), options, source=source)


def predict(model: Segmenter | PathLike, image: Tensor | np.ndarray, mode: str = "ensemble", **options: Any) -> Tensor:
    """Probabilities of a (normalised) image or volume of any size, with the paper's inference modes: the one-liner.

    Args:
        model: a NestedUNet (with deep supervision for the ensemble and ``head=``), a pruned model, an
            :class:`~unetpp.inference.OnnxRunner`, or a model file. It is not modified (batch norm is
            folded in a copy).
        image: ``(C, *spatial)`` or ``(B, C, *spatial)``, a tensor or a NumPy array, normalised as in
            training (e.g. :func:`unetpp.data.transforms.normalize_intensity`).
        mode: ``"ensemble"`` (the paper's accurate mode: the mean of the heads' probabilities; of the heads
            training chose on validation where a model file records them, of every head with
            ``ensemble="mean"``) or ``"select:d"`` (head d only, running only the nodes with i + j <= d: the
            same as ``head=d``).
        **options: the fields of :class:`~unetpp.inference.PredictOptions` (``head``, ``ensemble``, ``roi_size``,
            ``overlap``, ``blend``, ``sw_batch_size``, ``tta``, ``precision``, ``runtime``).

    Returns:
        float32 probabilities ``(B, classes, *spatial)`` or ``(classes, *spatial)``, following `image`:
        sigmoid of the foreground for one class, softmax over classes otherwise.

    Raises:
        ConfigError: unknown head or mode, `mode` and `head` that disagree, or a bad option.
        InputShapeError: wrong rank or channel count.

    Example:
        >>> m = unetpp.build_model("unet++", depth=2, widths=(4, 8, 16))
        >>> unetpp.predict(m, torch.randn(1, 97, 61), roi_size=32, tta=True).shape
        torch.Size([1, 97, 61])
    """
    head = parse_mode(mode)
    if head is not None and options.get("head", head) != head:
        raise ConfigError(f"mode={mode!r} and head={options['head']!r} disagree; give one of them")
    options.setdefault("head", head)
    return predictor(model, PredictOptions(**options))(image)


__all__ = [
    "RuntimeModel",
    "predict",
    "predictor",
    "with_runtime",
    "BUDGET_S",
    "CANDIDATES",
    "RUNTIMES",
    "TOLERANCE",
    "Candidate",
    "Chosen",
    "Runtime",
    "cache_path",
    "choice_key",
    "choose",
    "machine",
    "precisions",
    "time_runners",
]
