"""The paper's inference modes on images of any size: :class:`PredictOptions`, checked once, and :class:`Predictor`.

UNet++ (Zhou et al., "UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image
Segmentation", IEEE TMI 2019, doi:10.1109/TMI.2019.2959609) trains one model with a head on every
X^{0,j}. At inference it serves an accurate mode, the mean of the heads' probabilities (``head=None``,
:func:`unetpp.ensemble`), and fast modes that run only the nodes one head needs (``head=d``, or a model
pruned with :func:`unetpp.prune`). As MONAI's ``SlidingWindowInferer`` and nnU-Net's ``nnUNetPredictor``
do, how a model runs is one value (:class:`PredictOptions`: head, window, blending, TTA, precision,
runtime) apart from the model and the files; a :class:`Predictor` prepares a model once (batch norm
folded, options checked against it) and runs it through :mod:`unetpp.inference.window`, on arrays or on
files (:meth:`Predictor.predict_files`).

Precision names follow Lightning's spelling, as training does: ``"32"`` and ``"bf16"`` (the
convolutions under CPU/GPU autocast after folding batch norm; blending and the returned probabilities
stay float32). The older ``"float32"`` / ``"bfloat16"`` still work, with a ``FutureWarning``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from ..errors import ConfigError, InputShapeError
from ..models import NestedUNet, ensemble
from ..models.fusion import fuse_batch_norm
from ..utils.precision import bf16_supported, canonical_precision
from .batch import FileOptions, prepare_files, run_files
from .outputs import PathLike, Written
from .runtimes import load_model
from .segmenter import RUNTIMES, Runtime, Segmenter
from .window import Blend, auto_window, check_window_args, sliding_window, window_size, with_flips

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

Precision = Literal["32", "bf16"]
PRECISIONS = ("32", "bf16")
Ensemble = Literal["chosen", "mean"]
ENSEMBLES = ("chosen", "mean")


@dataclass(frozen=True)
class PredictOptions:
    """How a model runs on one image: everything except the model and the files. Every check is made here, once.

    Args:
        head: run only head d and the nodes it needs (UNet++ L^d); ``None``: the ensemble (one head's model:
            that head).
        ensemble: which heads the ensemble averages: ``"chosen"``, the heads training chose on validation
            (recorded in the model file; every head where none is recorded), so that an unfinished head does
            not drag the mean down; ``"mean"``, the paper's plain mean of every head's probabilities.
        roi_size: sliding-window size per spatial axis, divisible by 2^depth; ``None`` predicts the whole image in
            one pass up to 1024² pixels or 128³ voxels, and larger inputs through 512² or 96³ windows
            (:func:`~unetpp.inference.window.auto_window`), so that memory stays bounded.
        overlap: window overlap in [0, 1).
        blend: ``"gaussian"`` or ``"constant"`` weighting of overlapping windows.
        sw_batch_size: windows per forward pass (more uses more memory, and is often faster).
        tta: average over flips of every spatial axis (4 passes in 2D, 8 in 3D); ``None``: as training chose on
            validation (recorded in the model file, :mod:`unetpp.engine.tta`), one pass where nothing is recorded.
        postprocess: remove from the masks (:meth:`Predictor.labels`) the components smaller than the sizes
            training chose on validation (recorded in the model file, :mod:`unetpp.engine.postprocess`; nothing
            is removed where nothing is recorded, or for one head); ``False``: keep every component.
        precision: ``"32"`` or ``"bf16"`` (autocast; fast on CPUs with AVX512-BF16 or AMX).
        runtime: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"auto"`` (the fastest installed one whose
            probabilities match eager float32). A runtime other than torch is composed by the caller
            (:func:`unetpp.deploy.backends.predictor`, which :func:`unetpp.predict` and the CLI use).

    Raises:
        ConfigError: a value out of range, with the value in the message.

    Example:
        >>> PredictOptions(head=2, roi_size=96, tta=True).overlap
        0.5
    """

    head: int | None = None
    ensemble: Ensemble = "chosen"
    roi_size: int | tuple[int, ...] | None = None
    overlap: float = 0.5
    blend: Blend = "gaussian"
    sw_batch_size: int = 4
    tta: bool | None = None
    postprocess: bool = True
    precision: Precision = "32"
    runtime: Runtime = "torch"

    def __post_init__(self) -> None:
        if self.head is not None and (isinstance(self.head, bool) or not isinstance(self.head, int) or self.head < 1):
            raise ConfigError(f"head must be a depth >= 1, or None for the ensemble; got {self.head!r}")
        if self.ensemble not in ENSEMBLES:
            raise ConfigError(f"ensemble must be one of {', '.join(ENSEMBLES)}, got {self.ensemble!r}")
        if self.roi_size is not None and not isinstance(self.roi_size, int):
            object.__setattr__(self, "roi_size", tuple(self.roi_size))  # a list from YAML or argparse
        check_window_args(self.overlap, self.blend, self.sw_batch_size)
        if self.tta is not None and not isinstance(self.tta, bool):
            raise ConfigError(f"tta must be True, False or None (as the model file records), got {self.tta!r}")
        if not isinstance(self.postprocess, bool):
            raise ConfigError(f"postprocess must be True or False, got {self.postprocess!r}")
        object.__setattr__(self, "precision", canonical_precision(self.precision, PRECISIONS))
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.precision == "bf16" and self.runtime == "onnxruntime":
            raise ConfigError("precision bf16 runs on torch or openvino; for ONNX Runtime quantize to int8 instead")


def parse_mode(mode: str) -> int | None:
    """The paper's mode names, as :func:`unetpp.predict` takes them: ``"ensemble"`` -> None, ``"select:d"`` -> d.

    Raises:
        ConfigError: any other mode.
    """
    name, _, depth = mode.partition(":") if isinstance(mode, str) else ("", "", "")
    if mode == "ensemble":
        return None
    if name == "select" and depth.isdigit():
        return int(depth)
    raise ConfigError(f"mode must be 'ensemble' or 'select:<depth>' (e.g. 'select:3'), got {mode!r}")


class Predictor:
    """A model prepared once for inference, callable on many images and files.

    Preparation folds batch norm into the convolutions (:func:`~unetpp.models.fusion.fuse_batch_norm`,
    which returns an eval-mode copy, so the caller's model is untouched) and checks the options against the
    model (its heads, the window against 2^depth).

    Args:
        model: a NestedUNet, a pruned one, an :class:`~unetpp.inference.runtimes.OnnxRunner`, a model in
            another runtime (:class:`unetpp.deploy.backends.RuntimeModel`), or a model file (any kind:
            :func:`~unetpp.inference.runtimes.load_model`).
        options: how it runs (default: the ensemble, whole images up to a size, float32).
        source: the model file `model` was loaded from, when it was: named in messages, its preprocessing
            repeated and its outputs recognised by :meth:`predict_files`.

    Raises:
        CheckpointError: a model file that cannot be read.
        ConfigError: a head the model does not have, a window it cannot take, or an option it cannot run
            (bf16 on ONNX Runtime; a runtime other than torch given a model that does not run in it).

    Example:
        >>> predictor = Predictor(model, PredictOptions(head=2, roi_size=96))
        >>> predictor(torch.randn(1, 300, 200)).shape
        torch.Size([1, 300, 200])
    """

    def __init__(
        self, model: Segmenter | PathLike, options: PredictOptions | None = None, *, source: PathLike | None = None
    ) -> None:
        options = options or PredictOptions()
        if isinstance(model, (str, os.PathLike)):
            source, model = model, load_model(model)
        from ..models.hub import local_model_file

        self.options = options
        # a Hub id or pretrained folder is named by its (cached) weights file: Path() would fold "hf://" into "hf:/"
        self.source = None if source is None else local_model_file(source)
        describe = getattr(model, "describe", None)
        self.name = str(source) if source is not None else describe() if callable(describe) else type(model).__name__
        heads = tuple(model.spec.heads)
        if options.head is not None and options.head not in heads:
            raise ConfigError(f"{self.name}: head={options.head} does not exist; the model has heads {list(heads)}")
        # a pruned or single-head model: the ensemble and its head are the same thing
        self.head = None if len(heads) == 1 else options.head
        self.ensemble_heads = self._ensemble_heads(heads)
        self.tta = self._tta()
        self.min_sizes = self._min_sizes()
        runs_in = getattr(model, "runtime", "torch")
        if options.runtime != runs_in:
            raise ConfigError(
                f"{self.name}: runtime {options.runtime!r} is chosen where models are deployed: "
                "Predictor(unetpp.deploy.backends.with_runtime(model, options), options), or "
                "unetpp.deploy.backends.predictor(model, options); unetpp.predict and the CLI do it for you"
            )
        if options.precision == "bf16" and runs_in == "torch" and not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"{self.name}: bf16 runs on PyTorch models only; for ONNX Runtime quantize to int8 instead"
            )
        if options.precision == "bf16" and not bf16_supported():
            logger.warning("this CPU has no native bfloat16; bf16 inference will be emulated and slow")
        if isinstance(model, NestedUNet):
            model = fuse_batch_norm(model)  # a new eval-mode model
        elif isinstance(model, torch.nn.Module):
            logger.warning("%s is not a NestedUNet: running it as given (call .eval() yourself)", self.name)
        self.model = model
        self.multiple = 2**model.spec.depth
        window_size((1,) * model.spatial_dims, options.roi_size, self.multiple)  # once here, not per image

    @property
    def device(self) -> torch.device:
        if isinstance(self.model, torch.nn.Module):
            return next(self.model.parameters()).device
        return torch.device("cpu")

    def settings(self) -> dict[str, object]:
        """What decides the probabilities and masks (not how fast they come): the options, less runtime and window
        batch, and what the model file records."""
        settings = dataclasses.asdict(self.options)
        del settings["runtime"], settings["sw_batch_size"]  # the same probabilities (runtimes: within 1e-4)
        heads = None if self.ensemble_heads is None else list(self.ensemble_heads)
        return {**settings, "head": self.head, "ensemble_heads": heads, "tta": self.tta, "min_sizes": self.min_sizes}

    def _tta(self) -> bool:
        """Flips as asked; else as training chose them on validation, for the heads it measured them on."""
        if self.options.tta is not None:
            return self.options.tta
        if self.source is None or self.head is not None:
            return False
        from ..models.provenance import recorded_tta

        chosen = recorded_tta(self.source) is True
        if chosen:
            logger.info("%s: prediction averages over flips, chosen on validation (--no-tta: one pass)", self.name)
        return chosen

    def _min_sizes(self) -> tuple[int, ...] | None:
        """The smallest component kept per class, as training chose it on validation for the ensemble it measured."""
        if not self.options.postprocess or self.source is None or self.head is not None:
            return None
        from ..models.provenance import recorded_min_sizes

        sizes = recorded_min_sizes(self.source)
        if sizes is not None:
            logger.info(
                "%s: masks lose components under %s voxels per class, chosen on validation (--no-postprocess: kept)",
                self.name,
                list(sizes),
            )
        return sizes

    def _ensemble_heads(self, heads: tuple[int, ...]) -> tuple[int, ...] | None:
        """The heads the ensemble averages; None where one head runs (``head=d`` or a one-head model)."""
        if self.head is not None or len(heads) == 1:
            return None
        if self.options.ensemble == "mean" or self.source is None:
            return heads
        from ..models.provenance import recorded_ensemble_heads

        chosen = recorded_ensemble_heads(self.source)
        if chosen is None or not set(chosen) <= set(heads):
            return heads
        if chosen != heads:
            logger.info("%s: the ensemble averages heads %s, chosen on validation", self.name, list(chosen))
        return chosen

    def _forward(self, x: Tensor) -> Tensor:
        # other runtimes run their own precision; autocast is PyTorch's
        bf16 = self.options.precision == "bf16" and isinstance(self.model, torch.nn.Module)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = self.model(x, head=self.head)
        if self.ensemble_heads is not None and len(self.ensemble_heads) < len(logits):
            heads = tuple(self.model.spec.heads)
            logits = [logits[heads.index(j)] for j in self.ensemble_heads]
        return ensemble(logits)

    def __call__(self, image: Tensor | np.ndarray) -> Tensor:
        """Probabilities: (B, classes, *spatial) for a batch (B, C, *spatial), (classes, *spatial) for (C, *spatial).

        Float32, whatever the precision: sigmoid of the foreground for one class, softmax over classes otherwise.

        Raises:
            InputShapeError: wrong rank or channel count (the shape is in the message).
        """
        o = self.options
        x, batched = self._as_batch(image)
        fn = with_flips(self._forward, self.model.spatial_dims) if self.tta else self._forward
        roi = o.roi_size if o.roi_size is not None else auto_window(x.shape[2:], self.multiple)
        with torch.inference_mode():
            out = sliding_window(fn, x, roi, o.overlap, o.blend, o.sw_batch_size, multiple=self.multiple)
        return out if batched else out[0]

    def labels(self, prob: np.ndarray, threshold: float = 0.5, voxel_scale: float = 1.0) -> np.ndarray:
        """The mask of probabilities ``(classes, *spatial)``: foreground above `threshold` for one class, else the
        argmax; without the components smaller than the recorded sizes (counted `voxel_scale` times finer where
        the probabilities were resampled to the input's grid: :func:`~unetpp.inference.components.voxel_scale`)."""
        from .components import mask_of, remove_small_components, scaled

        mask = mask_of(prob, threshold)
        if self.min_sizes is None:
            return mask
        return remove_small_components(mask, scaled(self.min_sizes, voxel_scale))

    def predict_files(
        self, inputs: PathLike | Sequence[PathLike], out_dir: PathLike, *, progress: bool = True, **files: Any
    ) -> list[Written]:
        """Predict every input file and write its mask in the input's format, plus an overlay for 2D images.

        For ``case.png`` it writes ``case_mask.png`` and ``case_overlay.png`` (and ``case_prob.npy`` with
        `probabilities`); TIFF gives ``case_mask.tif``; NIfTI gives ``case_mask.nii.gz`` with the input's
        affine and spacing (and ``case_prob.nii.gz``); ``.npy`` gives ``case_mask.npy``. JPEG and BMP inputs
        get PNG masks. Binary masks are stored 0/255 except in NIfTI and ``.npy`` (0/1); multi-class masks
        hold class ids (argmax). Every output is checked before any work starts, so an existing file stops
        the run at once instead of after hours.

        Args:
            inputs: a folder, a glob pattern (``"scans/*.nii.gz"``), one file, or a list of files.
            out_dir: created if missing.
            progress: a tqdm bar when tqdm is installed, otherwise one debug log line per file.
            **files: the fields of :class:`~unetpp.inference.batch.FileOptions`: ``threshold``, ``normalize``,
                ``probabilities``, ``overlay``, ``overwrite``, ``part``.

        Returns:
            One :class:`~unetpp.inference.outputs.Written` per input still to do, in order.

        Raises:
            ConfigError: a bad file option.
            DataError: unreadable input, output exists (without `overwrite`), output folder not writable,
                or an image the model cannot take; every message names the file.

        Example:
            >>> predictor.predict_files("scans/*.png", "masks", threshold=0.4, overwrite=True, part=(1, 4))
        """
        return run_files(prepare_files(self, inputs, out_dir, FileOptions(**files)), progress)

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


def predict_files(
    model: Segmenter | PathLike,
    inputs: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    options: PredictOptions | None = None,
    **files: Any,
) -> list[Written]:
    """``Predictor(model, options).predict_files(inputs, out_dir, **files)``: see :meth:`Predictor.predict_files`.

    Example:
        >>> predict_files("runs/em/checkpoints/best.ckpt", "scans/*.png", "masks", PredictOptions(head=2))
    """
    return Predictor(model, options).predict_files(inputs, out_dir, **files)


__all__ = [
    "ENSEMBLES",
    "PRECISIONS",
    "PredictOptions",
    "Precision",
    "Predictor",
    "bf16_supported",
    "parse_mode",
    "predict_files",
]
