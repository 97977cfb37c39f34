"""`unetpp train --devices 2 --strategy ddp` on CPU: one run folder, identical ranks, whole-set validation, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from unetpp.config import RunConfig
from unetpp.engine.datamodule import SegmentationDataModule
from unetpp.engine.module import SegmentationModule


def hashes(run: Path) -> list[list[str]]:
    return [p.read_text().split() for p in sorted(run.parent.glob(f"{run.name}.rank*.sha256"))]


def logged(run: Path, part: str) -> dict[str, float]:
    """The last validation row of a session's metrics.csv."""
    with open(run / "logs" / part / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/iou")]
    return {k: float(v) for k, v in rows[-1].items() if v and k.startswith("val/")} | {"epoch": int(rows[-1]["epoch"])}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, scale) -> Path:
    run = tmp_path_factory.mktemp("ddp") / "run"
    done = scale.run(["train", "--run-dir", run, "--epochs", "1", *scale.DDP, *scale.TINY], script="rank_hash.py")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best checkpoint:") == 1, done.stdout  # rank zero speaks for the run
    return run


def test_two_ranks_end_with_identical_weights_and_one_set_of_files(ddp_run: Path) -> None:
    ranks = hashes(ddp_run)
    assert len(ranks) == 2, ranks
    assert ranks[0] == ranks[1], ranks  # same sha256, epoch, world size 2
    assert ranks[0][2] == "2"
    files = sorted(str(p.relative_to(ddp_run)) for p in ddp_run.rglob("*") if p.is_file())
    assert files == [
        ".unetpp-run",  # the marker that tells a run from a user's folder (issue 23)
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "commands.txt",  # the command, for the model card (issue 21)
        "config.yaml",
        "logs/part-000/hparams.yaml",
        "logs/part-000/metrics.csv",
        "plan.yaml",  # rank zero's plan, once
    ], files
    assert len((ddp_run / "commands.txt").read_text().splitlines()) == 1  # written by rank zero only


def single_process_validation(run: Path, ckpt: Path) -> dict[str, float]:
    """Validate `ckpt` in this one process on the whole validation set of the run's config."""
    cfg = RunConfig.load(run / "config.yaml")
    module = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    data = SegmentationDataModule.from_config(cfg)
    data.setup("fit")
    assert len(data.val_set) == 3  # odd: a padding sampler would count one image twice
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=cfg.train.lightning_precision, logger=False, enable_progress_bar=False
    )
    return {k: float(v) for k, v in trainer.validate(module, datamodule=data, verbose=False)[0].items()}


def test_validation_score_is_the_whole_validation_set(ddp_run: Path) -> None:
    torch.set_num_threads(1)
    ddp = logged(ddp_run, "part-000")
    one = single_process_validation(ddp_run, ddp_run / "checkpoints" / "last.ckpt")
    assert ddp["epoch"] == 0
    assert set(one) == set(ddp) - {"epoch"}
    for key, value in one.items():
        assert ddp[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert ddp["val/loss"] > 0  # a continuous score: rank zero's shard alone (2 of 3 images) would differ


def test_resume_under_ddp_continues_the_epoch_count(ddp_run: Path, scale) -> None:
    done = scale.run(["train", "--run-dir", ddp_run, "--resume", "--epochs", "2", *scale.DDP], script="rank_hash.py")
    assert done.returncode == 0, done.stderr[-3000:]
    last = torch.load(ddp_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1
    assert logged(ddp_run, "part-001")["epoch"] == 1
    ranks = hashes(ddp_run)
    assert ranks[0] == ranks[1]
    assert ranks[0][1] == "2"
