"""Prediction on files: find the inputs, plan every output before any work, write masks in each input's format.

:meth:`unetpp.inference.Predictor.predict_files` is the entry point; this module holds its steps, which
the multi-process prediction (:mod:`unetpp.engine.predict`) shares: :func:`prepare_files` (every check,
nothing predicted), :meth:`FileJob.run_one` (one input) and :func:`run_files` (all of them, with a bar).
Reading and writing live in :mod:`unetpp.data.io` and are imported only when files are used, so
``import unetpp.inference`` stays light.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..errors import ConfigError, DataError, InputShapeError
from ..utils.atomic import first_missing, remove_temporaries_of
from . import manifest
from .outputs import PathLike, Written, check_out_dir, check_outputs, find_inputs, open_header, plan_outputs
from .preprocess import prepare_input, saved_preprocessing
from .segmenter import Segmenter

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

logger = logging.getLogger(__name__)


MANIFEST = manifest.MANIFEST  # the settings the outputs in a folder were made with, and their names


class ImagePredictor(Protocol):
    """What file prediction needs of a :class:`~unetpp.inference.predictor.Predictor`."""

    model: Segmenter
    source: Path | None  # the model file, if the model came from one

    def settings(self) -> dict[str, object]: ...  # what decides the probabilities and the masks

    def __call__(self, image: np.ndarray) -> Tensor: ...

    def labels(self, prob: np.ndarray, threshold: float = 0.5, voxel_scale: float = 1.0) -> np.ndarray: ...


def _fingerprint(predictor: ImagePredictor, threshold: float, normalize: str) -> str | None:
    """What decides a mask's content: the model file (path, size, time) and the prediction settings; None for a model
    object (its weights cannot be named, so its outputs are never taken as already done)."""
    import json

    source = predictor.source
    if source is None:
        return None
    from ..models.hub import local_model_file

    source = local_model_file(source)  # a Hub id or pretrained folder: its (cached) weights file
    st = source.stat()
    settings = [str(source.resolve()), st.st_size, st.st_mtime_ns, predictor.settings(), threshold, normalize]
    return json.dumps(settings, default=str)


def _done_before(out_dir: Path, fingerprint: str | None) -> bool:
    """True when `out_dir`'s outputs were written by an earlier run with the same model and settings."""
    import json

    try:
        return fingerprint is not None and json.loads((out_dir / MANIFEST).read_text()).get("settings") == fingerprint
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class FileJob:
    """Checked work of one prediction: the predictor, the outputs still to write, and how to write them.

    :func:`prepare_files` makes it (every check done, nothing predicted); :meth:`run_one` predicts and
    writes one input, so that one process (:func:`run_files`) or several (``unetpp.engine.predict``)
    share every line that decides an output.
    """

    predictor: ImagePredictor
    plans: list[Written]  # inputs still to predict
    total: int  # inputs of this part, done before or not
    threshold: float
    normalize: str
    overwrite: bool
    preprocessing: dict[str, Any]  # what the training checkpoint records (channels, spacing, CT statistics)
    undo: Callable[[], None] = lambda: None  # removes what preparing made (folder, manifest) while nothing is written

    def run_one(self, plan: Written) -> Written:
        """Predict `plan.input` and write its outputs (atomically); returns `plan` with the seconds it took."""
        from ..data.io import read_with_meta
        from ..data.overlay import overlay as tinted
        from ..data.resample import resample_probabilities
        from ..data.writers import write_image, write_mask
        from .components import voxel_scale

        t0 = time.perf_counter()
        path, overwrite, predictor = plan.input, self.overwrite, self.predictor
        raw, meta = read_with_meta(path, predictor.model.spatial_dims)
        image, back = prepare_input(raw, meta, predictor.model.in_channels, self.preprocessing, self.normalize)
        try:
            prob = predictor(image).cpu().numpy()  # (K, *spatial)
        except InputShapeError as e:
            raise DataError(f"{path}: {e}") from e
        scale = 1.0
        if back is not None:  # predicted on the training grid: back to the input's grid, written with its affine
            prob = resample_probabilities(prob, back)
            scale = voxel_scale(self.preprocessing, meta.spacing)
        mask = predictor.labels(prob, self.threshold, scale)
        if overwrite or not plan.mask.exists():
            write_mask(
                plan.mask, mask.astype("uint8" if prob.shape[0] <= 256 else "int32"), meta=meta, overwrite=overwrite
            )
        if plan.overlay is not None and (overwrite or not plan.overlay.exists()):
            write_image(plan.overlay, tinted(raw, mask).transpose(2, 0, 1), overwrite=overwrite)
        if plan.probabilities is not None and (overwrite or not plan.probabilities.exists()):
            write_image(plan.probabilities, prob, meta=meta, overwrite=overwrite)
        return replace(plan, seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class FileOptions:
    """What a prediction writes, and where it may: the file side of :meth:`~unetpp.inference.Predictor.predict_files`.

    Args:
        threshold: foreground probability above which a pixel is foreground (binary models).
        normalize: intensity normalisation; None repeats the training's, which a run's checkpoint records
            (with its channels and target spacing), else ``"zscore"`` per image.
        probabilities: also write float32 probability maps: the foreground's for one class, ``(K, *spatial)``
            for K classes (channels last in NIfTI, as MSD stores them).
        overlay: write ``<name>_overlay.png`` for 2D inputs.
        overwrite: replace existing outputs. Without it, outputs that an earlier run with the same model file
            and settings wrote are kept and only the missing ones are made (a rerun after a failure finishes
            the rest); outputs from another model or settings stop the run.
        part: ``(k, n)``: only part k of n of the sorted inputs (see :mod:`unetpp.utils.sharding`), for n
            independent jobs that share a cohort; each input falls in exactly one part.
        allow_input_folder: write into a folder that holds inputs (refused otherwise: masks would mix with the
            images); a rerun there recognises its earlier outputs by the folder's manifest, not by their names.

    Raises:
        ConfigError: a threshold outside (0, 1) or an unknown normalisation.
    """

    threshold: float = 0.5
    normalize: Literal["zscore", "percentile", "ct", "none"] | None = None
    probabilities: bool = False
    overlay: bool = True
    overwrite: bool = False
    part: tuple[int, int] | None = None
    allow_input_folder: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if self.normalize not in (None, "zscore", "percentile", "ct", "none"):
            raise ConfigError(f"normalize must be 'zscore', 'percentile', 'ct' or 'none', got {self.normalize!r}")


def prepare_files(
    predictor: ImagePredictor,
    inputs: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    options: FileOptions | None = None,
) -> FileJob:
    """Every check of :meth:`~unetpp.inference.Predictor.predict_files`, before any prediction; the work left as a
    job."""
    o = options or FileOptions()
    overwrite, part = o.overwrite, o.part
    prep = (saved_preprocessing(predictor.source) if predictor.source is not None else None) or {}
    normalize = o.normalize or prep.get("normalize", "zscore")
    out_dir = Path(out_dir)
    files = manifest.without_outputs(find_inputs(inputs), out_dir, o.allow_input_folder)
    if part is not None:  # the same sorted order in every job, so that the parts split it exactly
        from ..utils.sharding import take_part

        files = take_part(sorted(set(files)), part)
    created, listed = first_missing(out_dir), out_dir / MANIFEST
    before = listed.read_bytes() if listed.is_file() else None

    def undo() -> None:
        """Remove what preparing made (the folder, or the manifest as it was) when nothing was predicted."""
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif before is None:
            listed.unlink(missing_ok=True)
        else:
            listed.write_bytes(before)

    try:
        check_out_dir(out_dir)
        spatial_dims = predictor.model.spatial_dims
        plans = [plan_outputs(p, out_dir, spatial_dims, o.overlay, o.probabilities) for p in files]
        for path in files:  # every input opens before anything is written: a damaged third file stops the run now
            open_header(path)
        fingerprint = _fingerprint(predictor, o.threshold, normalize)
        check_outputs(plans, overwrite, resuming=not overwrite and _done_before(out_dir, fingerprint))
        left = remove_temporaries_of([*(out for plan in plans for out in plan.paths()), out_dir / MANIFEST])
        if left:
            logger.info("removed %d temporary file(s) left by a killed run in %s", len(left), out_dir)
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
        if todo:
            from ..utils.atomic import write_text

            outputs = [out for plan in plans for out in plan.paths()]
            write_text(out_dir / MANIFEST, manifest.text(out_dir, fingerprint, outputs), overwrite=True)
    except BaseException:
        undo()
        raise
    return FileJob(predictor, todo, len(plans), o.threshold, normalize, overwrite, prep, undo)


def run_files(job: FileJob, progress: bool = True) -> list[Written]:
    """Predict and write every input of `job`, in order (a tqdm bar with `progress`, where tqdm is installed)."""
    bar = _progress(job.plans, progress)
    written = []
    for n, plan in enumerate(bar, start=1):
        try:
            written.append(job.run_one(plan))
        except BaseException:
            if not written and not any(out.exists() for out in plan.paths()):
                job.undo()  # the first input failed (it does not fit the model): leave no folder or manifest
            raise
        if bar is job.plans:
            logger.debug("[%d/%d] %s -> %s (%.1f s)", n, len(bar), plan.input.name, plan.mask, written[-1].seconds)
    return written


def _progress(plans: list[Written], enabled: bool) -> Sequence[Written]:
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return plans
        return tqdm(plans, desc="predict", unit="image")  # type: ignore[return-value]
    return plans


__all__ = ["FileJob", "FileOptions", "ImagePredictor", "prepare_files", "run_files"]
