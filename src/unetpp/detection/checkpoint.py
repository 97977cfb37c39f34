"""Detector files: the build config travels with the weights, and loading never unpickles code.

The file is the same dict as :func:`unetpp.save` writes for the segmentation models
(``{"format": "unetpp.model", "version": 1, "config": {...}, "state_dict": {...}}``), with
``config["name"]`` a detector name, so one loader can dispatch on the name.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..files import atomic_write
from .model import PYRAMIDS, Detector

FORMAT = "unetpp.model"
VERSION = 1


def save(model: Detector, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Save config + weights so that :func:`load` rebuilds the detector alone.

    Raises:
        CheckpointError: the file exists and `overwrite` is False.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    ckpt = {"format": FORMAT, "version": VERSION, "config": model.config, "state_dict": state}
    return atomic_write(path, lambda tmp: torch.save(ckpt, tmp), overwrite=overwrite, error=CheckpointError)


def is_detector_config(config: object) -> bool:
    """True for the config of a detector (what a generic loader dispatches on)."""
    return isinstance(config, dict) and config.get("name") in PYRAMIDS


def load(path: str | os.PathLike[str]) -> Detector:
    """Rebuild the detector saved in `path` (``torch.load(weights_only=True)``: no code is unpickled).

    Raises:
        CheckpointError: missing, corrupt or foreign file, or weights that do not fit the config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}); re-save it") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a unetpp model file (no '{FORMAT}' header); save detectors with save()")
    if not is_detector_config(ckpt.get("config")):
        raise CheckpointError(
            f"{path}: holds a segmentation model, not a detector ({', '.join(PYRAMIDS)}); load it with unetpp.load"
        )
    try:
        model = Detector.from_config(ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
    except (ConfigError, RuntimeError, TypeError, KeyError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: weights do not fit the saved config ({first}); the file is damaged") from e
    return model
