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
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, DataError, InputShapeError
from .predictor import Precision, Predictor, Segmenter
from .preprocess import match_channels, prepare_input, saved_preprocessing
from .runtimes import load_model
from .window import Blend

if TYPE_CHECKING:
    pass

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


def check_outputs(plans: Sequence[Written], overwrite: bool, resuming: bool = False) -> None:
    """Before any work: no output planned twice, and none that exists unless `overwrite` (or `resuming` the
    same model and settings, whose existing outputs are complete and kept).

    Raises:
        DataError: naming the output and its input.
    """
    seen: dict[Path, Path] = {}
    for plan in plans:
        for out in plan.paths():
            if out in seen:
                raise DataError(
                    f"{plan.input}: its output {out.name} would also be written for {seen[out]}; rename one"
                )
            seen[out] = plan.input
            if out.exists() and not overwrite and not resuming:
                raise DataError(
                    f"{out}: output exists (for input {plan.input.name}); pass --overwrite to replace it or choose "
                    "another folder (a rerun with the same model file and settings continues where it stopped)"
                )


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise DataError(
            f"{out_dir}: output folder cannot be written ({e.strerror or type(e).__name__}); choose another folder"
        ) from None


def open_header(path: Path) -> None:
    """Open `path` as its format far enough to know it is readable (headers; whole PNG chunks), without decoding it.

    Raises:
        DataError: the file cannot be opened as the image it claims to be (named, with the reason).
    """
    from ..data.io import NIFTI_SUFFIXES, NUMPY_SUFFIXES, PILLOW_SUFFIXES, TIFF_SUFFIXES, suffix

    ext = suffix(path)
    try:
        if ext in PILLOW_SUFFIXES:
            from PIL import Image

            with Image.open(path) as img:
                img.verify()  # PNG: every chunk's checksum, so a truncated or damaged file fails here
        elif ext in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                _ = tif.series[0].shape
        elif ext in NIFTI_SUFFIXES:
            import nibabel as nib

            _ = nib.load(path).shape
        elif ext in NUMPY_SUFFIXES:
            import numpy as np

            np.load(path, mmap_mode="r", allow_pickle=False)  # fails if the data is shorter than the header says
    except Exception as e:  # each library raises its own types for damaged files
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:160]
        raise DataError(f"{path}: cannot be read ({reason}); fix or remove it, nothing was written") from None


MANIFEST = ".unetpp-predict.json"  # the settings the outputs in a folder were made with


def _fingerprint(source: str | None, predictor: Predictor, threshold: float, normalize: str) -> str | None:
    """What decides a mask's content: the model file (path, size, time) and the prediction settings; None for a model
    object (its weights cannot be named, so its outputs are never taken as already done)."""
    import json

    if source is None:
        return None
    st = Path(source).stat()
    p = predictor
    settings = [str(Path(source).resolve()), st.st_size, st.st_mtime_ns, p.head, p.roi_size]
    settings += [p.overlap, p.blend, p.tta, str(p.precision), threshold, normalize]
    return json.dumps(settings, default=str)


def _done_before(out_dir: Path, fingerprint: str | None) -> bool:
    """True when `out_dir`'s outputs were written by an earlier run with the same model and settings."""
    import json

    try:
        return fingerprint is not None and json.loads((out_dir / MANIFEST).read_text()).get("settings") == fingerprint
    except (OSError, ValueError, AttributeError):
        return False


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
    normalize: Literal["zscore", "percentile", "ct", "none"] | None = None,
    probabilities: bool = False,
    overlay: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    part: tuple[int, int] | None = None,
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
        normalize: intensity normalisation; None repeats the training's, which a run's checkpoint records
            (with its channels and target spacing), else ``"zscore"`` per image.
        probabilities: also write float32 probability maps: the foreground's for one class, ``(K, *spatial)``
            for K classes (channels last in NIfTI, as MSD stores them).
        overlay: write ``<name>_overlay.png`` for 2D inputs.
        overwrite: replace existing outputs. Without it, outputs that an earlier run with the same model file
            and settings wrote are kept and only the missing ones are made (a rerun after a failure finishes the
            rest); outputs from another model or settings stop the run.
        progress: a tqdm bar when tqdm is installed, otherwise one debug log line per file.
        part: ``(k, n)``: only part k of n of the sorted inputs (see :mod:`unetpp.sharding`), for n
            independent jobs that share a cohort; each input falls in exactly one part.
        runtime: "torch", "onnxruntime", "openvino" or "auto" (see :class:`Predictor`).

    Returns:
        One :class:`Written` per input, in order.

    Raises:
        CheckpointError: the model file is missing, corrupt or foreign.
        ConfigError: unknown head or mode, or a bad option.
        DataError: unreadable input, output exists (without `overwrite`), output folder not writable,
            or an image the model cannot take; every message names the file.
    """
    job = prepare_files(
        model,
        inputs,
        out_dir,
        mode,
        head=head,
        roi_size=roi_size,
        overlap=overlap,
        blend=blend,
        sw_batch_size=sw_batch_size,
        tta=tta,
        precision=precision,
        threshold=threshold,
        normalize=normalize,
        probabilities=probabilities,
        overlay=overlay,
        overwrite=overwrite,
        part=part,
        runtime=runtime,
    )
    bar = _progress(job.plans, progress)
    written = []
    for n, plan in enumerate(bar, start=1):
        written.append(job.run_one(plan))
        if bar is job.plans:
            logger.debug("[%d/%d] %s -> %s (%.1f s)", n, len(bar), plan.input.name, plan.mask, written[-1].seconds)
    return written


@dataclass(frozen=True)
class FileJob:
    """Checked work of one prediction: the predictor, the outputs still to write, and how to write them.

    :func:`prepare_files` makes it (every check done, nothing predicted); :meth:`run_one` predicts and
    writes one input, so that one process (:func:`predict_files`) or several (``unetpp.engine.predict``)
    share every line that decides an output.
    """

    predictor: Predictor
    plans: list[Written]  # inputs still to predict
    total: int  # inputs of this part, done before or not
    threshold: float
    normalize: str
    overwrite: bool
    preprocessing: dict[str, Any]  # what the training checkpoint records (channels, spacing, CT statistics)

    def run_one(self, plan: Written) -> Written:
        """Predict `plan.input` and write its outputs (atomically); returns `plan` with the seconds it took."""
        from ..data.io import read_with_meta
        from ..data.writers import write_image, write_mask
        from ..plan.resample import resample_probabilities
        from ..visualize import overlay as tinted

        t0 = time.perf_counter()
        path, overwrite, predictor = plan.input, self.overwrite, self.predictor
        raw, meta = read_with_meta(path, predictor.model.spatial_dims)
        image, back = prepare_input(raw, meta, predictor.model.in_channels, self.preprocessing, self.normalize)
        try:
            prob = predictor(image).cpu().numpy()  # (K, *spatial)
        except InputShapeError as e:
            raise DataError(f"{path}: {e}") from e
        if back is not None:  # predicted on the training grid: back to the input's grid, written with its affine
            prob = resample_probabilities(prob, back)
        mask = (prob[0] > self.threshold) if prob.shape[0] == 1 else prob.argmax(axis=0)
        if overwrite or not plan.mask.exists():
            write_mask(
                plan.mask, mask.astype("uint8" if prob.shape[0] <= 256 else "int32"), meta=meta, overwrite=overwrite
            )
        if plan.overlay is not None and (overwrite or not plan.overlay.exists()):
            write_image(plan.overlay, tinted(raw, mask).transpose(2, 0, 1), overwrite=overwrite)
        if plan.probabilities is not None and (overwrite or not plan.probabilities.exists()):
            write_image(plan.probabilities, prob, meta=meta, overwrite=overwrite)
        return replace(plan, seconds=time.perf_counter() - t0)


def prepare_files(
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
    normalize: Literal["zscore", "percentile", "ct", "none"] | None = None,
    probabilities: bool = False,
    overlay: bool = True,
    overwrite: bool = False,
    part: tuple[int, int] | None = None,
    runtime: str = "torch",
) -> FileJob:
    """Every check of :func:`predict_files` (same arguments), before any prediction; the work left as a job."""
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold!r}")
    source = None
    prep: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        source = str(model)
        prep = saved_preprocessing(model) or {}
        model = load_model(model)
    normalize = normalize or prep.get("normalize", "zscore")
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
    if part is not None:  # the same sorted order in every job, so that the parts split it exactly
        from ..sharding import take_part

        files = take_part(sorted(set(files)), part)
    _check_out_dir(out_dir)
    spatial_dims = predictor.model.spatial_dims
    plans = [plan_outputs(p, out_dir, spatial_dims, overlay, probabilities) for p in files]
    for path in files:  # every input opens before anything is written: a damaged third file stops the run now
        open_header(path)
    fingerprint = _fingerprint(source, predictor, threshold, normalize)
    check_outputs(plans, overwrite, resuming=not overwrite and _done_before(out_dir, fingerprint))
    # Outputs are written atomically, so one that exists is complete: a rerun with the same model and settings
    # (after a crash, a kill or a damaged input) only does what is missing.
    todo = [plan for plan in plans if overwrite or not all(out.exists() for out in plan.paths())]
    if len(todo) < len(plans):
        logger.info(
            "%d of %d input(s) already done in %s; predicting the other %d",
            len(plans) - len(todo),
            len(plans),
            out_dir,
            len(todo),
        )
    if fingerprint is not None and todo:
        import json

        from ..files import write_text

        write_text(out_dir / MANIFEST, json.dumps({"settings": fingerprint}) + "\n", overwrite=True)
    return FileJob(predictor, todo, len(plans), threshold, normalize, overwrite, prep)


def _progress(plans: list[Written], enabled: bool) -> Sequence[Written]:
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return plans
        return tqdm(plans, desc="predict", unit="image")  # type: ignore[return-value]
    return plans


__all__ = [
    "OUTPUT_TAGS",
    "FileJob",
    "Written",
    "check_outputs",
    "find_inputs",
    "match_channels",
    "plan_outputs",
    "predict_files",
    "prepare_files",
    "saved_preprocessing",
]
