"""What the engine puts in a training checkpoint so that ``unetpp.load`` reads it without Lightning.

Every checkpoint the engine writes carries a small model header (:func:`add_model_header`) next to Lightning's
own keys; :mod:`unetpp.models.checkpoint` reads that header and never Lightning's layout. Runs
trained before the header existed hold the model only as ``hyper_parameters.model_config`` (the
keyword arguments of :func:`unetpp.build_model`) with weights under ``state_dict`` prefixed
``model.``: :func:`legacy_model_file` converts those. This module must not import Lightning: the
model loader calls it, and loading a model must not pull in the trainer.
"""

from __future__ import annotations

from typing import Any

from ..models.checkpoint import HEADER_KEY, model_header
from ..models.registry import build_model

STATE_DICT_PREFIX = "model."  # SegmentationModule keeps the network as `self.model`


def add_model_header(checkpoint: dict[str, Any], config: dict[str, Any]) -> None:
    """Put the model header in a ``SegmentationModule`` checkpoint whose model has this config."""
    checkpoint[HEADER_KEY] = model_header(config, STATE_DICT_PREFIX)


def legacy_model_file(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The model header of a training checkpoint written before the header existed; None if it is not one."""
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("model_config"), dict):
        return None
    kwargs = dict(hparams["model_config"])
    if "encoder_weights" in kwargs:  # the weights come from the checkpoint, not from a download
        kwargs["encoder_weights"] = None
    # Only the config is needed, but the build kwargs have to go through the builder to become one.
    model = build_model(kwargs.pop("name"), **kwargs)
    return model_header(model.config, STATE_DICT_PREFIX)
