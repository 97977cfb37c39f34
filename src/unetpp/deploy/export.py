"""Deployment formats for trained UNet++ models: ONNX (+ int8), torch.export, and safetensors + JSON.

UNet++ (Zhou et al., "UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image
Segmentation", IEEE TMI 2019, doi:10.1109/TMI.2019.2959609) is pruned at inference for devices with
little compute; this module turns a trained (or pruned) model into files such devices run:

* :func:`export_onnx` writes an ONNX graph through ``torch.onnx.export(dynamo=True)``, with dynamic
  batch and spatial sizes (multiples of 2^depth), then runs it in ONNX Runtime next to the eager model
  and reports the largest absolute difference.
* :func:`quantize_onnx` makes an int8 copy with ONNX Runtime's quantization, dynamic or static (with
  calibration on a few images).
* :func:`export_program` saves a ``torch.export`` program (no Python class needed to run it).
* :func:`export_safetensors` shares weights without pickle, with the build config in a JSON sidecar file.

This module only writes (and verifies what it wrote); :func:`unetpp.inference.load_model` reads
every file back (``.onnx`` in an ``OnnxRunner``, the others through :func:`unetpp.load`).

Batch norm is folded into the convolutions before a graph is exported, so the graph is the one
prediction runs. A pruned model is an ordinary model with fewer nodes, so it exports as small as it is.
Every writer goes through :func:`unetpp.utils.atomic.atomic_write` (temporary file, then rename), which
refuses to overwrite unless asked (:class:`~unetpp.errors.ExportError`).
TorchScript is not offered: the grid's ``ModuleDict`` indexed by computed keys cannot be scripted.

onnx, onnxruntime and safetensors (the ``export`` extra) are imported inside the functions that use them.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from ..errors import ConfigError, ExportError
from ..inference.runtimes import INPUT_NAME, ONNX_FORMAT, OnnxRunner
from ..models import NestedUNet
from ..models.checkpoint import CONFIG_KEY, SAFETENSORS_FORMAT, sidecar
from ..models.fusion import fuse_batch_norm
from ..models.provenance import RECORD_KEY
from ..utils.atomic import atomic_write

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely it reproduces the eager model.

    Args:
        files: every file written, the main one first (safetensors also writes a JSON sidecar).
        bytes: total size on disk.
        max_abs_diff: largest absolute difference between the exported and the eager model's logits over
            all heads and test inputs; ``None`` when not verified.
    """

    files: tuple[Path, ...]
    bytes: int
    max_abs_diff: float | None = None

    @property
    def path(self) -> Path:
        return self.files[0]


# --------------------------------------------------------------------------------------------- helpers


def _header_meta(header: Mapping[str, Any] | None) -> dict[str, str]:
    """The metadata entry that carries `header` (nothing when there is nothing to carry)."""
    header = {k: v for k, v in (header or {}).items() if v is not None}
    return {RECORD_KEY: json.dumps(header)} if header else {}


def _check_model(model: object) -> NestedUNet:
    if not isinstance(model, NestedUNet):
        raise ConfigError(f"export takes a NestedUNet (built, loaded or pruned), got {type(model).__name__}")
    return model


def _no_check(x: Tensor) -> None:
    """Stands in for NestedUNet.check_input while exporting.

    The check converts sizes to Python ints, which would freeze dynamic sizes to the example's; the
    exported graph is instead declared to take multiples of 2^depth only.
    """


def deployable(model: NestedUNet, fuse: bool = True) -> NestedUNet:
    """An eval-mode copy ready to export: batch norm folded (if `fuse`) and the Python-side size check off."""
    out = fuse_batch_norm(model) if fuse else copy.deepcopy(model).eval()
    out.check_input = _no_check  # type: ignore[method-assign]
    return out


def example_input(model: NestedUNet, example_shape: Sequence[int] | None) -> Tensor:
    """A seeded random input of `example_shape`, by default ``(1, C, 4 * 2^depth, ...)``.

    Raises:
        InputShapeError: a shape the model does not take (the model says why).
    """
    if example_shape is None:
        example_shape = (1, model.in_channels, *(4 * 2**model.depth,) * model.spatial_dims)
    x = torch.randn(tuple(example_shape), generator=torch.Generator().manual_seed(0))
    model.check_input(x)
    return x


def _dynamic_shapes(model: NestedUNet) -> dict[str, dict[int, object]]:
    """Batch and every spatial size dynamic; spatial sizes only as multiples of 2^depth, as the model needs."""
    from torch.export import Dim

    m = 2**model.depth
    dims: dict[int, object] = {0: Dim("batch", min=1)}
    for k in range(model.spatial_dims):
        dims[2 + k] = m * Dim(f"blocks{k}", min=1)
    return {"x": dims}


def _trace_input(x: Tensor, depth: int, dynamic: bool) -> Tensor:
    """The example itself, or for a dynamic graph one with batch >= 2 and >= 2 blocks of 2^depth per axis.

    torch.export specialises sizes 0 and 1 to constants, so a batch of 1 (or a spatial size of exactly
    2^depth) would freeze that axis of the graph; tiling the example avoids it.
    """
    if not dynamic:
        return x
    m = 2**depth
    reps = [2 if x.shape[0] == 1 else 1, 1, *(2 if s == m else 1 for s in x.shape[2:])]
    return x.repeat(reps) if any(r > 1 for r in reps) else x


def _other_shape(shape: Sequence[int], depth: int) -> tuple[int, ...]:
    """A second test shape (another batch and spatial size) that proves the graph is really dynamic."""
    return (shape[0] + 1, shape[1], *(s + 2**depth for s in shape[2:]))


def _max_diff(got: Sequence[Tensor | np.ndarray], want: Sequence[Tensor]) -> float:
    if len(got) != len(want):
        raise ExportError(f"exported model returns {len(got)} outputs, the eager model {len(want)}")
    return max(float((torch.as_tensor(g).float() - w.float()).abs().max()) for g, w in zip(got, want, strict=True))


# --------------------------------------------------------------------------------------------- ONNX


def export_onnx(
    model: NestedUNet,
    path: PathLike,
    example_shape: Sequence[int] | None = None,
    dynamic: bool = True,
    *,
    fuse: bool = True,
    opset: int | None = None,
    verify: bool = True,
    overwrite: bool = False,
    header: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Export to ONNX with ``torch.onnx.export(dynamo=True)`` and check it against the eager model in ONNX Runtime.

    The graph has one input ``image`` ``(B, C, *spatial)`` and one output ``head{j}`` per head. The
    model's config is stored in the file's metadata (``unetpp.config``), which
    :class:`~unetpp.inference.runtimes.OnnxRunner` reads.

    Args:
        model: a NestedUNet; prune it first (:func:`unetpp.prune`) to export one fast head.
        path: the ``.onnx`` file.
        example_shape: the traced input shape; default ``(1, C, 4 * 2^depth, ...)``.
        dynamic: batch and spatial sizes free (spatial sizes must stay multiples of 2^depth); otherwise
            the graph takes `example_shape` only.
        fuse: fold batch norm into the convolutions first (fewer nodes; same outputs up to rounding).
        opset: ONNX opset; ``None`` lets torch choose.
        verify: run the file in ONNX Runtime on `example_shape` (and, if `dynamic`, on a second shape)
            and report the largest absolute difference from the eager model.
        overwrite: replace an existing file.
        header: what prediction repeats from the source file (:func:`unetpp.models.provenance.exported_header`:
            preprocessing, ensemble heads), stored in the metadata (``unetpp.header``).

    Returns:
        An :class:`ExportReport` with ``max_abs_diff``.

    Raises:
        ExportError: the file exists and `overwrite` is False.
        ConfigError: `model` is not a NestedUNet.
        InputShapeError: `example_shape` does not fit the model.
    """
    model = _check_model(model)
    x = example_input(model, example_shape)
    net = deployable(model, fuse)
    names = [f"head{j}" for j in model.spec.heads]

    def write(tmp: Path) -> None:
        program = torch.onnx.export(
            net,
            (_trace_input(x, model.depth, dynamic),),
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_shapes=_dynamic_shapes(model) if dynamic else None,
            opset_version=opset,
        )
        meta = {"unetpp.format": ONNX_FORMAT, CONFIG_KEY: json.dumps(model.config), "unetpp.fused_bn": str(fuse)}
        program.model.metadata_props.update({**meta, **_header_meta(header)})
        program.save(tmp)

    path = atomic_write(path, write, overwrite, ExportError)
    diff = None
    if verify:
        runner, eager = OnnxRunner(path), copy.deepcopy(model).eval()
        shapes = [tuple(x.shape)] + ([_other_shape(x.shape, model.depth)] if dynamic else [])
        diffs = []
        with torch.inference_mode():
            for k, shape in enumerate(shapes):
                xi = x if k == 0 else torch.randn(shape, generator=torch.Generator().manual_seed(1))
                diffs.append(_max_diff(runner(xi), eager(xi)))
        diff = max(diffs)
        logger.info("%s: ONNX Runtime vs eager max abs diff %.3g over %s", path, diff, shapes)
    return ExportReport((path,), path.stat().st_size, diff)


class _Calibration:
    """Feeds calibration images to ONNX Runtime's static quantization, one batch per call."""

    def __init__(self, images: Iterable[Tensor | np.ndarray]) -> None:
        self._it = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        import numpy as np

        x = next(self._it, None)
        if x is None:
            return None
        arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        return {INPUT_NAME: np.ascontiguousarray(arr, dtype=np.float32)}

    def rewind(self) -> None:  # part of the reader interface; one pass is all we need
        pass


def quantize_onnx(
    src: PathLike,
    dst: PathLike,
    method: Literal["dynamic", "static"] = "static",
    *,
    calibration: Iterable[Tensor | np.ndarray] | None = None,
    per_channel: bool = True,
    overwrite: bool = False,
) -> ExportReport:
    """An int8 copy of an exported ONNX file, through ``onnxruntime.quantization``.

    ``"static"`` quantizes weights and activations (QDQ format, uint8 activations and int8 weights, the
    pairing ONNX Runtime recommends on x86) with activation ranges measured on `calibration`: a few
    normalised training images, ``(B, C, *spatial)`` each, sizes divisible by 2^depth. ``"dynamic"``
    quantizes weights only and measures activation ranges at run time; it needs no calibration but
    runs convolutions as ``ConvInteger``, which measured 6-7x *slower* than float32 for UNet++ on an
    AVX-512 CPU, while static int8 was 2-2.8x faster at 512² (benchmarks/RESULTS.md): prefer static.

    Args:
        src: a file from :func:`export_onnx`.
        dst: the int8 ``.onnx`` file; it keeps the unetpp metadata, so ``OnnxRunner`` opens it.
        method: ``"static"`` or ``"dynamic"``.
        calibration: images for ``"static"``.
        per_channel: one scale per output channel of each weight (more accurate for convolutions).
        overwrite: replace an existing `dst`.

    Raises:
        ExportError: `dst` exists.
        CheckpointError: `src` is not a unetpp ONNX file.
        ConfigError: unknown method, or ``"static"`` without calibration images.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in ("dynamic", "static"):
        raise ConfigError(f"method must be 'dynamic' or 'static', got {method!r}")
    if method == "static" and calibration is None:
        raise ConfigError("static quantization needs calibration images (a few normalised training images)")
    src = Path(src)
    meta = OnnxRunner(src).metadata  # also checks src is ours

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=f".{Path(dst).name}.work-") as work:  # rerun: removed
            pre, out = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
            # shape inference and graph optimisation first, as ONNX Runtime's quantization guide asks
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            if method == "static":
                reader = _Calibration(calibration)  # type: ignore[arg-type]
                quantize_static(
                    str(pre),
                    str(out),
                    reader,  # type: ignore[arg-type]
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
            else:
                quantize_dynamic(str(pre), str(out), per_channel=per_channel, weight_type=QuantType.QInt8)
            proto = onnx.load(str(out))
            onnx.helper.set_model_props(proto, {**meta, "unetpp.quantized": method})
            onnx.save(proto, str(tmp))

    path = atomic_write(dst, write, overwrite, ExportError)
    return ExportReport((path,), path.stat().st_size)


# --------------------------------------------------------------------------------------------- torch.export


def export_program(
    model: NestedUNet,
    path: PathLike,
    example: Tensor | None = None,
    *,
    dynamic: bool = True,
    fuse: bool = True,
    verify: bool = True,
    overwrite: bool = False,
) -> ExportReport:
    """Save a ``torch.export`` program (``.pt2``): runs without unetpp's classes; config in ``unetpp_config.json``.

    Load it with ``torch.export.load(path).module()``; it returns the list of head logits.

    Args:
        model: a NestedUNet (pruned or not).
        path: the ``.pt2`` file.
        example: an input to trace; default ``(1, C, 4 * 2^depth, ...)``.
        dynamic: batch and spatial sizes free (multiples of 2^depth).
        fuse: fold batch norm first.
        verify: reload the file and report the largest absolute difference from the eager model.
        overwrite: replace an existing file.

    Raises:
        ExportError: the file exists and `overwrite` is False.
        InputShapeError: `example` does not fit the model.
    """
    model = _check_model(model)
    x = example_input(model, None) if example is None else example
    model.check_input(x)
    net = deployable(model, fuse)
    dynamic_shapes = _dynamic_shapes(model) if dynamic else None
    program = torch.export.export(net, (_trace_input(x, model.depth, dynamic),), dynamic_shapes=dynamic_shapes)
    extra = {"unetpp_config.json": json.dumps(model.config)}
    path = atomic_write(path, lambda tmp: torch.export.save(program, tmp, extra_files=extra), overwrite, ExportError)
    diff = None
    if verify:
        loaded = torch.export.load(path).module()
        with torch.inference_mode():
            diff = _max_diff(loaded(x), copy.deepcopy(model).eval()(x))
        logger.info("%s: torch.export program vs eager max abs diff %.3g", path, diff)
    return ExportReport((path,), path.stat().st_size, diff)


# --------------------------------------------------------------------------------------------- safetensors


def export_safetensors(
    model: NestedUNet, path: PathLike, *, overwrite: bool = False, header: Mapping[str, Any] | None = None
) -> ExportReport:
    """Weights as safetensors (no pickle: safe to share) plus the build config as JSON next to them.

    The config is also stored in the safetensors header, so the weights file alone is enough;
    :func:`unetpp.load` reads either; `header` as for :func:`export_onnx`. Batch norm is kept as trained
    (not folded), so the model can be fine-tuned after loading.

    Raises:
        ExportError: a file exists and `overwrite` is False (then neither file is written).
    """
    from safetensors.torch import save_file

    model = _check_model(model)
    path, side = Path(path), sidecar(path)
    config = json.dumps(model.config, indent=1)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": SAFETENSORS_FORMAT, CONFIG_KEY: json.dumps(model.config), **_header_meta(header)}

    def write(tmp: Path) -> None:
        save_file(state, tmp, metadata=meta)
        # The sidecar goes in place before the weights do: if it exists (without `overwrite`), the
        # weights' temporary file is dropped and neither file has been touched.
        atomic_write(side, lambda t: t.write_text(config + "\n"), overwrite, ExportError)

    atomic_write(path, write, overwrite, ExportError)
    return ExportReport((path, side), path.stat().st_size + side.stat().st_size)


__all__ = [
    "ExportReport",
    "export_onnx",
    "export_program",
    "export_safetensors",
    "quantize_onnx",
    "sidecar",
]
