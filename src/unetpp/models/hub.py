"""Share and reuse trained models as timm and smp users do: folders and the Hugging Face Hub.

A *pretrained folder* is what :func:`save_pretrained` writes and what a Hub repository holds:

- ``model.safetensors``: the weights (no pickle; its header carries the model config too, so the file
  alone also loads with :func:`unetpp.load`);
- ``config.json``: ``{"format": "unetpp.pretrained", "version": 1, "library": "unetpp", "model": <the
  build config>, "preprocessing": <what prediction repeats>, "record": <training data, plan, scores,
  pruning>, ...}`` (see :mod:`unetpp.models.provenance`);
- ``README.md``: the model card (:mod:`unetpp.models.card`), with the Hub's metadata block.

Every command and function that opens a model file (:func:`unetpp.load`, so ``--checkpoint`` of
predict, evaluate, prune, export, bench and ``train --init``) also takes a pretrained folder, a Hub id
``org/name`` (when no such local path exists) or ``hf://org/name``, either with ``@revision``. Hub ids
are resolved by ``huggingface_hub.snapshot_download`` into its cache; with ``HF_HUB_OFFLINE=1`` (or no
network) the cached snapshot is used. ``huggingface_hub`` is imported only for Hub ids and pushes
(``pip install 'unetpp[hub]'``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CheckpointError, ConfigError, ExportError, UnetppError

PathLike = str | os.PathLike[str]
HUB_PREFIX = "hf://"
WEIGHTS_NAME, CONFIG_NAME, CARD_NAME = "model.safetensors", "config.json", "README.md"
FORMAT, VERSION = "unetpp.pretrained", 1
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".onnx", ".json", ".yaml")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


def split_hub_ref(ref: str) -> tuple[str, str | None]:
    """``"hf://org/name@rev"`` or ``"org/name@rev"`` -> ``("org/name", "rev")``; no revision -> None."""
    repo, _, revision = ref.removeprefix(HUB_PREFIX).partition("@")
    return repo, revision or None


def is_hub_ref(ref: object) -> bool:
    """Whether `ref` names a Hub repository: ``hf://...``, or ``org/name`` that is no local path or model file."""
    if not isinstance(ref, (str, os.PathLike)):
        return False
    text = os.fspath(ref)
    if text.startswith(HUB_PREFIX):
        return True
    return (
        _HUB_ID.fullmatch(text) is not None
        and not Path(text).exists()
        and not split_hub_ref(text)[0].lower().endswith(MODEL_SUFFIXES)
    )


def pretrained_folder(ref: object, revision: str | None = None) -> Path | None:
    """The local folder of the pretrained model `ref` names, or None when `ref` is something else (a file).

    A Hub id is downloaded into (or, offline, read from) the Hugging Face cache.

    Raises:
        CheckpointError: a folder that is not a pretrained one, or a Hub id that cannot be had (one line).
    """
    if not isinstance(ref, (str, os.PathLike)):
        return None
    if is_hub_ref(ref):
        repo, rev = split_hub_ref(os.fspath(ref))
        return _check_folder(hub_snapshot(repo, revision or rev), os.fspath(ref))
    path = Path(ref)
    return _check_folder(path, str(path)) if path.is_dir() else None


def _check_folder(folder: Path, named: str) -> Path:
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(
            f"{named}: a folder without {' and '.join(missing)}, so not a model written by unetpp.save_pretrained "
            "(or unetpp push); give a model file (.ckpt, .pt, .safetensors) or such a folder"
        )
    return folder


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot of a Hub repository (downloaded if needed and possible).

    Raises:
        CheckpointError: huggingface_hub missing, no such repo or revision, or offline without a cached copy.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise CheckpointError(f"{repo_id}: Hugging Face Hub ids need huggingface_hub; pip install 'unetpp[hub]'") from e
    from ..utils.version import __version__

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME],
            library_name="unetpp",
            library_version=__version__,
        )
    except Exception as e:  # huggingface_hub's errors differ between versions: told apart by name
        raise CheckpointError(f"{repo_id}: {_hub_problem(e, revision)}") from None
    return Path(folder)


def _hub_problem(error: Exception, revision: str | None) -> str:
    kind = type(error).__name__
    if kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or isinstance(error, (OSError, ConnectionError)):
        return (
            "no such local file or folder, and not in the Hugging Face cache while the Hub cannot be reached "
            "(offline or HF_HUB_OFFLINE=1); download it once with network access, or give a local model file"
        )
    if kind == "RevisionNotFoundError":
        return f"the Hub repository has no revision {revision!r}; check the branch, tag or commit"
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return (
            "no such model on the Hugging Face Hub (or it is private or gated: log in with `hf auth login` or set "
            "HF_TOKEN), and no such local file or folder"
        )
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"cannot get it from the Hugging Face Hub ({kind}: {first})"


def read_config_json(folder: PathLike) -> dict[str, Any]:
    """A pretrained folder's ``config.json``, checked.

    Raises:
        CheckpointError: unreadable, not unetpp's, or newer than this version reads.
    """
    path = Path(folder) / CONFIG_NAME
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON config ({type(e).__name__}); the model is damaged") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("model"), dict):
        raise CheckpointError(f"{path}: not a unetpp model config (no format {FORMAT!r} with a model); wrong folder")
    version = info.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: config version {version!r} is newer than this unetpp reads; upgrade unetpp")
    return info


def read_pretrained(folder: PathLike) -> Any:
    """The :class:`~unetpp.models.checkpoint.ModelFile` of a pretrained folder (never unpickles).

    Raises:
        CheckpointError: damaged config or weights.
    """
    from .checkpoint import ModelFile

    info = read_config_json(folder)
    path = Path(folder) / WEIGHTS_NAME
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise CheckpointError(f"{path}: reading safetensors needs safetensors; pip install 'unetpp[hub]'") from e
    try:
        state = load_file(path)
    except Exception as e:  # SafetensorError, OSError...
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({type(e).__name__}); the model is damaged"
        ) from e
    return ModelFile(dict(info["model"]), state, f"the config in {CONFIG_NAME}")


def local_model_file(ref: PathLike) -> Path:
    """The file on disk that holds `ref`'s weights: a pretrained folder's (or Hub snapshot's) ``model.safetensors``,
    else `ref` itself."""
    folder = pretrained_folder(ref)
    return Path(ref) if folder is None else folder / WEIGHTS_NAME


def run_folder_of(checkpoint: PathLike) -> Path:
    """Where outputs about a model go by default: its run folder (``runs/x`` of ``runs/x/checkpoints/best.ckpt``),
    or the current folder for a Hub id."""
    return Path(".") if is_hub_ref(checkpoint) else Path(checkpoint).parent.parent


# ---------------------------------------------------------------------------------------------- API
def from_pretrained(ref: PathLike, *, revision: str | None = None) -> nn.Module:
    """Rebuild a model from a pretrained folder or the Hub (``"org/name"``, ``"hf://org/name"``).

    Offline (``HF_HUB_OFFLINE=1``, or no network) the Hugging Face cache is read. The preprocessing the
    model expects is in ``config.json`` (:func:`unetpp.models.provenance.recorded_preprocessing`), and
    ``unetpp predict --checkpoint org/name`` repeats it.

    Raises:
        CheckpointError: not such a folder or Hub model, not in the cache offline, or damaged files.

    Example:
        >>> model = unetpp.from_pretrained("my_model")                   # a folder of save_pretrained
        >>> model = unetpp.from_pretrained("org/em-unetpp", revision="v1")  # the Hub (or its cache)
    """
    from .checkpoint import load

    folder = pretrained_folder(ref, revision)
    if folder is None:
        raise CheckpointError(
            f"{ref}: neither a folder written by unetpp.save_pretrained nor a Hub id (org/name); "
            "model files (.pt, .ckpt, .safetensors) load with unetpp.load"
        )
    return load(folder)


def save_pretrained(
    model_or_checkpoint: nn.Module | PathLike,
    folder: PathLike,
    *,
    overwrite: bool = False,
    preprocessing: dict[str, Any] | None = None,
    license: str = "other",
    name: str | None = None,
) -> Path:
    """Write `folder` with ``model.safetensors``, ``config.json`` and a model card ``README.md``.

    Args:
        model_or_checkpoint: a model, or any model file (a run's ``best.ckpt``, a saved or pruned ``.pt``,
            ``.safetensors``, a pretrained folder or Hub id): then what it and its run folder record (the
            preprocessing, training data, plan, command, scores, pruning) goes into the config and card.
        folder: the output folder (created; existing files in it are kept unless `overwrite`).
        preprocessing: what prediction must repeat, for a model given in memory (a file records its own).
        license: the card's licence (Hub metadata), e.g. "mit", "cc-by-4.0"; "other" by default.
        name: the model's name in the card (default: the folder's name).

    Raises:
        ExportError: a file exists and `overwrite` is False (nothing is written then).
        CheckpointError: the model file cannot be read.
    """
    from ..utils.atomic import atomic_write, check_output
    from ..utils.version import __version__
    from .card import model_card
    from .checkpoint import CONFIG_KEY, SAFETENSORS_FORMAT, load
    from .provenance import ENSEMBLE_HEADS, POSTPROCESS, TTA, model_record

    try:
        from safetensors.torch import save as safetensors_bytes
    except ImportError as e:
        raise ExportError("save_pretrained writes safetensors; pip install 'unetpp[hub]'") from e
    folder = Path(folder)
    for file in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
        check_output(folder / file, overwrite, ExportError)
    if isinstance(model_or_checkpoint, nn.Module):
        model, record = model_or_checkpoint, {}
    else:
        model, record = load(model_or_checkpoint), model_record(model_or_checkpoint)
        preprocessing = preprocessing or record.get("preprocessing")
    record.pop("preprocessing", None)
    chosen = record.pop(ENSEMBLE_HEADS, None)
    tta = record.pop(TTA, None)
    postprocess = record.pop(POSTPROCESS, None)
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise ConfigError(f"save_pretrained takes a unetpp model (with .config), got {type(model).__name__}")
    info = {
        "format": FORMAT,
        "version": VERSION,
        "library": "unetpp",
        "unetpp_version": __version__,
        "model": config,
        "describe": model.describe() if hasattr(model, "describe") else config.get("name"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "preprocessing": preprocessing,
        ENSEMBLE_HEADS: chosen,  # the heads prediction averages (chosen on validation); None: all of them
        TTA: tta,  # whether prediction averages over flips (measured on validation); None: one pass
        POSTPROCESS: postprocess,  # the smallest component kept per class (measured on validation); None: all
        "record": record,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = safetensors_bytes(state, metadata={"format": SAFETENSORS_FORMAT, CONFIG_KEY: json.dumps(config)})
    card = model_card(info, name=name or folder.resolve().name, license=license)
    folder.mkdir(parents=True, exist_ok=True)
    for file, data in ((WEIGHTS_NAME, weights), (CONFIG_NAME, json.dumps(info, indent=1) + "\n"), (CARD_NAME, card)):
        payload = data.encode() if isinstance(data, str) else data
        atomic_write(folder / file, lambda tmp, b=payload: tmp.write_bytes(b), overwrite, ExportError)
    return folder


def push_to_hub(
    model_or_checkpoint: nn.Module | PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    license: str = "other",
    token: str | None = None,
) -> str:
    """Upload what :func:`save_pretrained` writes to the Hub repository `repo_id` (created if new).

    Returns the URL of the commit (or of the repository). The token is huggingface_hub's: ``hf auth login``
    or ``HF_TOKEN``.

    Raises:
        ConfigError: `repo_id` is not ``org/name``.
        UnetppError: huggingface_hub missing, or the Hub refused or could not be reached (one line).
    """
    repo_id = repo_id.removeprefix(HUB_PREFIX)
    if _HUB_ID.fullmatch(repo_id) is None or "@" in repo_id:
        raise ConfigError(f"--repo {repo_id!r}: expected a Hub repository id like org/name (or user/name)")
    try:
        from huggingface_hub import HfApi
    except ImportError as e:
        raise UnetppError("unetpp push needs huggingface_hub; pip install 'unetpp[hub]'") from e
    from ..utils.version import __version__

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model_or_checkpoint, Path(tmp) / repo_id.split("/")[1], license=license, name=repo_id)
        api = HfApi(token=token, library_name="unetpp", library_version=__version__)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            if revision is not None:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                revision=revision,
                commit_message=commit_message or f"unetpp {__version__}: {WEIGHTS_NAME}, {CONFIG_NAME}, {CARD_NAME}",
            )
        except Exception as e:  # HTTP, auth and network errors of several types
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise UnetppError(
                f"{repo_id}: upload to the Hugging Face Hub failed ({type(e).__name__}: {first}); log in with "
                "`hf auth login` (or set HF_TOKEN) and check the repository name and your rights to it"
            ) from None
    return str(getattr(commit, "commit_url", None) or url)


__all__ = ["from_pretrained", "is_hub_ref", "pretrained_folder", "push_to_hub", "save_pretrained"]
