"""Prediction on files: find the inputs, plan every output before any work, write masks in each input's format.

Reading and writing live in :mod:`unetpp.data.io` and are imported only when files are used, so
``import unetpp.inference`` stays light. Model files of any kind are opened by
:func:`unetpp.inference.runtimes.load_model`.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError, DataError, InputShapeError
from .predictor import Precision, Predictor, Segmenter
from .runtimes import load_model
from .window import Blend

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


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
    from ..data.io import is_supported, stem

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


def plan_outputs(path: Path, out_dir: Path, spatial_dims: int, overlay: bool, probs: bool) -> Written:
    """Where the outputs of one input go (``seconds`` is filled in once they are written)."""
    from ..data.io import NIFTI_SUFFIXES, PILLOW_SUFFIXES, stem, suffix

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


def match_channels(image: np.ndarray, in_channels: int, path: PathLike) -> np.ndarray:
    """`image` ``(C, *spatial)`` with the model's channel count: grey <-> RGB converted, alpha dropped.

    Raises:
        DataError: a channel count that cannot be brought to `in_channels` (the file is named).
    """
    from ..data.datasets import convert_channels

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
    precision: Precision = "32",
    threshold: float = 0.5,
    normalize: Literal["zscore", "percentile", "none"] = "zscore",
    probabilities: bool = False,
    overlay: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    runtime: str = "torch",
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
        runtime: "torch", "onnxruntime", "openvino" or "auto" (see :class:`Predictor`).

    Returns:
        One :class:`Written` per input, in order.

    Raises:
        CheckpointError: the model file is missing, corrupt or foreign.
        ConfigError: unknown head or mode, or a bad option.
        DataError: unreadable input, output exists (without `overwrite`), output folder not writable,
            or an image the model cannot take; every message names the file.
    """
    from ..data.io import read_with_meta
    from ..data.transforms import normalize_intensity
    from ..data.writers import write_image, write_mask
    from ..visualize import overlay as tinted

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
        runtime=runtime,
    )
    out_dir = Path(out_dir)
    files = find_inputs(inputs, exclude_outputs_in=out_dir)
    _check_out_dir(out_dir)
    spatial_dims = predictor.model.spatial_dims
    plans = [plan_outputs(p, out_dir, spatial_dims, overlay, probabilities) for p in files]
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
                    f"{out}: output exists (for input {plan.input.name}); pass --overwrite to replace it "
                    "or choose another folder"
                )
    bar = _progress(plans, progress)
    written = []
    for n, plan in enumerate(bar, start=1):
        t0 = time.perf_counter()
        path = plan.input
        raw, meta = read_with_meta(path, spatial_dims)
        image = normalize_intensity(match_channels(raw, predictor.model.in_channels, path), normalize)
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


__all__ = ["OUTPUT_TAGS", "Written", "find_inputs", "match_channels", "plan_outputs", "predict_files"]
