"""``unetpp train --init MODEL``: a run's config when it starts from a trained model (issue 21).

:func:`init_config` runs before the plan: the model file's architecture (family member, depth, widths,
heads, dimensions, normalisation, backbone; a detector's pyramid and anchors) becomes the run's, as if
the user had set it, so the plan keeps it and fits the rest to the data (patch divisible by 2^depth,
batch, normalisation). The data-dependent settings are then checked or adapted:

- **input channels**: a 2D model of 1 or 3 channels reads the images as grey or RGB (converted as
  prediction does), unless ``data.channels`` was given; otherwise the channels the data give must be
  the model's, or :func:`unetpp.models.transfer.start_from` stops with one line (exit 2);
- **classes** come from the data (or ``--classes``) as usual: where they differ, the class heads start
  at random and the rest is loaded (one log line);
- an architecture option that contradicts the file (``--depth 3`` for a depth-4 model), or
  ``--encoder-weights`` beside ``--init``, is one line naming both.

Freezing the backbone or a lower learning rate for it (``--encoder-freeze``, ``--encoder-lr-scale``)
work as for ImageNet weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import InitError

if TYPE_CHECKING:
    from ..config import RunConfig

log = logging.getLogger(__name__)


def init_config(cfg: RunConfig, user_fields: Iterable[str] | None) -> tuple[RunConfig, frozenset[str]]:
    """`cfg` with the architecture of ``cfg.train.init``, and the user's fields with those added.

    Raises:
        InitError: an option that contradicts the model file, or ``--encoder-weights`` beside ``--init``.
        CheckpointError: the model file cannot be read.
    """
    from ..config import RunConfig
    from ..models.checkpoint import read_model_file
    from ..models.transfer import architecture_of
    from .planning import user_fields_of

    source = cfg.train.init
    user = frozenset(user_fields) if user_fields is not None else user_fields_of(cfg)
    try:
        arch = architecture_of(read_model_file(source).config)
    except InitError as e:
        raise InitError(f"--init {source}: {e}") from None
    if cfg.model.encoder_weights is not None and "model.encoder_weights" in user:
        raise InitError(
            f"--init {source} and --encoder-weights {cfg.model.encoder_weights} both give the encoder's weights; "
            "give one of them"
        )
    data_dependent = {"classes", "in_channels"}
    d = cfg.to_dict()
    for key, value in arch.items():
        if key in data_dependent:
            continue
        if f"model.{key}" in user and _plain(d["model"][key]) != _plain(value):
            raise InitError(
                f"--init {source} holds a model with {key}={value!r} but model.{key}={d['model'][key]!r} was given; "
                f"drop that option (the architecture comes from --init) or start without --init"
            )
        d["model"][key] = value
    d["model"]["encoder_weights"] = None  # the weights come from the file, not from a download
    added = {f"model.{k}" for k in arch if k not in data_dependent} | {"model.encoder_weights"}
    channels = {1: "grey", 3: "rgb"}.get(arch["in_channels"])
    note = ""
    free = "data.channels" not in user and "model.in_channels" not in user
    if arch["task"] == "semantic" and arch["spatial_dims"] == 2 and channels and free:
        # 2D images convert between grey and RGB as prediction converts them
        d["data"]["channels"], d["model"]["in_channels"] = channels, arch["in_channels"]
        added |= {"data.channels", "model.in_channels"}
        note = f"; images are read as {channels}"
    if arch["task"] == "instance" and "model.in_channels" not in user:
        d["model"]["in_channels"] = arch["in_channels"]
        added.add("model.in_channels")
    if "model.classes" not in user and arch["task"] == "instance":
        d["model"]["classes"] = arch["classes"]
    log.info("--init %s: %s from the file%s", source, _summary(arch), note)
    return RunConfig.from_dict(d, source=f"--init {source}"), user | added


def _summary(arch: dict[str, Any]) -> str:
    if arch["task"] == "instance":
        return f"{arch['name']} on {arch['encoder']} (pyramid width {arch['pyramid_width']})"
    encoder = f" on {arch['encoder']}" if arch.get("encoder") else ""
    return (
        f"{arch['name']}{encoder}, {arch['spatial_dims']}D, depth {arch['depth']}, widths {arch['widths']}, "
        f"{'deep supervision' if arch['deep_supervision'] else 'one head'}, {arch['in_channels']} input channel(s)"
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
