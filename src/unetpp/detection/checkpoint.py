"""Detector files: the same file and the same one loader as the segmentation models (:func:`unetpp.load`).

The file is ``{"format": "unetpp.model", "version": 1, "config": {...}, "state_dict": {...}}`` with
``config["name"]`` a detector name; :func:`unetpp.load` builds it through its builder. This module only
adds the type check for callers that need a detector.
"""

from __future__ import annotations

import os

from ..errors import CheckpointError
from ..models.checkpoint import load as load_model_file
from ..models.checkpoint import save
from .model import PYRAMIDS, Detector

__all__ = ["load", "save"]


def load(path: str | os.PathLike[str]) -> Detector:
    """Rebuild the detector saved in `path` (no code is unpickled).

    Raises:
        CheckpointError: missing, corrupt or foreign file, weights that do not fit, or a segmentation model.
    """
    model = load_model_file(path)
    if not isinstance(model, Detector):
        raise CheckpointError(
            f"{path}: holds a segmentation model, not a detector ({', '.join(PYRAMIDS)}); load it with unetpp.load"
        )
    return model
