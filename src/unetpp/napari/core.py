"""The plugin's work without Qt: open a model file, turn a layer into model inputs, segment it.

Nothing here imports napari or Qt, so it is tested on machines where Qt cannot start. Prediction is
``unetpp predict``'s, on an array instead of a file: the same loader (:func:`unetpp.inference.load_model`),
the preprocessing the checkpoint records (channels, normalisation, target spacing: ``prepare_input``),
the same :class:`~unetpp.inference.Predictor` and the same threshold or argmax, so a Labels layer equals
the mask the CLI writes for the same image bit for bit (tested). Detectors go through the CLI's
instance path (``detector_label_map``).

Comparing depths is :mod:`.compare`. Every name taken from unetpp outside its public API is imported
in this module only (the imports marked ``_seam``), so a move inside unetpp is one edit here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, InputShapeError

Progress = Callable[[int, int, str], None]  # (done, total, what)

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")  # what Predictor(runtime=...) takes


class Cancelled(Exception):
    """The user cancelled the run; nothing is added to the viewer."""


@dataclass
class Opened:
    """A model file, opened once: the model, what it is, and the preprocessing its checkpoint records."""

    path: Path
    model: Any  # NestedUNet, OnnxRunner or a Mask R-CNN(++) detector
    kind: str  # "semantic" or "instance"
    prep: dict[str, Any] = field(default_factory=dict)
    tta: bool = False  # flips at prediction, as training chose them on validation (the widget's box starts so)

    @property
    def heads(self) -> tuple[int, ...]:
        return tuple(self.model.spec.heads) if self.kind == "semantic" else ()

    @property
    def in_channels(self) -> int:
        return int(self.model.config["in_channels"]) if self.kind == "instance" else int(self.model.in_channels)

    @property
    def spatial_dims(self) -> int:
        return 2 if self.kind == "instance" else int(self.model.spatial_dims)

    @property
    def classes(self) -> int:
        return 1 if self.kind == "instance" else int(self.model.classes)

    @property
    def is_torch(self) -> bool:
        import torch

        return isinstance(self.model, torch.nn.Module)

    @property
    def name(self) -> str:
        """What layers are named after: the file's stem, or the run's folder for ``runs/em/checkpoints/best.ckpt``."""
        stem = self.path.name.split(".")[0]
        if stem in ("best", "last") and self.path.parent.name == "checkpoints":
            return self.path.parent.parent.name or stem
        return stem

    def describe(self) -> str:
        """One line for the widget: family, heads, channels, dimensions, parameters."""
        if self.kind == "instance":
            what = f"{self.model.config.get('name')} detector (instances)"
        else:
            model_name = self.model.config.get("name", "model") if isinstance(self.model.config, dict) else "model"
            what = f"{model_name}, depth {self.model.spec.depth}, heads {list(self.heads)}"
            if not self.is_torch:
                what += ", ONNX"
        params = f", {count_parameters(self.model) / 1e6:.2f} M parameters" if self.is_torch else ""
        return f"{what}, {self.in_channels}->{self.classes} channel(s), {self.spatial_dims}D{params}"


def open_model(path: str | Path) -> Opened:
    """Open any model file ``unetpp predict`` takes (``.ckpt``, ``.pt``, ``.safetensors``, ``.onnx``, detectors).

    Raises:
        CheckpointError: missing, corrupt or foreign file, in the CLI's words.
    """
    from ..inference import load_model
    from ..inference.instances import is_detector  # _seam
    from ..inference.preprocess import saved_preprocessing  # _seam

    path = Path(path).expanduser()
    model = load_model(path)
    kind = "instance" if is_detector(model) else "semantic"
    from ..models.provenance import recorded_tta  # _seam

    prep = (saved_preprocessing(path) or {}) if kind == "semantic" else {}
    return Opened(path, model, kind, prep, tta=kind == "semantic" and recorded_tta(path) is True)


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def depth_parameters(opened: Opened, depth: int | None) -> int | None:
    """Parameters of the model that runs for `depth` (None: the whole model, as the ensemble needs it)."""
    if not opened.is_torch:
        return None
    if depth is None or len(opened.heads) < 2:
        return count_parameters(opened.model)
    from .. import prune

    return count_parameters(prune(opened.model, depth))


# --------------------------------------------------------------------------------------------- layer -> inputs


@dataclass(frozen=True)
class Source:
    """An image layer's data as the plugin reads it.

    Args:
        data: the layer's array (level 0 of a multiscale layer).
        rgb: channels are the last axis (napari's RGB/RGBA images).
        name: what messages name: the file the layer was opened from, else the layer's name.
        scale: the layer's scale (voxel spacing) per axis.
    """

    data: Any
    rgb: bool = False
    name: str = "image"
    scale: tuple[float, ...] | None = None


def split_inputs(source: Source, opened: Opened) -> tuple[np.ndarray, tuple[int, ...]]:
    """The layer as ``(*lead, C, *spatial)``: one model input per index of the leading axes.

    A 2D model takes a 2D image, an RGB image, or a stack (each plane on its own; a first axis of the
    model's channel count, when the model takes more than one, is channels). A 3D model takes a volume,
    or channels first ``(C, Z, Y, X)``. Any further leading axes (time) are run one by one.

    Raises:
        DataError: an image of too few dimensions or of a type that holds no numbers (one line, named).
    """
    arr = np.asarray(source.data)
    sd = opened.spatial_dims
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{source.name}: has unsupported dtype {arr.dtype}; use an image of numbers")
    if source.rgb:
        if arr.ndim < sd + 1:
            raise DataError(f"{source.name}: an RGB layer of shape {arr.shape} has no {sd}-D image")
        arr = np.moveaxis(arr, -1, arr.ndim - 1 - sd)
    elif arr.ndim < sd:
        raise DataError(
            f"{source.name}: is {arr.ndim}-D (shape {arr.shape}) but the model takes {sd}-D images; "
            "choose another layer or model"
        )
    elif not (arr.ndim > sd and opened.in_channels > 1 and arr.shape[-sd - 1] == opened.in_channels):
        arr = np.expand_dims(arr, arr.ndim - sd)
    lead = tuple(arr.shape[: arr.ndim - sd - 1])
    return arr, lead


def _items(arr: np.ndarray, lead: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    for index in np.ndindex(*lead):
        yield index, np.ascontiguousarray(arr[index])


def _check_finite(raw: np.ndarray, name: str) -> None:
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise DataError(f"{name}: holds NaN or infinite values; fix or mask them first")


# --------------------------------------------------------------------------------------------- segmenting


@dataclass
class Result:
    """One run: the label map, the probabilities (when asked), and the time the model took."""

    mode: str  # "ensemble", "L2", "instances"
    labels: np.ndarray  # (*lead, *spatial)
    probabilities: np.ndarray | None  # (*lead, *spatial) for one class, (*lead, K, *spatial) for K
    seconds: float  # in the model (windows, TTA, runtime choice), all inputs together
    runtime: str = "torch"
    classes: int = 1
    spatial_dims: int = 2

    @property
    def lead(self) -> int:
        """How many leading axes (planes of a stack, time) come before the spatial ones."""
        return self.labels.ndim - self.spatial_dims


def mode_name(mode: str) -> str:
    """``"ensemble"`` -> ``"ensemble"``, ``"select:2"`` -> ``"L2"``."""
    return mode if mode == "ensemble" else f"L{mode.partition(':')[2]}"


class _Watch:
    """Counts the model's forward passes for progress, and stops a run between two of them when cancelled."""

    def __init__(self, cancel: threading.Event | None, progress: Progress | None, total: int, what: str) -> None:
        self.cancel, self.progress, self.total, self.what, self.done = cancel, progress, max(total, 1), what, 0

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled

    def step(self, n: int = 1) -> None:
        self.check()
        self.done += n
        if self.progress is not None:
            self.progress(min(self.done, self.total - 1), self.total, self.what)

    def hook(self, _module: Any, _args: Any) -> None:  # a torch forward pre-hook
        self.step()


def _passes(opened: Opened, shape: tuple[int, ...], tta: bool) -> int:
    """Forward passes the predictor makes on an image of `shape` (spatial), with its defaults (automatic window,
    overlap 0.5, 4 windows a batch): windows / batch x flips. Only for the progress bar."""
    from ..inference import auto_window, window_starts

    multiple = 2**opened.model.spec.depth
    fit = tuple(-(-s // multiple) * multiple for s in shape)  # the image rounded up to what the model takes
    roi = auto_window(shape, multiple) or fit
    roi = tuple(min(r, f) for r, f in zip(roi, fit, strict=True))
    windows = np.prod([len(window_starts(max(s, r), r, 0.5)) for s, r in zip(shape, roi, strict=True)])
    return -(-int(windows) // 4) * (2 ** len(shape) if tta else 1)


def segment(
    opened: Opened,
    source: Source,
    mode: str = "ensemble",
    *,
    threshold: float = 0.5,
    tta: bool | None = None,
    postprocess: bool = True,
    runtime: str = "auto",
    probabilities: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Result:
    """Segment a layer as ``unetpp predict`` segments a file (see the module docstring).

    Args:
        mode: ``"ensemble"`` or ``"select:d"`` (only the nodes of depth d run); ignored for detectors.
        threshold: foreground probability of binary models; the score kept for detectors.
        tta: average over flips; None: as the model file records (``unetpp predict``'s default).
        postprocess: remove the small components the model file records (``unetpp predict``'s default).
        runtime: ``"auto"`` (the fastest measured, cached per machine), ``"torch"``, ``"onnxruntime"``,
            ``"openvino"``; an ONNX file always runs in ONNX Runtime.
        progress: called with (done, total, what) from the calling thread.
        cancel: set it to stop the run between two forward passes (:class:`Cancelled` is raised).

    Raises:
        UnetppError: a bad option or an image the model cannot take, with the CLI's one-line message.
        Cancelled: `cancel` was set.
    """
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold!r}")
    arr, lead = split_inputs(source, opened)
    if opened.kind == "instance":
        return _instances(opened, source, arr, lead, threshold, progress, cancel)
    import torch

    from ..data.io import ImageMeta  # _seam
    from ..deploy.backends import with_runtime
    from ..inference import PredictOptions, Predictor
    from ..inference.predictor import parse_mode
    from ..inference.preprocess import prepare_input  # _seam

    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime != "torch":
        from .guard import import_dynamo_safely

        import_dynamo_safely()  # exporting for the other runtimes imports torch._dynamo
    if not opened.is_torch:
        runtime = "torch"  # an ONNX file has one runtime, its own: Predictor calls that "torch"
    options = PredictOptions(head=parse_mode(mode), tta=tta, postprocess=postprocess, runtime=runtime)
    predictor = Predictor(with_runtime(opened.model, options), options, source=str(opened.path))
    sd, name = opened.spatial_dims, source.name
    spacing = tuple(float(s) for s in source.scale[-sd:]) if source.scale else (1.0,) * sd
    meta = ImageMeta(Path(name), sd, spacing)
    normalize = opened.prep.get("normalize", "zscore")
    n_items = int(np.prod(lead)) if lead else 1
    watch = _Watch(cancel, progress, _passes(opened, arr.shape[-sd:], predictor.tta) * n_items, mode_name(mode))
    prepared = getattr(predictor, "model", None)  # the batch-norm-folded copy that runs
    handle = prepared.register_forward_pre_hook(watch.hook) if isinstance(prepared, torch.nn.Module) else None
    labels: np.ndarray | None = None
    probs: np.ndarray | None = None
    seconds = 0.0
    try:
        for index, raw in _items(arr, lead):
            watch.check()
            _check_finite(raw, name)
            image, back = prepare_input(raw, meta, opened.in_channels, opened.prep, normalize)
            t0 = time.perf_counter()
            try:
                prob = predictor(image).cpu().numpy()  # (K, *spatial)
            except InputShapeError as e:
                raise DataError(f"{name}: {e}") from e
            seconds += time.perf_counter() - t0
            scale = 1.0
            if back is not None:  # predicted on the training grid: back to the layer's grid
                from ..data.resample import resample_probabilities  # _seam
                from ..inference.components import voxel_scale  # _seam

                prob = resample_probabilities(prob, back)
                scale = voxel_scale(opened.prep, spacing)
            mask = predictor.labels(prob, threshold, scale)
            mask = mask.astype("uint8" if prob.shape[0] <= 256 else "int32")  # as the CLI writes it
            if labels is None:
                labels = np.zeros(lead + mask.shape, mask.dtype)
            labels[index] = mask
            if probabilities:
                p = prob[0] if prob.shape[0] == 1 else prob
                if probs is None:
                    probs = np.zeros(lead + p.shape, np.float32)
                probs[index] = p
            if handle is None:  # no forward passes seen: one step per input
                watch.step(max(1, watch.total // n_items))
    finally:
        if handle is not None:
            handle.remove()
    assert labels is not None  # at least one input
    chosen = getattr(getattr(predictor.model, "chosen", None), "runtime", None)
    used = chosen or ("onnxruntime" if not opened.is_torch else "torch")
    return Result(mode_name(mode), labels, probs, seconds, used, opened.classes, sd)


def _instances(
    opened: Opened,
    source: Source,
    arr: np.ndarray,
    lead: tuple[int, ...],
    threshold: float,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> Result:
    """``unetpp predict`` for detectors on every 2D image of the layer: 16-bit instance label maps."""
    import torch

    from ..data.instances import scale_image  # _seam
    from ..inference import match_channels
    from ..inference.instances import detector_label_map  # _seam

    n_items = int(np.prod(lead)) if lead else 1
    watch = _Watch(cancel, progress, n_items + 1, "instances")
    out = np.zeros(lead + arr.shape[-2:], np.uint16)
    seconds = 0.0
    for index, raw in _items(arr, lead):
        watch.check()
        _check_finite(raw, source.name)
        image = match_channels(raw, opened.in_channels, source.name)
        x = torch.from_numpy(scale_image(np.ascontiguousarray(image), raw.dtype))
        t0 = time.perf_counter()
        labels = detector_label_map(opened.model, x, threshold)
        seconds += time.perf_counter() - t0
        if labels.max(initial=0) > np.iinfo(np.uint16).max:
            raise DataError(f"{source.name}: {labels.max()} instances do not fit a 16-bit label map")
        out[index] = labels.astype(np.uint16)
        watch.step()
    return Result("instances", out, None, seconds, "torch", 1, 2)


__all__ = [
    "RUNTIMES",
    "Cancelled",
    "Opened",
    "Result",
    "Source",
    "mode_name",
    "open_model",
    "segment",
    "split_inputs",
]
