"""What the engine puts in a training checkpoint so that ``unetpp.load`` reads it without Lightning.

Every checkpoint the engine writes carries a small model header (:func:`add_model_header`) next to Lightning's
own keys; :mod:`unetpp.models.checkpoint` reads that header and never Lightning's layout (it also converts
runs trained before the header existed: :func:`unetpp.models.checkpoint.legacy_model_file`).
"""

from __future__ import annotations

from typing import Any

from ..models.checkpoint import HEADER_KEY, TRAINING_PREFIX, model_header

STATE_DICT_PREFIX = TRAINING_PREFIX  # SegmentationModule keeps the network as `self.model`


def add_model_header(checkpoint: dict[str, Any], config: dict[str, Any]) -> None:
    """Put the model header in a ``SegmentationModule`` checkpoint whose model has this config."""
    checkpoint[HEADER_KEY] = model_header(config, STATE_DICT_PREFIX)
