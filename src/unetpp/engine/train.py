"""fit(): a run folder with its resolved config, best/last checkpoints, CSV (and TensorBoard) logs.

The folder is the unit of work: ``config.yaml``, ``checkpoints/best.ckpt`` and ``last.ckpt``
(written atomically), ``logs/part-*/metrics.csv`` (one part per session). An existing run is
never overwritten: resume it (``resume=True``, continuing the epoch count from ``last.ckpt``) or
choose another folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from ..utils.atomic import check_folder, temporaries
from .budget import CHECK_SHARE, MARGIN_S, ProgressWithTimeLeft, WallClockBudget
from .checkpoints import AtomicCheckpointIO, BestCheckpoint, SaveLastOnInterrupt, check_resumable
from .datamodule import SegmentationDataModule
from .distributed import RankWatch, is_rank_zero, wait_for_config, watch_children, watch_parent
from .module import SegmentationModule
from .runlock import LOCK_NAME, run_lock
from .signals import Terminated

log = logging.getLogger(__name__)

RUN_MARKER = ".unetpp-run"  # written into every run folder: what tells a run from a user's own folder


class NewPatchesEachEpoch(Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.datamodule.set_epoch(trainer.current_epoch)


def build_trainer(cfg: RunConfig, run_dir: Path, has_val: bool, budget: WallClockBudget | None = None) -> L.Trainer:
    t = cfg.train
    monitor = ("val/score" if cfg.model.task == "instance" else "val/iou") if has_val else "train/loss"
    callbacks: list[Callback] = [
        BestCheckpoint(
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
            save_on_train_epoch_end=True,  # also after epochs that a time budget does not validate
        ),
        NewPatchesEachEpoch(),
        SaveLastOnInterrupt(run_dir / "checkpoints" / "last.ckpt"),
    ]
    if t.ema > 0:  # swaps the average in for validation and saving; the checkpoint keeps the raw weights to resume
        callbacks.append(EMAWeightAveraging(decay=t.ema))
    if t.early_stopping is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max" if has_val else "min", patience=t.early_stopping))
    bar = t.progress and sys.stderr.isatty()  # a log file gets the plan and one line per epoch, not redraws
    if budget is not None:
        callbacks.append(budget)
        if bar:
            callbacks.append(ProgressWithTimeLeft(budget))
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
        precision=t.lightning_precision,
        accelerator=t.accelerator,
        devices=int(t.devices) if str(t.devices).isdigit() else t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        callbacks=callbacks,
        logger=loggers,
        log_every_n_steps=t.log_every,
        check_val_every_n_epoch=t.val_every,
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        deterministic=False,
    )


def fit(
    cfg: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    started: float | None = None,
    plan: str | os.PathLike | None = None,
    user_fields: frozenset[str] | None = None,
) -> Path:
    """Train a model as configured into `run_dir`; returns the path of the best checkpoint.

    One training per folder (a lock); a start that fails before the first checkpoint leaves no
    folder it created; `cfg.train.max_minutes` counts from `started` (``time.monotonic()`` when the
    command began; default now), data loading and the last validation included.
    `plan` ("auto", a plan.yaml, or None for none) fills the config fields not in `user_fields` from the data
    (:func:`unetpp.engine.planning.planned_config`; rank zero only: other ranks read the config it resolved);
    the memory guard runs in every case.

    Raises:
        ConfigError: `run_dir` already holds a run and `resume` is False, is used by another training,
            or is not a writable folder.
        CheckpointError: `resume` finds no checkpoint, or a damaged one.
        Terminated: SIGTERM stopped training (after saving ``last.ckpt``); KeyboardInterrupt likewise for Ctrl-C.
    """
    started = time.monotonic() if started is None else started
    run_dir = Path(run_dir)
    if not is_rank_zero():  # rank zero owns the folder; this rank trains with the config it resolved
        return _fit_peer(cfg, run_dir, resume, started)
    check_folder(run_dir, ConfigError)
    if resume and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder, nothing to resume; start a new run without --resume")
    created = _first_missing(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(run_dir):
            return _fit_locked(cfg, run_dir, resume, started, plan=plan, user_fields=user_fields)
    except BaseException:
        ckpts = run_dir / "checkpoints"
        if created is not None and not any((ckpts / n).exists() for n in ("best.ckpt", "last.ckpt")):  # nothing kept
            shutil.rmtree(created, ignore_errors=True)
        raise


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of `path` that does not exist yet (what a failed start must remove), or None."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def _fit_peer(cfg: RunConfig, run_dir: Path, resume: bool, started: float) -> Path:
    """A rank other than zero: no lock, no folder checks, no clean-up; the config rank zero wrote (a new run).

    On ``--resume`` rank zero does not rewrite config.yaml: every rank derives the same config from it
    and the same command line.
    """
    if not resume:
        cfg = RunConfig.load(wait_for_config(run_dir, run_dir / ".lock"))
    return _fit_locked(cfg, run_dir, resume, started, owner=False)


def _check_run_folder(cfg: RunConfig, run_dir: Path, resume: bool) -> None:
    """Rank zero's checks before training: temporaries removed, a resumable run or a free folder."""
    ckpts = run_dir / "checkpoints"
    last, best = ckpts / "last.ckpt", ckpts / "best.ckpt"
    for tmp in temporaries(ckpts) + temporaries(run_dir):  # a kill mid-write left them; the real files are intact
        tmp.unlink(missing_ok=True)
        log.info("removed %s (left by a killed write)", tmp)
    remove_unlogged_parts(run_dir / "logs")
    if resume:
        if not last.is_file():
            if best.is_file():
                raise CheckpointError(
                    f"{last}: missing, but best.ckpt is there; copy best.ckpt to last.ckpt to resume from it"
                )
            raise CheckpointError(
                f"{run_dir}: nothing to resume (the run never saved a checkpoint); start it over without --resume"
            )
        check_resumable(last, cfg.train.max_epochs)
        saved = RunConfig.load(run_dir / "config.yaml")
        if saved.model != cfg.model:
            raise ConfigError(
                f"{run_dir}: the run was trained with another model ({saved.model.name}, depth {saved.model.depth}); "
                "resume with the saved config (omit model options) or start a new run folder"
            )
    elif last.exists() or best.exists():
        raise ConfigError(
            f"{run_dir}: folder already holds a run; pass --resume to continue it or choose another folder"
        )
    elif (run_dir / RUN_MARKER).is_file():
        log.info("%s: the run here never saved a checkpoint; starting it over", run_dir)
    else:
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)
        if foreign:  # only a folder unetpp made may be started over: these files are the user's
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ConfigError(
                f"{run_dir}: folder is not empty and is not a unetpp run (holds {shown}); "
                "choose a new or empty folder for --run-dir"
            )


def remove_unlogged_parts(logs: Path) -> None:
    """Remove the last ``logs/part-NNN`` folders that hold no metrics.csv (a session killed before it logged);
    only trailing ones, so that the next session's part number stays one past the last kept."""
    parts = sorted(p for p in logs.glob("part-*") if p.is_dir())
    while parts and not (parts[-1] / "metrics.csv").is_file():
        shutil.rmtree(parts.pop(), ignore_errors=True)


def _fit_locked(
    cfg: RunConfig,
    run_dir: Path,
    resume: bool,
    started: float,
    owner: bool = True,
    plan: str | os.PathLike | None = None,
    user_fields: frozenset[str] | None = None,
) -> Path:
    ckpts = run_dir / "checkpoints"
    last, best = ckpts / "last.ckpt", ckpts / "best.ckpt"
    chosen = None
    if owner:
        _check_run_folder(cfg, run_dir, resume)
        if not resume and cfg.train.init:  # issue 21: the architecture of the model to start from
            from .finetune import init_config

            cfg, user_fields = init_config(cfg, user_fields)
        if not resume and cfg.model.task == "semantic":  # issue 9: the plan fills what the user left unset
            from .planning import planned_config

            cfg, chosen = planned_config(cfg, plan, user_fields)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    # Build the model and open the data before writing anything: a bad option leaves no half run behind.
    if cfg.model.task == "instance":  # Mask R-CNN(++): its module and data in engine/instance.py
        from .instance import instance_parts

        module, data = instance_parts(cfg)
    else:
        module = SegmentationModule(
            cfg.model.build_kwargs(),
            lr=cfg.train.peak_lr,
            schedule=cfg.train.schedule,
            warmup=cfg.train.warmup,
            weight_decay=cfg.train.weight_decay,
            head_weights=cfg.train.head_weights,
            bce_weight=cfg.train.bce_weight,
            dice_weight=cfg.train.dice_weight,
            encoder_lr_scale=cfg.train.encoder_lr_scale,
            preprocessing=cfg.data.preprocessing(),
            compile=cfg.train.compile,
        )
        data = SegmentationDataModule.from_config(cfg)
    if not resume and cfg.train.init:  # its weights (new class heads where the classes differ)
        from ..models.transfer import start_from

        start_from(module.model, cfg.train.init)
    data.setup("fit")
    if not resume and owner:
        (run_dir / RUN_MARKER).touch()  # this folder is a run: it may be started over until it saves a checkpoint
        cfg.save(run_dir / "config.yaml", overwrite=True)  # a new run, or one that never saved a checkpoint
        if chosen is not None:
            from ..plan import save_plan

            save_plan(chosen, run_dir / "plan.yaml", overwrite=True)
    check = cfg.model.task == "semantic" and cfg.train.choose_tta and data.val_set is not None
    passes = 2**cfg.model.spatial_dims if check else 0  # a pass per flip, the identity included (engine/tta.py)
    budget = WallClockBudget(cfg.train.max_minutes, started, passes) if cfg.train.max_minutes else None
    trainer = build_trainer(cfg, run_dir, has_val=data.val_set is not None, budget=budget)
    part = Path(trainer.loggers[0].log_dir)
    on_sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C from its first one on
    watching = _watch_ranks(trainer, run_dir, owner)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=last if resume else None, weights_only=True)
    except SIGTERMException:
        raise Terminated(_stopped("SIGTERM", run_dir, last)) from None
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # Lightning turns Ctrl-C into sys.exit(1)
            raise KeyboardInterrupt(_stopped("Ctrl-C", run_dir, last)) from None
        raise
    except Exception:
        if watching is not None:  # a collective failed: a lost rank is the cause to report, not the traceback
            watching.explain()
        raise
    finally:
        if watching is not None:
            watching.stop()
        signal.signal(signal.SIGINT, on_sigint)
        if owner and part.is_dir() and not (part / "metrics.csv").is_file():  # a session that logged nothing
            shutil.rmtree(part, ignore_errors=True)
    if check and owner and best.is_file():
        from .tta import choose_prediction

        # under --minutes what the budget kept for it; else its share of the run so far (at least half a minute)
        ran = time.monotonic() - started
        seconds = budget.left() - MARGIN_S if budget is not None else max(CHECK_SHARE * ran, 30.0)
        choose_prediction(best, data.val_set, seconds=seconds, bf16=cfg.train.precision == "bf16")
    return best if best.is_file() else last


def _watch_ranks(trainer: L.Trainer, run_dir: Path, owner: bool) -> RankWatch | None:
    """Several ranks: one that dies ends the run at once, with one line (see engine.distributed)."""
    if trainer.world_size == 1:
        return None
    what = f"resume with: unetpp train --run-dir {run_dir} --resume"
    if not owner:
        return watch_parent(what)
    launcher = trainer.strategy.launcher
    return watch_children(lambda: getattr(launcher, "procs", []), what)


def _stopped(by: str, run_dir: Path, last: Path) -> str:
    saved = f"saved {last}" if last.is_file() else "no checkpoint yet"
    return f"stopped by {by}; {saved}; continue with: unetpp train --run-dir {run_dir} --resume"
