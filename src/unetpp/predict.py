"""Prediction on images and volumes of any size: N-D sliding window, flip TTA, ensemble or one head.

UNet++ (Zhou et al., "UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image
Segmentation", IEEE TMI 2019, doi:10.1109/TMI.2019.2959609) trains one model with a head on every
X^{0,j}. At inference it serves an accurate mode, the mean of the heads' probabilities
(``mode="ensemble"``), and fast modes that run only the nodes one head needs (``head=d``, or a model
pruned with :func:`unetpp.prune`). This module runs any of them on inputs of any size:

* :func:`sliding_window` tiles ``(B, C, *spatial)`` with overlapping windows, batches the windows and
  blends their predictions with a Gaussian importance map (the window centre is trusted more than its
  border, where the receptive field is cut), as MONAI and nnU-Net do. 2D and 3D share the code.
* Images smaller than the window, or whose size the model cannot take (every size must be divisible
  by 2^depth), are padded and the output is cropped back, so the result always has the input's size.
* Flip test-time augmentation averages the predictions over every flip of the spatial axes, inside
  each window, so it composes with the tiling.
* bfloat16 runs the convolutions under CPU/GPU autocast after folding batch norm into them; blending
  and the returned probabilities stay float32.

:func:`predict_files` does the same for files on disk and writes masks in each input's own format
(reading and writing live in :mod:`unetpp.data.io`, imported only when files are used).
"""

from __future__ import annotations

import glob
import itertools
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import Tensor

from .errors import ConfigError, DataError, InputShapeError
from .models import GridSpec, NestedUNet
from .models import load as load_checkpoint
from .models.inference import fuse_batch_norm
from .padding import pad_end

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

Blend = Literal["gaussian", "constant"]
Precision = Literal["float32", "bfloat16"]
PathLike = str | os.PathLike[str]
PRECISIONS = ("float32", "bfloat16")
BLENDS = ("gaussian", "constant")


class Segmenter(Protocol):
    """What prediction needs from a model: NestedUNet and :class:`unetpp.export.OnnxRunner` both fit.

    ``__call__(x, head=None)`` returns the logits of every head (or of head ``head`` only) as a list of
    ``(B, classes, *spatial)`` tensors.
    """

    spec: GridSpec
    in_channels: int
    classes: int
    spatial_dims: int

    def __call__(self, x: Tensor, head: int | None = None) -> list[Tensor]: ...


# --------------------------------------------------------------------------------------------- window


def sliding_window(
    predict_fn: Callable[[Tensor], Tensor],
    image: Tensor,
    roi_size: int | Sequence[int] | None,
    overlap: float = 0.5,
    blend: Blend = "gaussian",
    sw_batch_size: int = 4,
    *,
    multiple: int = 1,
    sigma_scale: float = 0.125,
) -> Tensor:
    """Run `predict_fn` on overlapping windows of `image` and blend the results into one map.

    Window positions follow MONAI's ``sliding_window_inference``: a step of ``int(roi * (1 - overlap))``
    per axis, the last window flush with the border, so both tile an image the same way. Each window
    covers all ``B`` images, and ``sw_batch_size`` windows go through `predict_fn` together.

    Args:
        predict_fn: maps ``(n, C, *roi)`` to ``(n, K, *roi)`` (e.g. probabilities).
        image: ``(B, C, *spatial)``.
        roi_size: window size per spatial axis (an int for all axes); ``None`` is the whole image. A
            window larger than the image shrinks to the image (rounded up to `multiple`), and the image
            is padded with zeros to the window and cropped back, so the output has the input's size.
        overlap: fraction of a window shared with its neighbour along each axis, in [0, 1).
        blend: ``"gaussian"`` weights each window by a Gaussian of sigma ``sigma_scale * roi`` centred
            on it (fewer seams where the receptive field is cut at the window border); ``"constant"``
            averages overlapping windows equally.
        sw_batch_size: windows per call of `predict_fn`.
        multiple: every window size must be divisible by it (2^depth for a UNet++).
        sigma_scale: see `blend`.

    Returns:
        ``(B, K, *spatial)`` float32 on `image`'s device.

    Raises:
        ConfigError: a bad argument (the value is in the message), or a window not divisible by `multiple`.
        InputShapeError: `image` is not ``(B, C, *spatial)`` or `predict_fn` returns the wrong shape.
    """
    if image.ndim < 3:
        raise InputShapeError(f"image must be (B, C, *spatial), got shape {tuple(image.shape)}")
    check_window_args(overlap, blend, sw_batch_size, multiple)
    size = tuple(int(s) for s in image.shape[2:])
    roi = window_size(size, roi_size, multiple)
    padded = tuple(max(s, r) for s, r in zip(size, roi, strict=True))
    image = pad_end(image, padded)
    windows = [
        tuple(slice(a, a + r) for a, r in zip(starts, roi, strict=True))
        for starts in itertools.product(*(window_starts(s, r, overlap) for s, r in zip(padded, roi, strict=True)))
    ]
    weight = importance_map(roi, blend, sigma_scale, str(image.device))  # (*roi)
    batch = image.shape[0]
    out: Tensor | None = None
    norm = torch.zeros(padded, device=image.device)
    for first in range(0, len(windows), sw_batch_size):
        chunk = windows[first : first + sw_batch_size]
        pred = predict_fn(torch.cat([image[(..., *w)] for w in chunk]))
        if pred.ndim != image.ndim or pred.shape[0] != batch * len(chunk) or tuple(pred.shape[2:]) != roi:
            raise InputShapeError(
                f"predict_fn returned shape {tuple(pred.shape)} for windows of shape "
                f"{(batch * len(chunk), image.shape[1], *roi)}; it must keep the batch and spatial sizes"
            )
        if out is None:
            out = torch.zeros((batch, pred.shape[1], *padded), device=image.device)
        pred = pred.float()
        for k, w in enumerate(chunk):
            out[(..., *w)].addcmul_(pred[k * batch : (k + 1) * batch], weight)
            norm[w] += weight
    assert out is not None  # there is always at least one window
    out /= norm
    return out[(..., *(slice(0, s) for s in size))] if padded != size else out


def check_window_args(overlap: float, blend: str, sw_batch_size: int, multiple: int = 1) -> None:
    """Validate the window options once, with the value in the message.

    Raises:
        ConfigError: a value out of range.
    """
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    if blend not in BLENDS:
        raise ConfigError(f"blend must be one of {BLENDS}, got {blend!r}")
    if not isinstance(sw_batch_size, int) or sw_batch_size < 1:
        raise ConfigError(f"sw_batch_size must be a positive integer, got {sw_batch_size!r}")
    if not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"multiple must be a positive integer, got {multiple!r}")


def window_size(size: Sequence[int], roi_size: int | Sequence[int] | None, multiple: int = 1) -> tuple[int, ...]:
    """The window actually used for an image of `size`: the request, shrunk to the image rounded up to `multiple`.

    Raises:
        ConfigError: a window of the wrong length, non-positive, or not divisible by `multiple`.
    """
    fit = tuple(-(-s // multiple) * multiple for s in size)  # the image rounded up to the multiple
    if roi_size is None:
        return fit
    roi = (roi_size,) * len(size) if isinstance(roi_size, int) else tuple(roi_size)
    if len(roi) != len(size) or not all(isinstance(r, int) and r > 0 for r in roi):
        raise ConfigError(f"roi_size must be {len(size)} positive integers (one per spatial axis), got {roi_size!r}")
    if any(r % multiple for r in roi):
        near = ", ".join(str(max(multiple, r // multiple * multiple)) for r in roi)
        raise ConfigError(f"roi_size {roi} is not divisible by {multiple} (2^depth of the model); use e.g. ({near})")
    return tuple(min(r, f) for r, f in zip(roi, fit, strict=True))


# Whole-image passes above these sizes would need several GB for the paper's UNet++ (activations grow with
# the image), so larger inputs go through windows by default: memory stays that of one window batch.
WHOLE_IMAGE_LIMIT = {2: 1024 * 1024, 3: 128**3}
DEFAULT_WINDOW = {2: 512, 3: 96}


def auto_window(size: Sequence[int], multiple: int = 1) -> tuple[int, ...] | None:
    """The default window for an image of `size`: ``None`` (one pass) up to ``WHOLE_IMAGE_LIMIT``, else windows.

    The window is ``DEFAULT_WINDOW`` (512² in 2D, 96³ in 3D) rounded up to `multiple`.
    """
    dims = len(size)
    if math.prod(size) <= WHOLE_IMAGE_LIMIT.get(dims, WHOLE_IMAGE_LIMIT[3]):
        return None
    side = DEFAULT_WINDOW.get(dims, DEFAULT_WINDOW[3])
    return (-(-side // multiple) * multiple,) * dims


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start of each window along one axis; the last window ends at the border (MONAI's positions)."""
    if roi >= size:
        return [0]
    step = max(1, int(roi * (1.0 - overlap)))
    n = math.ceil((size - roi) / step) + 1
    return sorted({min(i * step, size - roi) for i in range(n)})


@lru_cache(maxsize=16)
def importance_map(
    roi: tuple[int, ...], blend: Blend = "gaussian", sigma_scale: float = 0.125, device: str = "cpu"
) -> Tensor:
    """Weight of each voxel of a window, largest at the centre; cached because every image reuses it.

    The Gaussian has sigma ``sigma_scale * roi`` per axis (nnU-Net and MONAI use 1/8), is scaled to a
    maximum of 1 and floored at 1e-3 (as MONAI does) so that border voxels covered by one window only
    keep a usable weight. The returned tensor is shared: do not modify it in place.
    """
    if blend == "constant":
        return torch.ones(roi, device=device)
    weight = torch.ones((), dtype=torch.float64)
    for r in roi:
        x = torch.arange(r, dtype=torch.float64) - (r - 1) / 2
        g = torch.exp(-0.5 * (x / (sigma_scale * r)) ** 2)
        weight = weight[..., None] * g
    return (weight / weight.max()).clamp_min(1e-3).float().to(device)


def with_flips(fn: Callable[[Tensor], Tensor], spatial_dims: int) -> Callable[[Tensor], Tensor]:
    """Flip test-time augmentation: the mean of ``flip(fn(flip(x)))`` over every subset of spatial axes.

    2^spatial_dims passes (4 in 2D, 8 in 3D, the identity included), run one after the other so that
    memory stays that of one pass. For a flip-equivariant `fn` the result equals ``fn(x)``.
    """
    axes = [
        tuple(a + 2 for a in sub)
        for k in range(spatial_dims + 1)
        for sub in itertools.combinations(range(spatial_dims), k)
    ]

    def run(x: Tensor) -> Tensor:
        total = fn(x).float()
        for dims in axes[1:]:
            total += fn(x.flip(dims)).float().flip(dims)
        return total / len(axes)

    return run


def head_probabilities(logits: list[Tensor]) -> Tensor:
    """Mean of the heads' probabilities (sigmoid for one class, softmax otherwise), in float32.

    With one head (``head=d`` or a pruned model) this is that head's probabilities.
    """
    probs = [y.float().sigmoid() if y.shape[1] == 1 else y.float().softmax(dim=1) for y in logits]
    return probs[0] if len(probs) == 1 else torch.stack(probs).mean(dim=0)


# --------------------------------------------------------------------------------------------- model


def parse_mode(mode: str | int, head: int | None = None) -> int | None:
    """``"ensemble"`` -> None; ``"select:d"``, ``"head:d"``, ``d`` or ``head=d`` -> d.

    Raises:
        ConfigError: an unknown mode, or `mode` and `head` that disagree.
    """
    chosen: int | None
    if isinstance(mode, int) and not isinstance(mode, bool):
        chosen = mode
    elif mode == "ensemble":
        chosen = None
    elif isinstance(mode, str) and mode.partition(":")[0] in ("select", "head") and mode.partition(":")[2].isdigit():
        chosen = int(mode.partition(":")[2])
    else:
        raise ConfigError(f"mode must be 'ensemble' or 'select:<depth>' (e.g. 'select:3'), got {mode!r}")
    if head is not None:
        if chosen is not None and chosen != head:
            raise ConfigError(f"mode={mode!r} and head={head!r} disagree; give one of them")
        chosen = head
    return chosen


def bf16_supported() -> bool:
    """True when this CPU has native bfloat16 (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Predictor:
    """A model prepared once for inference, callable on many images.

    Preparation folds batch norm into the convolutions (:func:`~unetpp.models.inference.fuse_batch_norm`,
    which returns an eval-mode copy, so the caller's model is untouched) and checks the mode.

    Args:
        model: a NestedUNet, a pruned one, or an :class:`~unetpp.export.OnnxRunner`.
        mode: ``"ensemble"`` (mean of the heads' probabilities) or ``"select:d"``.
        head: run only head `d` and the nodes it needs (same as ``mode="select:d"``).
        roi_size: sliding-window size per spatial axis; ``None`` predicts the whole image in one pass up to
            1024² pixels or 128³ voxels, and larger inputs through 512² or 96³ windows (:func:`auto_window`).
        overlap: window overlap in [0, 1).
        blend: ``"gaussian"`` or ``"constant"``.
        sw_batch_size: windows per forward pass.
        tta: average over flips of every spatial axis (4 passes in 2D, 8 in 3D).
        precision: ``"float32"`` or ``"bfloat16"`` (autocast; fast on CPUs with AVX512-BF16 or AMX).
        source: what to name in error messages (e.g. the checkpoint file).

    Raises:
        ConfigError: unknown head or mode, or an option the model cannot run (bfloat16 on ONNX Runtime).
    """

    def __init__(
        self,
        model: Segmenter,
        mode: str | int = "ensemble",
        *,
        head: int | None = None,
        roi_size: int | Sequence[int] | None = None,
        overlap: float = 0.5,
        blend: Blend = "gaussian",
        sw_batch_size: int = 4,
        tta: bool = False,
        precision: Precision = "float32",
        source: str | None = None,
    ) -> None:
        self.source = source or (model.describe() if isinstance(model, NestedUNet) else type(model).__name__)
        self.head = parse_mode(mode, head)
        heads = tuple(model.spec.heads)
        if self.head is not None and self.head not in heads:
            raise ConfigError(f"{self.source}: head={self.head} does not exist; the model has heads {list(heads)}")
        if len(heads) == 1:  # a pruned or single-head model: ensemble and its head are the same thing
            self.head = None
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bfloat16" and not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"{self.source}: bfloat16 runs on PyTorch models only; for ONNX Runtime quantize to int8 instead"
            )
        if precision == "bfloat16" and not bf16_supported():
            logger.warning("this CPU has no native bfloat16; bfloat16 inference will be emulated and slow")
        if isinstance(model, NestedUNet):
            model = fuse_batch_norm(model)  # a new eval-mode model
        elif isinstance(model, torch.nn.Module):
            logger.warning("%s is not a NestedUNet: running it as given (call .eval() yourself)", self.source)
        self.model = model
        self.roi_size, self.overlap, self.blend = roi_size, overlap, blend
        self.sw_batch_size, self.tta, self.precision = sw_batch_size, tta, precision
        self.multiple = 2**model.spec.depth
        check_window_args(overlap, blend, sw_batch_size, self.multiple)  # once here, not per image
        window_size((1,) * model.spatial_dims, roi_size, self.multiple)

    @property
    def device(self) -> torch.device:
        if isinstance(self.model, torch.nn.Module):
            return next(self.model.parameters()).device
        return torch.device("cpu")

    def _forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            logits = self.model(x, head=self.head)
        return head_probabilities(logits)

    def __call__(self, image: Tensor | np.ndarray) -> Tensor:
        """Probabilities: (B, classes, *spatial) for a batch (B, C, *spatial), (classes, *spatial) for (C, *spatial).

        Raises:
            InputShapeError: wrong rank or channel count (the shape is in the message).
        """
        x, batched = self._as_batch(image)
        fn = with_flips(self._forward, self.model.spatial_dims) if self.tta else self._forward
        roi = self.roi_size if self.roi_size is not None else auto_window(x.shape[2:], self.multiple)
        with torch.inference_mode():
            out = sliding_window(fn, x, roi, self.overlap, self.blend, self.sw_batch_size, multiple=self.multiple)
        return out if batched else out[0]

    def _as_batch(self, image: Tensor | np.ndarray) -> tuple[Tensor, bool]:
        x = image if isinstance(image, Tensor) else torch.from_numpy(_contiguous(image))
        sd = self.model.spatial_dims
        if x.ndim not in (sd + 1, sd + 2):
            raise InputShapeError(
                f"expected (C, *spatial) or (B, C, *spatial) with {sd} spatial axes, got shape {tuple(x.shape)}"
            )
        batched = x.ndim == sd + 2
        x = x if batched else x[None]
        if x.shape[1] != self.model.in_channels:
            raise InputShapeError(
                f"the model takes {self.model.in_channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
            raise InputShapeError(f"image must hold numbers, got dtype {x.dtype}")
        return x.to(self.device, torch.float32), batched


def _contiguous(arr: np.ndarray) -> np.ndarray:
    import numpy as np

    arr = np.ascontiguousarray(arr)
    return arr.astype(np.float32) if arr.dtype in (np.uint16, np.uint32, np.uint64, np.float16, bool) else arr


def predict(
    model: Segmenter,
    image: Tensor | np.ndarray,
    mode: str | int = "ensemble",
    *,
    head: int | None = None,
    roi_size: int | Sequence[int] | None = None,
    overlap: float = 0.5,
    blend: Blend = "gaussian",
    sw_batch_size: int = 4,
    tta: bool = False,
    precision: Precision = "float32",
) -> Tensor:
    """Probabilities of a (normalised) image or volume of any size, with the paper's inference modes.

    Args:
        model: a NestedUNet (with deep supervision for ``"ensemble"`` and ``head=``), a pruned model,
            or an :class:`~unetpp.export.OnnxRunner`. It is not modified (batch norm is folded in a copy).
        image: ``(C, *spatial)`` or ``(B, C, *spatial)``, a tensor or a NumPy array, normalised as in
            training (e.g. :func:`unetpp.data.transforms.normalize_intensity`).
        mode: ``"ensemble"`` (mean of every head's probabilities, the paper's accurate mode) or
            ``"select:d"`` (head d only, running only the nodes with i + j <= d).
        head: the same as ``mode="select:<head>"``.
        roi_size: sliding-window size per spatial axis, divisible by 2^depth; ``None`` predicts the whole
            image in one pass up to 1024² pixels or 128³ voxels, and larger inputs through 512² or 96³
            windows, so that memory stays bounded. Sizes the model cannot take are padded and cropped back.
        overlap: window overlap in [0, 1).
        blend: ``"gaussian"`` or ``"constant"`` weighting of overlapping windows.
        sw_batch_size: windows per forward pass (more uses more memory, and is often faster).
        tta: average over flips of every spatial axis.
        precision: ``"float32"`` or ``"bfloat16"``.

    Returns:
        float32 probabilities ``(B, classes, *spatial)`` or ``(classes, *spatial)``, following `image`:
        sigmoid of the foreground for one class, softmax over classes otherwise.

    Raises:
        ConfigError: unknown head or mode, or a bad window argument.
        InputShapeError: wrong rank or channel count.

    Example:
        >>> m = unetpp.build_model("unet++", depth=2, widths=(4, 8, 16))
        >>> unetpp.predict(m, torch.randn(1, 97, 61), roi_size=32, tta=True).shape
        torch.Size([1, 97, 61])
    """
    return Predictor(
        model,
        mode,
        head=head,
        roi_size=roi_size,
        overlap=overlap,
        blend=blend,
        sw_batch_size=sw_batch_size,
        tta=tta,
        precision=precision,
    )(image)


# --------------------------------------------------------------------------------------------- files


def load_model(path: PathLike) -> Segmenter:
    """Load a model file for prediction: a unetpp checkpoint, ``.safetensors`` (+ JSON) or ``.onnx``.

    Raises:
        CheckpointError: missing, corrupt or foreign file (the file is named).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".onnx"):
        from .export import OnnxRunner

        return OnnxRunner(path)
    if name.endswith(".safetensors"):
        from .export import load_safetensors

        return load_safetensors(path)
    return load_checkpoint(path)


@dataclass(frozen=True)
class Written:
    """Files written for one input (``None`` for outputs not asked for)."""

    input: Path
    mask: Path
    overlay: Path | None
    probabilities: Path | None
    seconds: float = 0.0

    def paths(self) -> list[Path]:
        return [p for p in (self.mask, self.overlay, self.probabilities) if p is not None]


OUTPUT_TAGS = ("_mask", "_overlay", "_prob")  # suffixes of the names predict_files writes


def find_inputs(inputs: PathLike | Sequence[PathLike], exclude_outputs_in: Path | None = None) -> list[Path]:
    """Files to predict: a folder (its readable images, sorted), a glob pattern, one file, or a list of those.

    Raises:
        DataError: a missing file, an empty folder, or a pattern that matches nothing.
    """
    from .data.io import is_supported, stem

    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_supported(p))
            if exclude_outputs_in is not None and path.resolve() == exclude_outputs_in.resolve():
                found = [p for p in found if not stem(p).endswith(OUTPUT_TAGS)]  # our own earlier outputs
            if not found:
                raise DataError(f"{path}: folder has no readable images (PNG, JPEG, TIFF, NIfTI, .npy)")
            return found
        if path.is_file():
            return [path]
        if glob.has_magic(str(inputs)):
            found = sorted(Path(p) for p in glob.glob(str(inputs), recursive=True) if Path(p).is_file())
            if not found:
                raise DataError(f"{inputs}: pattern matches no files; check the pattern and quote it in a shell")
            return found
        raise DataError(f"{path}: no such file or folder; check the path")
    if not inputs:
        raise DataError("no input files given")
    return [path for each in inputs for path in find_inputs(each, exclude_outputs_in)]


def _plan_outputs(path: Path, out_dir: Path, spatial_dims: int, overlay: bool, probs: bool) -> Written:
    """Where the outputs of one input go (``seconds`` is filled in once they are written)."""
    from .data.io import NIFTI_SUFFIXES, PILLOW_SUFFIXES, stem, suffix

    ext = suffix(path)
    mask_ext = ".png" if ext in PILLOW_SUFFIXES else ext  # JPEG would corrupt labels; BMP becomes PNG too
    name = stem(path)
    return Written(
        input=path,
        mask=out_dir / f"{name}_mask{mask_ext}",
        overlay=out_dir / f"{name}_overlay.png" if overlay and spatial_dims == 2 else None,
        probabilities=out_dir / f"{name}_prob{ext if ext in NIFTI_SUFFIXES else '.npy'}" if probs else None,
    )


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise DataError(
            f"{out_dir}: output folder cannot be written ({e.strerror or type(e).__name__}); choose another folder"
        ) from e


def _channels_for(image: np.ndarray, in_channels: int, path: Path) -> np.ndarray:
    from .data.datasets import convert_channels

    c = image.shape[0]
    if c == in_channels:
        return image
    if in_channels in (1, 3) and c in (1, 2, 3, 4):
        return convert_channels(image, "grey" if in_channels == 1 else "rgb", path)
    raise DataError(f"{path}: image has {c} channel(s) but the model takes {in_channels}; convert the image")


def predict_files(
    model: Segmenter | PathLike,
    inputs: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    mode: str | int = "ensemble",
    *,
    head: int | None = None,
    roi_size: int | Sequence[int] | None = None,
    overlap: float = 0.5,
    blend: Blend = "gaussian",
    sw_batch_size: int = 4,
    tta: bool = False,
    precision: Precision = "float32",
    threshold: float = 0.5,
    normalize: Literal["zscore", "percentile", "none"] = "zscore",
    probabilities: bool = False,
    overlay: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Written]:
    """Predict every input file and write its mask in the input's format, plus an overlay for 2D images.

    For ``case.png`` it writes ``case_mask.png`` and ``case_overlay.png`` (and ``case_prob.npy`` with
    `probabilities`); TIFF gives ``case_mask.tif``; NIfTI gives ``case_mask.nii.gz`` with the input's
    affine and spacing (and ``case_prob.nii.gz``); ``.npy`` gives ``case_mask.npy``. JPEG and BMP inputs
    get PNG masks. Binary masks are stored 0/255 except in NIfTI and ``.npy`` (0/1); multi-class masks
    hold class ids (argmax). Every output is checked before any work starts, so an existing file stops
    the run at once instead of after hours.

    Args:
        model: a model (see :func:`predict`) or a model file (checkpoint, ``.safetensors``, ``.onnx``).
        inputs: a folder, a glob pattern (``"scans/*.nii.gz"``), one file, or a list of files.
        out_dir: created if missing.
        mode, head, roi_size, overlap, blend, sw_batch_size, tta, precision: see :func:`predict`.
        threshold: foreground probability above which a pixel is foreground (binary models).
        normalize: intensity normalisation, as in training (``"zscore"`` per image by default).
        probabilities: also write float32 probability maps: the foreground's for one class, ``(K, *spatial)``
            for K classes (channels last in NIfTI, as MSD stores them).
        overlay: write ``<name>_overlay.png`` for 2D inputs.
        overwrite: replace existing outputs.
        progress: a tqdm bar when tqdm is installed, otherwise one log line per file.

    Returns:
        One :class:`Written` per input, in order.

    Raises:
        CheckpointError: the model file is missing, corrupt or foreign.
        ConfigError: unknown head or mode, or a bad option.
        DataError: unreadable input, output exists (without `overwrite`), output folder not writable,
            or an image the model cannot take; every message names the file.
    """
    from .data.io import read_with_meta, write_image, write_mask
    from .data.transforms import normalize_intensity
    from .visualize import overlay as tinted

    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold!r}")
    source = None
    if isinstance(model, (str, os.PathLike)):
        source = str(model)
        model = load_model(model)
    predictor = Predictor(
        model,
        mode,
        head=head,
        roi_size=roi_size,
        overlap=overlap,
        blend=blend,
        sw_batch_size=sw_batch_size,
        tta=tta,
        precision=precision,
        source=source,
    )
    out_dir = Path(out_dir)
    files = find_inputs(inputs, exclude_outputs_in=out_dir)
    _check_out_dir(out_dir)
    spatial_dims = predictor.model.spatial_dims
    plans = [_plan_outputs(p, out_dir, spatial_dims, overlay, probabilities) for p in files]
    seen: dict[Path, Path] = {}
    for plan in plans:
        for out in plan.paths():
            if out in seen:
                raise DataError(
                    f"{plan.input}: its output {out.name} would also be written for {seen[out]}; rename one"
                )
            seen[out] = plan.input
            if out.exists() and not overwrite:
                raise DataError(
                    f"{out}: output exists (for input {plan.input.name}); pass overwrite=True or choose another folder"
                )
    bar = _progress(plans, progress)
    written = []
    for n, plan in enumerate(bar, start=1):
        t0 = time.perf_counter()
        path = plan.input
        raw, meta = read_with_meta(path, spatial_dims)
        image = normalize_intensity(_channels_for(raw, predictor.model.in_channels, path), normalize)
        try:
            prob = predictor(image).cpu().numpy()  # (K, *spatial)
        except InputShapeError as e:
            raise DataError(f"{path}: {e}") from e
        mask = (prob[0] > threshold) if prob.shape[0] == 1 else prob.argmax(axis=0)
        write_mask(plan.mask, mask.astype("uint8" if prob.shape[0] <= 256 else "int32"), meta=meta, overwrite=overwrite)
        if plan.overlay is not None:
            write_image(plan.overlay, tinted(raw, mask).transpose(2, 0, 1), overwrite=overwrite)
        if plan.probabilities is not None:
            write_image(plan.probabilities, prob, meta=meta, overwrite=overwrite)
        written.append(replace(plan, seconds=time.perf_counter() - t0))
        if bar is plans:
            logger.info("[%d/%d] %s -> %s (%.1f s)", n, len(plans), path.name, plan.mask, written[-1].seconds)
    return written


def _progress(plans: list[Written], enabled: bool) -> Sequence[Written]:
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return plans
        return tqdm(plans, desc="predict", unit="image")  # type: ignore[return-value]
    return plans


__all__ = [
    "Predictor",
    "Segmenter",
    "Written",
    "find_inputs",
    "importance_map",
    "load_model",
    "parse_mode",
    "predict",
    "predict_files",
    "head_probabilities",
    "auto_window",
    "check_window_args",
    "sliding_window",
    "window_starts",
    "with_flips",
]
