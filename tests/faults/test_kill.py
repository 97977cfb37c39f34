"""SIGKILL a short training at several moments, then resume: nothing corrupt or left over, the epochs continue,
and best.ckpt never gets worse."""

from __future__ import annotations

import pytest
import torch

from unetpp.utils.run_metrics import read_run_metrics

from .conftest import TINY_TRAIN, cli

pytestmark = pytest.mark.bad_input


def best_score(run) -> float:
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    (state,) = [v for k, v in ckpt["callbacks"].items() if "val/iou" in k]
    return float(state["best_model_score"])


def test_sigkill_at_any_moment_then_resume(tmp_path) -> None:
    run = tmp_path / "run"
    train = ["train", "--run-dir", run, "--epochs", "4", *TINY_TRAIN]  # 2 steps per epoch
    # 1. the first best.ckpt's temporary is written, not yet renamed: no checkpoint exists, a temporary is left
    assert cli(train, fault="kill-replace:best.ckpt:1").returncode == -9
    assert list((run / "checkpoints").glob(".best.ckpt.*.tmp*"))
    assert not (run / "checkpoints" / "best.ckpt").exists()
    scores = []
    kills = [
        (train, "kill-step:3"),  # a run that never saved starts over without --resume; killed mid-epoch 1
        ([*train, "--resume"], "kill-replace:last.ckpt:1"),  # last.ckpt's temporary written, not renamed
    ]
    for args, fault in kills:
        done = cli(args, fault=fault)
        assert done.returncode == -9, done.stderr  # the kill happened where planned
        for name in ("best.ckpt", "last.ckpt"):  # every checkpoint on disk is whole and loads
            if (run / "checkpoints" / name).exists():
                assert torch.load(run / "checkpoints" / name, weights_only=True)["state_dict"]
        scores.append(best_score(run))
    done = cli([*train, "--resume"])
    assert done.returncode == 0, done.stderr
    scores.append(best_score(run))
    assert scores == sorted(scores)  # best.ckpt never got worse
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no leftovers
    assert not (run / ".lock").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3
    epochs = sorted({epoch for epoch, _ in read_run_metrics(run)["val/iou"]})
    assert epochs == [0, 1, 2, 3]  # the epoch count continued across the kills
