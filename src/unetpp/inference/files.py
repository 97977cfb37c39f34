"""Prediction on files: find the inputs, plan every output before any work, write masks in each input's format.

Reading and writing live in :mod:`unetpp.data.io` and are imported only when files are used, so
``import unetpp.inference`` stays light. Model files of any kind are opened by
:func:`unetpp.inference.runtimes.load_model`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, DataError, InputShapeError
from .outputs import PathLike, Written, check_out_dir, check_outputs, find_inputs, open_header, plan_outputs
from .predictor import Precision, Predictor, Segmenter
from .preprocess import prepare_input, saved_preprocessing
from .runtimes import load_model
from .window import Blend

logger = logging.getLogger(__name__)


MANIFEST = ".unetpp-predict.json"  # the settings the outputs in a folder were made with


def _fingerprint(source: str | None, predictor: Predictor, threshold: float, normalize: str) -> str | None:
    """What decides a mask's content: the model file (path, size, time) and the prediction settings; None for a model
    object (its weights cannot be named, so its outputs are never taken as already done)."""
    import json

    if source is None:
        return None
    from ..models.hub import local_model_file

    source = str(local_model_file(source))  # a Hub id or pretrained folder: its (cached) weights file
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
    check_out_dir(out_dir)
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


__all__ = ["FileJob", "predict_files", "prepare_files"]
