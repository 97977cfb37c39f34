"""Which files go in and which come out of a prediction, all checked before any model runs.

Inputs are found (a folder, a pattern, files), every output is named from its input (masks keep the
input's format, JPEG and BMP become PNG), clashes and existing outputs are refused, the output folder is
tried for writing, and each input's header is opened so that a damaged file stops the job before work.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from . import manifest

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


def find_inputs(inputs: PathLike | Sequence[PathLike], exclude_outputs_in: Path | None = None) -> list[Path]:
    """Files to predict: a folder (its readable images, sorted), a glob pattern, one file, or a list of those.

    Raises:
        DataError: a missing file, an empty folder, or a pattern that matches nothing.
    """
    from ..data.io import is_supported

    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_supported(p))
            if exclude_outputs_in is not None:  # our own earlier outputs, as the folder's manifest lists them
                found = manifest.without_outputs(found, exclude_outputs_in, allow_input_folder=True)
            if not found:
                raise DataError(f"{path}: folder has no readable images (PNG, JPEG, TIFF, NIfTI, .npy)")
            return found
        if path.is_file():
            return [path]
        if glob.has_magic(str(inputs)):
            found = sorted(Path(p) for p in glob.glob(str(inputs), recursive=True) if Path(p).is_file())
            if exclude_outputs_in is not None:
                found = manifest.without_outputs(found, exclude_outputs_in, allow_input_folder=True)
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


def check_out_dir(out_dir: Path) -> None:
    """Create `out_dir` and write a scratch file in it, so an unwritable folder fails before any prediction."""
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
