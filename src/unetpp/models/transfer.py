"""Start a model from a trained one (``unetpp train --init``): its architecture, its weights, new class heads.

The model to start from is any model file :func:`unetpp.load` reads (a run's ``best.ckpt``, a saved or
pruned ``.pt``, ``.safetensors``, a pretrained folder or Hub id). The new model is built with the same
architecture (:func:`architecture_of` says which build arguments give it), so every weight fits, except
where the data ask for something else:

- **other classes**: the class heads (``heads.*`` of the UNet++ family, the box and mask predictors of a
  detector) start at random, everything else is loaded, and one log line says so;
- **other input channels**: the first convolution cannot be adapted: one line, exit 2
  (:class:`~unetpp.errors.InitError`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from torch import nn

from ..errors import InitError
from .grid import GridSpec
from .registry import OTHER_BUILDERS

log = logging.getLogger("unetpp")
PathLike = str | os.PathLike[str]
HEAD_PREFIXES = ("heads.", "roi_heads.box_predictor.", "roi_heads.mask_predictor.")  # weights that count classes


def architecture_of(config: dict[str, Any]) -> dict[str, Any]:
    """Build arguments (``ModelConfig`` fields) that rebuild the architecture of a saved model config.

    For the UNet++ family the registry name and deep supervision are those whose grid is the saved one
    (a model pruned to depth d is UNet++ L^d with one head; a pruned U-Net^e is a U-Net).

    Raises:
        InitError: a grid no registered model builds (a custom GridSpec), or a detector whose box and mask
            heads differ in width from its pyramid.
    """
    if config.get("name") in OTHER_BUILDERS:
        if config.get("head_width", config.get("pyramid_width")) != config.get("pyramid_width"):
            raise InitError(
                f"a {config['name']} with head width {config.get('head_width')} and pyramid width "
                f"{config.get('pyramid_width')}: training builds both of one width; fine-tune it from Python"
            )
        classes = int(config["classes"])
        return {
            "task": "instance",
            "name": config["name"],
            "encoder": config["encoder"],
            "in_channels": int(config["in_channels"]),
            "classes": 1 if classes == 2 else classes,  # a detector counts the background; the config does not
            "pyramid_width": int(config["pyramid_width"]),
            "anchor_sizes": list(config["anchor_sizes"]),
            "min_size": config.get("min_size"),
        }
    spec = GridSpec.from_dict(config["spec"])
    name, deep_supervision = _registry_name(str(config.get("name")), spec)
    return {
        "task": "semantic",
        "name": name,
        "depth": spec.depth,
        "widths": list(spec.widths),
        "deep_supervision": deep_supervision,
        "spatial_dims": int(config["spatial_dims"]),
        "norm": config.get("norm"),
        "encoder": config.get("encoder"),
        "in_channels": int(config["in_channels"]),
        "classes": int(config["classes"]),
    }


def _registry_name(preferred: str, spec: GridSpec) -> tuple[str, bool]:
    from .registry import _REGISTRY

    names = [preferred] + [n for n in _REGISTRY if n != preferred]
    for name in names:
        if name not in _REGISTRY:
            continue
        for deep_supervision in (True, False):
            if _REGISTRY[name][0](spec.depth, spec.widths, deep_supervision) == spec:
                return name, deep_supervision
    raise InitError(
        f"its grid ({spec.skip} skips, {len(spec.nodes)} nodes, heads {list(spec.heads)}) is no registered model's; "
        "fine-tune it from Python (unetpp.load, then train it yourself)"
    )


def start_from(model: nn.Module, source: PathLike) -> str:
    """Load the weights of the model file `source` into `model`, built with :func:`architecture_of`'s arguments.

    Returns the one line it logs: what was loaded and what starts at random.

    Raises:
        InitError: other input channels, or weights that differ beyond the class heads (one line).
        CheckpointError: `source` cannot be read.
    """
    from .checkpoint import mismatch_text, read_model_file

    saved = read_model_file(source)
    want, have = getattr(model, "in_channels", None), saved.config.get("in_channels")
    if want is None:  # a detector keeps its channels in its config
        want = getattr(model, "config", {}).get("in_channels")
    if want != have:
        raise InitError(
            f"--init {source}: the model takes {have} input channel(s) but the data give {want}; its first "
            f"convolution cannot be adapted: read the images with {have} channel(s) (--channels grey/rgb, "
            "--in-channels) or start without --init"
        )
    own, state = model.state_dict(), saved.state_dict
    differ = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    new = [k for k in differ if k.startswith(HEAD_PREFIXES)]
    extra = [k for k in state if k not in own]
    if len(new) < len(differ) or extra:
        rest = {k: v for k, v in own.items() if not k.startswith(HEAD_PREFIXES)}
        problem = mismatch_text(rest, {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)})
        raise InitError(f"--init {source}: its weights do not fit the model to train ({problem})")
    model.load_state_dict({**own, **{k: v for k, v in state.items() if k not in new}})
    loaded = len(own) - len(new)
    if new:
        now = getattr(model, "classes", None) or getattr(model, "config", {}).get("classes")
        line = (
            f"--init {source}: {now} classes here, {saved.config.get('classes')} in the model: new class heads "
            f"({len(new)} tensors, e.g. {new[0]}) start at random; the other {loaded} weight tensors are loaded"
        )
    else:
        line = f"--init {source}: all {loaded} weight tensors loaded"
    log.info("%s", line)
    return line
