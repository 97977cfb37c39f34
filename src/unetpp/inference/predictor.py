"""The paper's inference modes on images of any size: ``Predictor`` (prepared once) and ``predict``.

UNet++ (Zhou et al., "UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image
Segmentation", IEEE TMI 2019, doi:10.1109/TMI.2019.2959609) trains one model with a head on every
X^{0,j}. At inference it serves an accurate mode, the mean of the heads' probabilities
(``mode="ensemble"``, :func:`unetpp.ensemble`), and fast modes that run only the nodes one head needs
(``head=d``, or a model pruned with :func:`unetpp.prune`). This module prepares a model once (batch
norm folded, mode and options checked) and runs it through :mod:`unetpp.inference.window`.

Precision names follow Lightning's spelling, as training does: ``"32"`` and ``"bf16"`` (the
convolutions under CPU/GPU autocast after folding batch norm; blending and the returned probabilities
stay float32). The older ``"float32"`` / ``"bfloat16"`` still work, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import Tensor

from ..errors import ConfigError, InputShapeError
from ..models import GridSpec, NestedUNet, ensemble
from ..models.fusion import fuse_batch_norm
from ..utils.precision import bf16_supported, canonical_precision
from .window import Blend, auto_window, check_window_args, sliding_window, window_size, with_flips

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

Precision = Literal["32", "bf16"]
PRECISIONS = ("32", "bf16")


class Segmenter(Protocol):
    """What prediction needs from a model: NestedUNet and :class:`~unetpp.inference.runtimes.OnnxRunner` fit.

    ``__call__(x, head=None)`` returns the logits of every head (or of head ``head`` only) as a list of
    ``(B, classes, *spatial)`` tensors.
    """

    spec: GridSpec
    in_channels: int
    classes: int
    spatial_dims: int

    def __call__(self, x: Tensor, head: int | None = None) -> list[Tensor]: ...


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


class Predictor:
    """A model prepared once for inference, callable on many images.

    Preparation folds batch norm into the convolutions (:func:`~unetpp.models.fusion.fuse_batch_norm`,
    which returns an eval-mode copy, so the caller's model is untouched) and checks the mode.

    Args:
        model: a NestedUNet, a pruned one, or an :class:`~unetpp.inference.runtimes.OnnxRunner`.
        mode: ``"ensemble"`` (mean of the heads' probabilities) or ``"select:d"``.
        head: run only head `d` and the nodes it needs (same as ``mode="select:d"``).
        roi_size: sliding-window size per spatial axis; ``None`` predicts the whole image in one pass up to
            1024² pixels or 128³ voxels, and larger inputs through 512² or 96³ windows (:func:`auto_window`).
        overlap: window overlap in [0, 1).
        blend: ``"gaussian"`` or ``"constant"``.
        sw_batch_size: windows per forward pass.
        tta: average over flips of every spatial axis (4 passes in 2D, 8 in 3D).
        precision: ``"32"`` or ``"bf16"`` (autocast; fast on CPUs with AVX512-BF16 or AMX).
        source: what to name in error messages (e.g. the checkpoint file).
        runtime: ``"torch"`` (default), ``"onnxruntime"``, ``"openvino"``, or ``"auto"``: the fastest
            installed one whose probabilities match eager float32, measured on the first batch of windows
            and cached per machine (:mod:`unetpp.deploy.backends`). For NestedUNet models.

    Raises:
        ConfigError: unknown head or mode, or an option the model cannot run (bf16 on ONNX Runtime).
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
        precision: Precision = "32",
        source: str | None = None,
        runtime: str = "torch",
    ) -> None:
        self.source = source or (model.describe() if isinstance(model, NestedUNet) else type(model).__name__)
        self.head = parse_mode(mode, head)
        heads = tuple(model.spec.heads)
        if self.head is not None and self.head not in heads:
            raise ConfigError(f"{self.source}: head={self.head} does not exist; the model has heads {list(heads)}")
        if len(heads) == 1:  # a pruned or single-head model: ensemble and its head are the same thing
            self.head = None
        precision = canonical_precision(precision, PRECISIONS)  # type: ignore[assignment]
        if precision == "bf16" and not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"{self.source}: bf16 runs on PyTorch models only; for ONNX Runtime quantize to int8 instead"
            )
        if precision == "bf16" and not bf16_supported():
            logger.warning("this CPU has no native bfloat16; bf16 inference will be emulated and slow")
        if isinstance(model, NestedUNet):
            model = fuse_batch_norm(model)  # a new eval-mode model
        elif isinstance(model, torch.nn.Module):
            logger.warning("%s is not a NestedUNet: running it as given (call .eval() yourself)", self.source)
        self.model = model
        self.runtime, self.chosen = runtime, None  # the runner, chosen on the first batch (see _forward)
        if runtime != "torch":
            from ..deploy.backends import RUNTIMES

            if runtime not in RUNTIMES:
                raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
            if not isinstance(model, NestedUNet):
                raise ConfigError(
                    f"{self.source}: --runtime {runtime} takes a PyTorch model file, not {type(model).__name__}"
                )
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
        if self.runtime != "torch":
            if self.chosen is None:
                from ..deploy.backends import choose

                self.chosen = choose(self.model, x, self.head, self.precision, self.runtime)  # type: ignore[arg-type]
            return ensemble(self.chosen.runner(x, head=self.head))
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.model(x, head=self.head)
        return ensemble(logits)

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
    precision: Precision = "32",
) -> Tensor:
    """Probabilities of a (normalised) image or volume of any size, with the paper's inference modes.

    Args:
        model: a NestedUNet (with deep supervision for ``"ensemble"`` and ``head=``), a pruned model,
            or an :class:`~unetpp.inference.runtimes.OnnxRunner`. It is not modified (batch norm is
            folded in a copy).
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
        precision: ``"32"`` or ``"bf16"``.

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


__all__ = [
    "PRECISIONS",
    "Precision",
    "Predictor",
    "Segmenter",
    "bf16_supported",
    "parse_mode",
    "predict",
]
