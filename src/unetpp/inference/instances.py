"""Instance prediction: label maps from a detector (or from a semantic model's connected components), and files.

A detector (Mask R-CNN / Mask R-CNN++) gives one mask per instance; :func:`detector_label_map`
keeps those scoring >= ``threshold`` (0.5) and pastes them into one label map, the higher score
winning where two overlap. A semantic model (U-Net, UNet++) gives a foreground map;
:func:`semantic_label_map` labels its connected components, so both kinds of model are scored
with the same instance metrics (the rows of the paper's Table V).

:func:`predict_instance_files` is ``unetpp predict`` for detectors: for ``case.png`` it writes
``case_mask.png``, the instance label map as 16-bit PNG (0 background, 1..N), and
``case_overlay.png`` with one colour per instance; TIFF inputs give a 16-bit ``case_mask.tif``,
``.npy`` and NIfTI keep their format, JPEG/BMP give PNG. Every output is checked before any work.

``import unetpp.inference`` does not import this module (it imports torchvision).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError, InputShapeError
from ..metrics.instances import label_components, masks_to_label_map
from .outputs import Written, check_outputs, find_inputs, plan_outputs
from .preprocess import match_channels

if TYPE_CHECKING:
    from ..detection import Detector
    from ..models import NestedUNet

PathLike = str | os.PathLike[str]
SCORE_THRESHOLD = 0.5  # instances kept in label maps and scores (the Kaggle solutions' and the authors' cut)
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


def is_detector(model: Any) -> bool:
    """Whether `model` is a Mask R-CNN / Mask R-CNN++ (without importing torchvision for other models)."""
    from ..models.registry import OTHER_BUILDERS

    config = getattr(model, "config", None)
    return isinstance(config, dict) and config.get("name") in OTHER_BUILDERS


def is_detector_file(path: PathLike) -> bool:
    """Whether a PyTorch model file (``.pt``, ``.ckpt``, ``.safetensors``) holds a detector; False for other files."""
    from ..models.checkpoint import read_model_file
    from ..models.hub import pretrained_folder
    from ..models.registry import OTHER_BUILDERS

    if pretrained_folder(path) is not None:  # a save_pretrained folder or a Hub id
        return read_model_file(path).config.get("name") in OTHER_BUILDERS
    if not str(path).lower().endswith(MODEL_SUFFIXES) or not Path(path).is_file():
        return False
    return read_model_file(path).config.get("name") in OTHER_BUILDERS


def detections_to_label_map(det: dict[str, Tensor], threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """One ``(H, W)`` int32 label map from a detector's output for one image: instances scoring >= `threshold`."""
    keep = det["scores"] >= threshold
    return masks_to_label_map(det["masks"][keep].detach().cpu(), det["scores"][keep].detach().cpu())


@torch.inference_mode()
def detector_label_map(model: Detector, image: Tensor, threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """The instance label map of one image ``(C, H, W)`` in [0, 1], at the detector's scale (native by default).

    Instances below `threshold` are dropped before NMS rather than after: NMS keeps the higher score
    first, so the kept instances are the same, and far fewer full-size masks are pasted.
    """
    model.eval()
    heads = model.roi_heads
    saved, heads.score_thresh = heads.score_thresh, max(heads.score_thresh, threshold)
    try:
        device = next(model.parameters()).device
        det = model([image.to(device)])[0]
    finally:
        heads.score_thresh = saved
    return detections_to_label_map(det, threshold)


def semantic_label_map(model: NestedUNet, image: Tensor | np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Connected components (4-connected) of a semantic model's foreground: its instance label map.

    `image` ``(C, H, W)`` is normalised per image with z-scores, as the engine trains by default
    (z-scores do not depend on how the image was scaled). Uses the ensemble when the model has one.
    """
    from ..data.transforms import normalize_intensity
    from .predictor import Predictor

    x = normalize_intensity(np.asarray(image, dtype=np.float32), "zscore")
    probs = Predictor(model)(x)
    fg = probs[0] > threshold if probs.shape[0] == 1 else probs.argmax(dim=0) > 0
    return label_components(fg)


def read_for_detector(path: Path, in_channels: int) -> tuple[np.ndarray, Tensor, Any]:
    """The file's raw ``(C, H, W)`` array, the detector's input (model channels, [0, 1]) and its metadata."""
    from ..data.instances import scale_image
    from ..data.io import read_with_meta

    raw, meta = read_with_meta(path, 2)
    image = match_channels(raw, in_channels, path)
    return raw, torch.from_numpy(scale_image(np.ascontiguousarray(image), raw.dtype)), meta


def predict_instance_files(
    model: Detector | PathLike,
    inputs: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    *,
    threshold: float = SCORE_THRESHOLD,
    overlay: bool = True,
    overwrite: bool = False,
    allow_input_folder: bool = False,
) -> list[Written]:
    """Write an instance label map (and an overlay) for every 2-D input image (see the module docstring).

    Raises:
        CheckpointError: the model file is missing, corrupt, foreign or not a detector.
        DataError: unreadable input, an output that exists (without `overwrite`), or an image the model cannot take.
    """
    from ..data.overlay import instance_overlay
    from ..data.writers import write_image
    from ..detection import load
    from ..utils.atomic import write_text
    from . import manifest

    if not isinstance(model, torch.nn.Module):
        model = load(model)
    out_dir = Path(out_dir)
    files = manifest.without_outputs(find_inputs(inputs), out_dir, allow_input_folder)
    plans = [plan_outputs(p, out_dir, 2, overlay, False) for p in files]
    check_outputs(plans, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = [out for plan in plans for out in plan.paths()]  # listed: a rerun never takes them as inputs
    write_text(out_dir / manifest.MANIFEST, manifest.text(out_dir, None, outputs), overwrite=True)
    written = []
    for plan in plans:
        t0 = time.perf_counter()
        raw, image, meta = read_for_detector(plan.input, model.config["in_channels"])
        if raw.ndim != 3:
            raise DataError(f"{plan.input}: instance prediction takes 2-D images, got shape {raw.shape}")
        try:
            labels = detector_label_map(model, image, threshold)
        except InputShapeError as e:
            raise DataError(f"{plan.input}: {e}") from e
        if labels.max(initial=0) > np.iinfo(np.uint16).max:
            raise DataError(f"{plan.input}: {labels.max()} instances do not fit a 16-bit label map")
        write_image(plan.mask, labels.astype(np.uint16)[None], meta=meta, overwrite=overwrite)
        if plan.overlay is not None:
            write_image(plan.overlay, instance_overlay(raw, labels).transpose(2, 0, 1), overwrite=overwrite)
        written.append(replace(plan, seconds=time.perf_counter() - t0))
    return written


__all__ = [
    "SCORE_THRESHOLD",
    "detections_to_label_map",
    "detector_label_map",
    "is_detector",
    "is_detector_file",
    "predict_instance_files",
    "semantic_label_map",
]
