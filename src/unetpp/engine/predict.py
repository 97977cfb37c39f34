"""Prediction of files on several processes or GPUs of one machine, through Lightning's predict loop.

Every rank runs the same checks (:func:`unetpp.inference.batch.prepare_files`); Lightning's predict
loop gives each rank a disjoint part of the inputs (an unrepeated distributed sampler), and each rank
predicts and writes its inputs with the same code as one process (:meth:`FileJob.run_one`), so the
outputs are those of a one-process run. Nothing is gathered: the outputs are the files. Rank zero
reports inputs done / total (counted on disk, every rank's) and the throughput.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..deploy.backends import predictor
from ..inference import PredictOptions
from ..inference.batch import FileJob, FileOptions, prepare_files
from ..inference.outputs import PathLike, Written
from .distributed import is_rank_zero, watch_children, watch_parent

log = logging.getLogger("unetpp")
REPORT_EVERY_S = 10.0


class FilePredictor(L.LightningModule):
    """``predict_step`` predicts and writes one input (the batch is its index in the job's list)."""

    def __init__(self, job: FileJob) -> None:
        super().__init__()
        self.job = job
        if isinstance(job.predictor.model, torch.nn.Module):
            self.net = job.predictor.model  # a submodule: Lightning moves it to this rank's device

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.job.run_one(self.job.plans[int(batch[0])])


class DoneAndRate(L.Callback):
    """Rank zero: ``predict: 120/400 inputs (3.2/s)`` every few seconds and at the end.

    Counts outputs on disk, so that it includes the other ranks' without a collective (their parts
    may end at different times).
    """

    def __init__(self, job: FileJob, every: float = REPORT_EVERY_S) -> None:
        self.job, self.every = job, every
        self.done_before = job.total - len(job.plans)
        self.t0 = self.last = time.monotonic()

    def _line(self) -> str:
        done = sum(all(p.exists() for p in plan.paths()) for plan in self.job.plans)
        rate = done / max(time.monotonic() - self.t0, 1e-9)
        return f"predict: {self.done_before + done}/{self.job.total} inputs ({rate:.2f}/s)"

    def on_predict_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.is_global_zero and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            log.info(self._line())

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier()  # every rank's outputs are written
        if trainer.is_global_zero:
            log.info(self._line())


def predict_files_on(
    model: PathLike,
    inputs: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    options: PredictOptions | None = None,
    *,
    devices: int,
    accelerator: str = "auto",
    **files: Any,
) -> FileJob:
    """Predict like :meth:`unetpp.inference.Predictor.predict_files` on `devices` processes (CPU) or GPUs; returns
    the job. `files` are the fields of :class:`~unetpp.inference.batch.FileOptions` (threshold, overwrite, part...).

    With Lightning's launcher the command is run again for ranks 1..N-1 (each prepares the same job).
    """
    job = prepare_files(predictor(model, options), inputs, out_dir, FileOptions(**files))
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DoneAndRate(job)],
    )
    loader = DataLoader(range(len(job.plans)), batch_size=1)  # indices: plans stay in this process
    what = f"rerun the same command to finish the rest (outputs already written are kept) in {Path(out_dir)}"
    if is_rank_zero():
        watching = watch_children(lambda: getattr(trainer.strategy.launcher, "procs", []), what)
    else:
        watching = watch_parent(what)
    try:
        trainer.predict(FilePredictor(job), dataloaders=loader, return_predictions=False)
    except Exception:
        watching.explain()  # a failed collective because a rank was lost: say that, not the traceback
        raise
    finally:
        watching.stop()
    return job


__all__ = ["DoneAndRate", "FilePredictor", "Written", "predict_files_on"]
