"""Training checkpoints: written atomically, never unpickled, kept on a crash, best only when better, readable alone.

Every checkpoint the engine writes carries a small model header (:func:`add_model_header`) next to Lightning's
own keys; :mod:`unetpp.models.checkpoint` reads that header and never Lightning's layout (it also converts
runs trained before the header existed: :func:`unetpp.models.checkpoint.legacy_model_file`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..errors import CheckpointError, ConfigError, UnetppError
from ..models.checkpoint import HEADER_KEY, TRAINING_PREFIX, model_header, torch_save, unreadable_reason

log = logging.getLogger(__name__)

STATE_DICT_PREFIX = TRAINING_PREFIX  # SegmentationModule keeps the network as `self.model`


def add_model_header(checkpoint: dict[str, Any], config: dict[str, Any]) -> None:
    """Put the model header in a ``SegmentationModule`` checkpoint whose model has this config."""
    checkpoint[HEADER_KEY] = model_header(config, STATE_DICT_PREFIX)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, then rename it into place.

    A kill mid-write leaves the previous checkpoint intact instead of a truncated file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        torch_save(checkpoint, path, overwrite=True)  # last.ckpt and best.ckpt are replaced by design

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None):
        # Checkpoints hold tensors and plain values only: never unpickle code.
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class SaveLastOnInterrupt(Callback):
    """On Ctrl-C, a kill (SIGTERM) or a crash, write ``last.ckpt`` so that ``--resume`` loses nothing.

    Lightning's own ``save_on_exception`` would write to the ``best`` file name; this keeps best
    meaning best. A failed write (disk full) is not retried: the files on disk stay as they were.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Several ranks save together (a collective): only when every rank stops the same way (a signal to all).
        together = trainer.world_size == 1 or isinstance(exception, (SIGTERMException, KeyboardInterrupt))
        if trainer.global_step > 0 and together and not isinstance(exception, UnetppError):
            try:
                trainer.save_checkpoint(self.path)
            except UnetppError as e:  # the original exception is the one to report
                log.debug("could not save %s: %s", self.path, e)
                return
            self.saved = True
            log.debug("%s: training stopped (%s); saved %s", type(exception).__name__, exception, self.path)


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt`` replaced only by a better model, wherever the run folder has moved.

    Lightning forgets the best score when a resumed run's folder differs from the one it was saved
    in (a copied or moved run), and then overwrites ``best.ckpt`` with the next model, better or
    not. Here the score is read from ``best.ckpt`` itself (the file that is there is the one to
    beat), else from the resumed checkpoint, and the saved paths are moved to the current folder.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        here = Path(self.dirpath) if self.dirpath else None
        if here is not None:

            def moved(p: object) -> object:
                return str(here / Path(p).name) if isinstance(p, str) and p else p

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": moved(state_dict.get("best_model_path", "")),
                "kth_best_model_path": moved(state_dict.get("kth_best_model_path", "")),
                "last_model_path": moved(state_dict.get("last_model_path", "")),
                "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()},
            }
        super().load_state_dict(state_dict)
        best = Path(self.best_model_path) if self.best_model_path else None
        score = _saved_best_score(best, self.state_key) if best is not None else None
        if best is None or score is None:  # no best file to protect: the next validation writes one
            self.best_model_score, self.best_k_models = None, {}
            self.kth_value = torch.tensor(-torch.inf if self.mode == "max" else torch.inf)
            self.best_model_path = self.kth_best_model_path = ""
        else:
            self.best_model_score = score
            self.best_k_models = {str(best): score}
            self.kth_best_model_path, self.kth_value = str(best), score


def _saved_best_score(path: Path, state_key: str) -> Any:
    """The monitored score stored in a best checkpoint's own callback state; None if unreadable."""
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return ckpt["callbacks"][state_key]["best_model_score"]
    except Exception:  # a damaged best.ckpt: the next model replaces it
        return None


def check_resumable(path: Path, max_epochs: int | None = None) -> None:
    """Read a last checkpoint safely before Lightning does, so that a damaged one is one line, not a traceback.

    Raises:
        CheckpointError: empty, truncated, foreign or unsafe (pickled code) file, naming what to do.
    """
    fix = "copy best.ckpt over it to resume from the best model, or start a new run folder"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        raise CheckpointError(f"{path}: {unreadable_reason(path, e)}; cannot resume from it; {fix}") from None
    missing = (
        [k for k in ("state_dict", "epoch", "global_step", "optimizer_states", "loops") if k not in ckpt]
        if (isinstance(ckpt, dict))
        else ["everything"]
    )
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)}); {fix}")
    epoch = ckpt["epoch"]
    if max_epochs is not None and isinstance(epoch, int) and max_epochs <= epoch:  # Lightning: a traceback
        raise ConfigError(
            f"--epochs {max_epochs} (train.max_epochs): the run is already in epoch {epoch + 1}; "
            f"give --epochs {epoch + 2} or more to continue it"
        )
