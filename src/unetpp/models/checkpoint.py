"""Model files: the build config travels with the weights, and loading never unpickles code.

:func:`load` is the one loader of PyTorch model files, whoever wrote them:

* ``.pt`` from :func:`save`: ``{"format": "unetpp.model", "version", "config", "state_dict"}``;
* a training checkpoint (a run's ``best.ckpt``/``last.ckpt``): any dict with ``"state_dict"`` and a
  ``"unetpp"`` header ``{"format", "version", "config", "state_dict_prefix"}``, which the training
  engine writes, so this file needs to know nothing of the trainer's layout. Checkpoints written
  before that header existed are converted by :func:`legacy_model_file`;
* ``.safetensors`` (+ a JSON sidecar) from :func:`unetpp.deploy.export.export_safetensors`;
* a folder of :func:`unetpp.save_pretrained`, or a Hugging Face Hub id (``org/name``, ``hf://org/name``)
  of one: :mod:`unetpp.models.hub` resolves it to the local snapshot.

ONNX files are not PyTorch models; :func:`unetpp.inference.runtimes.load_model` opens every kind.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..errors import CheckpointError, ConfigError
from ..utils.atomic import atomic_write
from .nested import NestedUNet
from .registry import OTHER_BUILDERS, build_model

PathLike = str | os.PathLike[str]
FORMAT = "unetpp.model"
VERSION = 1
HEADER_KEY = "unetpp"  # where a training checkpoint keeps its model header
TRAINING_PREFIX = "model."  # the engine's SegmentationModule keeps the network as `self.model`
SAFETENSORS_FORMAT = "unetpp.safetensors"
CONFIG_KEY = "unetpp.config"  # the model config in safetensors and ONNX metadata


class ModelFile(NamedTuple):
    """What a model file holds, whatever its format: the build config and the model's own state dict."""

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    config_source: str = "the saved config"  # named in messages when the weights do not fit


def torch_save(obj: object, path: PathLike, overwrite: bool = False) -> Path:
    """``torch.save`` through the project's one writer: atomic, and an existing file only with `overwrite`."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(_serialized(obj)), overwrite, CheckpointError)


def _serialized(obj: object) -> bytes:
    """``torch.save`` into memory: the file is then written by Python, whose errors (disk full, quota) are
    OSErrors that say so, where torch's C++ writer reports them as assorted RuntimeErrors."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save(
    model: NestedUNet,
    path: PathLike,
    *,
    overwrite: bool = False,
    preprocessing: dict[str, Any] | None = None,
    record: dict[str, Any] | None = None,
) -> Path:
    """Save config + weights so that :func:`load` rebuilds the model alone.

    `preprocessing` (what prediction repeats) and `record` (plain types: how the model was made, see
    :mod:`unetpp.models.provenance`) travel with it when given, as ``unetpp prune`` does.

    Raises:
        CheckpointError: the file exists and `overwrite` is False.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: not saved: {bad}; the training diverged, retrain with a lower --lr")
    extra = {k: v for k, v in (("preprocessing", preprocessing), ("record", record)) if v is not None}
    return torch_save(
        {"format": FORMAT, "version": VERSION, "config": model.config, "state_dict": state, **extra}, path, overwrite
    )


def model_header(config: dict[str, Any], state_dict_prefix: str = "") -> dict[str, Any]:
    """The header that makes any checkpoint dict a model file (see the module docstring)."""
    return {"format": FORMAT, "version": VERSION, "config": config, "state_dict_prefix": state_dict_prefix}


def legacy_model_file(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The model header of a training checkpoint written before the header existed; None if it is not one.

    Such runs hold the model only as ``hyper_parameters.model_config`` (the keyword arguments of
    :func:`~unetpp.models.registry.build_model`) with weights under ``state_dict`` prefixed ``model.``.
    """
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(hparams.get("model_config"), dict):
        return None
    kwargs = dict(hparams["model_config"])
    if "encoder_weights" in kwargs:  # the weights come from the checkpoint, not from a download
        kwargs["encoder_weights"] = None
    # Only the config is needed, but the build kwargs have to go through the builder to become one.
    model = build_model(kwargs.pop("name"), **kwargs)
    return model_header(model.config, TRAINING_PREFIX)


def unreadable_reason(path: Path, error: BaseException) -> str:
    """What is wrong with a file ``torch.load`` refused, in words: empty, truncated, unsafe, or another format."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        return f"cannot be read ({e.strerror or type(e).__name__})"
    text = str(error)
    if size == 0:
        return "empty file (0 bytes)"
    if "Weights only load failed" in text or "Unsupported global" in text:
        return "holds pickled objects other than tensors; refused to load them (they could run code)"
    if head.startswith(b"PK"):
        return f"truncated or damaged PyTorch file ({size} bytes; {type(error).__name__})"
    return f"not a PyTorch model file ({size} bytes; {type(error).__name__})"


def read_model_file(path: PathLike) -> ModelFile:
    """Read config + weights from any PyTorch model file (see the module docstring), safely.

    Raises:
        CheckpointError: missing, corrupt or foreign file (the file is named).
    """
    from .hub import pretrained_folder, read_pretrained

    folder = pretrained_folder(path)  # a save_pretrained folder or a Hub id (issue 21); None for files
    if folder is not None:
        return read_pretrained(folder)
    path = Path(path)
    if path.name.lower().endswith(".safetensors"):
        return _read_safetensors(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path")
    if path.name.lower().endswith(".onnx"):
        raise CheckpointError(
            f"{path}: an ONNX file; this command needs the PyTorch model it was exported from (.pt, .ckpt, "
            ".safetensors); predict runs .onnx files as they are"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(
            f"{path}: not a readable checkpoint: {unreadable_reason(path, e)}; re-save or re-download it"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a unetpp model file (no '{FORMAT}' header); save models with unetpp.save")
    header = ckpt.get(HEADER_KEY, ckpt)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        # an older training checkpoint carries only its trainer's hyper-parameters
        try:
            header = legacy_model_file(ckpt)
        except (ConfigError, TypeError, KeyError) as e:
            raise CheckpointError(f"{path}: cannot rebuild the saved model: {e}") from e
        if header is None:
            raise CheckpointError(
                f"{path}: not a unetpp model file (no '{FORMAT}' header); save models with unetpp.save"
            )
    version = header.get("version", VERSION)
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: model file version is {version!r}, not a number; the file is damaged")
    if version > VERSION:
        raise CheckpointError(
            f"{path}: model file version {header['version']} is newer than this unetpp reads ({VERSION}); "
            "upgrade unetpp"
        )
    prefix = str(header.get("state_dict_prefix", ""))
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or "config" not in header:
        raise CheckpointError(f"{path}: model file has no config or no weights; the file is damaged")
    if not isinstance(header["config"], dict):
        raise CheckpointError(
            f"{path}: the saved model config is a {type(header['config']).__name__}, not a mapping; the file is damaged"
        )
    weights = {k[len(prefix) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    odd = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise CheckpointError(f"{path}: weight {odd[0]!r} is not a tensor; the file is damaged")
    return ModelFile(dict(header["config"]), weights)


def sidecar(path: PathLike) -> Path:
    """The JSON config next to a weights file: ``model.safetensors`` -> ``model.json``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".json")


def _read_safetensors(path: Path) -> ModelFile:
    """Weights from safetensors; the config from the JSON sidecar, else from the file's header."""
    try:
        from safetensors import safe_open
    except ImportError as e:
        raise CheckpointError(f"{path}: reading safetensors needs safetensors; pip install 'unetpp[export]'") from e
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file; check the path")
    config: object
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises SafetensorError, OSError... for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}); re-export it") from e
    side = sidecar(path)
    try:
        config = json.loads(side.read_text()) if side.is_file() else json.loads(header[CONFIG_KEY])
    except KeyError:
        raise CheckpointError(
            f"{path}: no config found (no {side.name} and none in the header); re-export it"
        ) from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{side}: config is not valid JSON ({e}); re-export the model") from e
    source = f"the config in {side.name}" if side.is_file() else "the config in the file's header"
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: {source} is a {type(config).__name__}, not a mapping; re-export the model")
    return ModelFile(config, state, source)


def load(path: PathLike, into: NestedUNet | None = None) -> NestedUNet:
    """Rebuild the model saved in `path` (``.pt``, a run's ``.ckpt``, ``.safetensors``, a pretrained folder
    or Hub id), or fill `into`.

    Raises:
        CheckpointError: missing, corrupt or foreign file, or a checkpoint of another model than `into`.
    """
    saved = read_model_file(path)
    bad = non_finite(saved.state_dict)
    if bad is not None:  # a diverged training's weights predict nothing; never score them silently
        raise CheckpointError(
            f"{path}: {bad}; the training diverged, use an earlier checkpoint or retrain (lower --lr)"
        )
    if saved.config.get("name") in OTHER_BUILDERS:  # a detector (Mask R-CNN / Mask R-CNN++): same file format
        config = dict(saved.config)
        if into is not None and getattr(into, "config", None) != config:
            raise CheckpointError(f"{path}: holds a detector that differs from the model given; use unetpp.load(path)")
    else:  # files from before encoders existed lack these keys; freezing is a training choice, not architecture
        config = {"encoder": None, "encoder_freeze": False, **saved.config}
    damaged = f"{path}: weights do not fit {saved.config_source}"
    if (
        into is not None
        and config.get("name") not in OTHER_BUILDERS
        and {**into.config, "encoder_freeze": False} != {**config, "encoder_freeze": False}
    ):
        try:
            with torch.device("meta"):  # a tampered config must not allocate what it claims
                held = NestedUNet.from_config(config).describe()
        except (ConfigError, TypeError, KeyError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{damaged} ({e}); the file is damaged") from e
        raise CheckpointError(
            f"{path}: checkpoint holds {held} but the model is {into.describe()}; build it with unetpp.load(path)"
        )
    try:
        model = into if into is not None else _rebuild_fitting(config, saved.state_dict, damaged)
    except (ConfigError, TypeError, KeyError, ValueError, AttributeError) as e:
        if "needs timm" in str(e):  # a timm encoder without timm installed: say so, not "damaged"
            raise CheckpointError(f"{path}: cannot rebuild the saved model: {e}") from e
        raise CheckpointError(f"{damaged} ({e}); the file is damaged") from e
    try:
        model.load_state_dict(saved.state_dict)
    except (RuntimeError, TypeError, KeyError):
        wrong = _weights_mismatch(model, saved.state_dict)
        raise CheckpointError(f"{damaged} ({wrong}); the file is damaged") from None
    return model


def _rebuild(config: dict[str, Any]) -> NestedUNet:
    """The model a saved config describes; a detector is built by its own builder (torchvision, imported then)."""
    if config.get("name") in OTHER_BUILDERS:
        kwargs = {k: v for k, v in config.items() if k != "name"}
        return build_model(config["name"], **kwargs, encoder_weights=None)  # weights come from the file
    return NestedUNet.from_config(config)


def non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """Which weights hold NaN or infinite values, in a short phrase; None when every one is finite."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return None
    return f"{len(bad)} weight tensor(s) hold NaN or infinite values, e.g. {bad[0]}"


def _rebuild_fitting(config: dict[str, Any], state: dict[str, torch.Tensor], damaged: str) -> NestedUNet:
    """:func:`_rebuild`, after the config is built on the meta device (no memory) and compared with the stored
    tensors' shapes: a tampered config claiming widths of 16384 fails in one line instead of allocating 31 GiB."""
    try:
        with torch.device("meta"):
            skeleton = _rebuild(config)
    except (NotImplementedError, RuntimeError):  # an operation without a meta kernel: no shortcut, build it
        skeleton = None
    if skeleton is not None:
        own = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        if own != {k: tuple(v.shape) for k, v in state.items()}:
            raise CheckpointError(f"{damaged} ({_weights_mismatch(skeleton, state)}); the file is damaged")
    return _rebuild(config)


def _weights_mismatch(model: NestedUNet, state: dict[str, torch.Tensor]) -> str:
    """What differs between a model and a state dict, in one short phrase (PyTorch's message is one line per key)."""
    return "weights: " + (mismatch_text(model.state_dict(), state) or "do not load")


def mismatch_text(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], extra: list[str] | None = None) -> str:
    """What differs between a model's state dict and a file's, in one short phrase ("" when they fit).

    `extra`: the file's keys to report as unexpected (default: those the model does not have).
    """
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own] if extra is None else extra
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} of wrong shape, e.g. {k} is {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
        )
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
    return "; ".join(parts)
