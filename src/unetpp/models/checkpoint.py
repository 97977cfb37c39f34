"""Model files: the build config travels with the weights, and loading never unpickles code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from .nested import NestedUNet
from .registry import build_model

FORMAT = "unetpp.model"
VERSION = 1


def atomic_torch_save(obj: object, path: str | os.PathLike[str]) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(model: NestedUNet, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Save config + weights so that :func:`load` rebuilds the model alone.

    Raises:
        CheckpointError: the file exists and `overwrite` is False.
    """
    if Path(path).exists() and not overwrite:
        raise CheckpointError(f"{path}: file exists; choose another path or pass overwrite=True")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_torch_save({"format": FORMAT, "version": VERSION, "config": model.config, "state_dict": state}, path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a model file safely (``weights_only=True``) and check it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(e).__name__}); re-save or re-download it"
        ) from e
    if isinstance(ckpt, dict) and "model_config" in ckpt.get("hyper_parameters", {}):
        return _from_training_checkpoint(ckpt)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a unetpp model file (no '{FORMAT}' header); save models with unetpp.save")
    return ckpt


def _from_training_checkpoint(ckpt: dict[str, object]) -> dict[str, object]:
    """A training checkpoint (``best.ckpt``/``last.ckpt`` of a run) as a model file: config + weights."""
    kwargs = dict(ckpt["hyper_parameters"]["model_config"])  # type: ignore[index]
    if "encoder_weights" in kwargs:  # the weights come from the checkpoint, not from a download
        kwargs["encoder_weights"] = None
    model = build_model(kwargs.pop("name"), **kwargs)
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}  # type: ignore[union-attr]
    return {"format": FORMAT, "version": VERSION, "config": model.config, "state_dict": state}


def load(path: str | os.PathLike[str], into: NestedUNet | None = None) -> NestedUNet:
    """Rebuild the model saved in `path`, or load its weights into `into` after checking they match.

    Raises:
        CheckpointError: missing, corrupt or foreign file, or a checkpoint of another model than `into`.
    """
    ckpt = read_checkpoint(path)
    # Files from before encoders existed lack these keys; freezing is a training choice, not architecture.
    config = {"encoder": None, "encoder_freeze": False, **ckpt["config"]}  # type: ignore[dict-item]
    if into is not None and {**into.config, "encoder_freeze": False} != {**config, "encoder_freeze": False}:
        saved = NestedUNet.from_config(config).describe()  # type: ignore[arg-type]
        raise CheckpointError(
            f"{path}: checkpoint holds {saved} but the model is {into.describe()}; build it with unetpp.load(path)"
        )
    try:
        model = into if into is not None else NestedUNet.from_config(config)  # type: ignore[arg-type]
    except (ConfigError, TypeError, KeyError) as e:
        if "needs timm" in str(e):  # a timm encoder without timm installed: say so, not "damaged"
            raise CheckpointError(f"{path}: cannot rebuild the saved model: {e}") from e
        raise CheckpointError(f"{path}: weights do not fit the saved config ({e}); the file is damaged") from e
    try:
        model.load_state_dict(ckpt["state_dict"])  # type: ignore[arg-type]
    except (RuntimeError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: weights do not fit the saved config ({e}); the file is damaged") from e
    return model
