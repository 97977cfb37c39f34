"""fit(): a run folder with its resolved config, best/last checkpoints, CSV (and TensorBoard) logs.

The folder is the unit of work: ``config.yaml``, ``checkpoints/best.ckpt`` and ``last.ckpt``
(written atomically), ``logs/part-*/metrics.csv`` (one part per session). An existing run is
never overwritten: resume it (``resume=True``, continuing the epoch count from ``last.ckpt``) or
choose another folder.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from ..models.checkpoint import torch_save
from .datamodule import SegmentationDataModule
from .module import SegmentationModule

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, then rename it into place.

    A kill mid-write leaves the previous checkpoint intact instead of a truncated file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        torch_save(checkpoint, path, overwrite=True)  # last.ckpt and best.ckpt are replaced by design

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None):
        # Checkpoints hold tensors and plain values only: never unpickle code.
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class NewPatchesEachEpoch(Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.datamodule.set_epoch(trainer.current_epoch)


class SaveLastOnInterrupt(Callback):
    """On Ctrl-C, a kill (SIGTERM) or a crash, write ``last.ckpt`` so that ``--resume`` loses nothing.

    Lightning's own ``save_on_exception`` would write to the ``best`` file name; this keeps best
    meaning best.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.global_step > 0:
            trainer.save_checkpoint(self.path)
            log.warning("%s: training stopped (%s); saved %s", type(exception).__name__, exception, self.path)


def build_trainer(cfg: RunConfig, run_dir: Path, has_val: bool) -> L.Trainer:
    t = cfg.train
    monitor = ("val/score" if cfg.model.task == "instance" else "val/iou") if has_val else "train/loss"
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=monitor,
            mode="max" if has_val else "min",
            save_top_k=1,
            enable_version_counter=False,
        ),
        # last.ckpt after every epoch. Not ModelCheckpoint(save_last=True): Lightning then writes last.ckpt only
        # when the best one improves, so a run whose validation plateaus would resume from long ago.
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        ),
        NewPatchesEachEpoch(),
        SaveLastOnInterrupt(run_dir / "checkpoints" / "last.ckpt"),
    ]
    if t.early_stopping is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max" if has_val else "min", patience=t.early_stopping))
    # Lightning's CSV logger deletes an existing metrics.csv, so each session (the first run and
    # every resume) writes its own part: logs/part-000/metrics.csv, part-001, ...
    part = len(list((run_dir / "logs").glob("part-*")))
    loggers: list[Any] = [L.pytorch.loggers.CSVLogger(run_dir, name="logs", version=f"part-{part:03d}")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(L.pytorch.loggers.TensorBoardLogger(run_dir, name="logs", version="tensorboard"))
    except ImportError:
        pass
    return L.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.max_epochs,
        max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        precision=t.lightning_precision,
        accelerator=t.accelerator,
        devices=int(t.devices) if str(t.devices).isdigit() else t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        callbacks=callbacks,
        logger=loggers,
        log_every_n_steps=t.log_every,
        check_val_every_n_epoch=t.val_every,
        enable_progress_bar=t.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        deterministic=False,
    )


def fit(cfg: RunConfig, run_dir: str | os.PathLike, *, resume: bool = False) -> Path:
    """Train a model as configured into `run_dir`; returns the path of the best checkpoint.

    Raises:
        ConfigError: `run_dir` already holds a run and `resume` is False, or resume finds none.
    """
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise CheckpointError(f"{last}: nothing to resume (no last checkpoint); start a new run without --resume")
        saved = RunConfig.load(run_dir / "config.yaml")
        if saved.model != cfg.model:
            raise ConfigError(
                f"{run_dir}: the run was trained with another model ({saved.model.name}, depth {saved.model.depth}); "
                "resume with the saved config (omit model options) or start a new run folder"
            )
    elif (run_dir / "config.yaml").exists() or last.exists():
        raise ConfigError(
            f"{run_dir}: folder already holds a run; pass --resume to continue it or choose another folder"
        )
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    # Build the model and open the data before writing anything: a bad option leaves no half run behind.
    if cfg.model.task == "instance":  # Mask R-CNN(++): its module and data in engine/instance.py
        from .instance import instance_parts

        module, data = instance_parts(cfg)
    else:
        module = SegmentationModule(
            cfg.model.build_kwargs(),
            lr=cfg.train.lr,
            weight_decay=cfg.train.weight_decay,
            head_weights=cfg.train.head_weights,
            bce_weight=cfg.train.bce_weight,
            dice_weight=cfg.train.dice_weight,
            encoder_lr_scale=cfg.train.encoder_lr_scale,
        )
        data = SegmentationDataModule(
            cfg.data,
            spatial_dims=cfg.model.spatial_dims,
            classes=cfg.model.classes,
            in_channels=cfg.model.in_channels,
            seed=cfg.train.seed,
        )
    data.setup("fit")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        cfg.save(run_dir / "config.yaml", overwrite=False)
    trainer = build_trainer(cfg, run_dir, has_val=data.val_set is not None)
    trainer.fit(module, datamodule=data, ckpt_path=last if resume else None, weights_only=True)
    best = run_dir / "checkpoints" / "best.ckpt"
    return best if best.is_file() else last
