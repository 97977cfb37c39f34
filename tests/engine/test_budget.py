"""`--minutes` spent on training: a slow first batch and a slow validation must not end the run (issue 19)."""

from __future__ import annotations

import time

import pytest
import torch

from unetpp.config import RunConfig
from unetpp.engine.budget import CHECK_SHARE, MIN_VAL_IMAGES, TRAINING_SHARE, VAL_SHARE, WallClockBudget, evenly_spaced
from unetpp.engine.module import SegmentationModule, head_subsets, lr_factor
from unetpp.engine.train import fit

from ..conftest import TINY_RUN


def test_a_slow_first_batch_and_a_slow_validation_still_train_most_of_the_budget(tmp_path, monkeypatch, caplog) -> None:
    # 40 whole validation images at 0.4 s each (16 s a pass, 40% of the budget), and a first step that takes 4 s:
    # the old reserve ((validation batches + 2) x first batch) stopped such a run after its first step.
    train_step, val_step = SegmentationModule.training_step, SegmentationModule.validation_step
    calls = {"train": 0}

    def slow_first(self, batch, i):
        calls["train"] += 1
        if calls["train"] == 1:
            time.sleep(4.0)
        return train_step(self, batch, i)

    def slow_validation(self, batch, i):
        time.sleep(0.4)
        return val_step(self, batch, i)

    monkeypatch.setattr(SegmentationModule, "training_step", slow_first)
    monkeypatch.setattr(SegmentationModule, "validation_step", slow_validation)
    budget_s = 40.0
    cfg = (
        RunConfig()
        .override([*TINY_RUN, "data.synthetic_images=60", "data.val_fraction=0.67", "train.max_epochs=1000"])
        .override([f"train.max_minutes={budget_s / 60}", "train.steps_per_epoch=100"])
    )
    started = time.monotonic()
    with caplog.at_level("INFO", logger="unetpp.engine.budget"):
        fit(cfg, tmp_path / "run", started=started)
    took = time.monotonic() - started
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    spent = last["callbacks"]["WallClockBudget"]
    assert took < budget_s + 3.0  # the wall clock holds, the last validation and checkpoint included
    assert last["global_step"] > 100  # it trained, not one step
    assert spent["validating_share"] <= 0.12  # validation kept to its share (a subset, validated less often)
    # the rest: the data, the probe, the final validation, checkpoints and a fixed 2 s margin (5% of 40 s)
    assert spent["training_share"] >= 0.7
    assert spent["validations"] >= 1  # the final validation always runs
    # the forward pass (the flips check's unit) is timed apart from the slow validation step, not taken for it
    probe = next(r.getMessage() for r in caplog.records if "forward alone" in r.getMessage())
    pass_s, forward_s = (float(probe.split(k)[1].split(" s")[0]) for k in ("about ", "forward alone "))
    assert forward_s < 0.5 * pass_s


def test_a_slow_set_up_leaves_no_time_for_mid_run_validations() -> None:
    """DSB at 15 minutes trained 84.5% of its budget: 40 s reading masks, then the whole validation share. Time
    that reading the data or crossing epochs took is taken from the validations, never from training."""

    def allowance(setup_s: float, gap_s: float = 0.0, boundaries_s: float = 0.0) -> float:
        now = time.monotonic()
        budget = WallClockBudget(minutes=10, started=now - setup_s)
        budget.train_start = now
        budget.val_s, budget.gap_s, budget.gaps_spent = 10.0, gap_s, boundaries_s
        return budget.validation_allowance(epoch_s=60.0)

    quick = allowance(setup_s=5.0)
    assert abs(quick - (VAL_SHARE * 600 - 10.0)) < 1.0  # a fast start: the validation share holds, one pass kept
    slower = allowance(setup_s=30.0, gap_s=1.0)
    assert 0 < slower < quick  # a slow start and slow epoch boundaries: fewer mid-run validations
    # training keeps its share: the budget less the set-up, the boundaries ahead, the validations and the end
    reserve = 1.25 * (10.0 + 1.0) + 2.0
    used = 30.0 + 1.0 * (600 - 30 - reserve) / 60 + slower + reserve
    assert 1 - used / 600 >= TRAINING_SHARE - 1e-6
    assert allowance(setup_s=5.0, boundaries_s=30.0) < quick  # boundaries already crossed count too
    assert allowance(setup_s=80.0) < 10.0  # 13% in set-up: only the final validation runs


def test_the_check_after_training_is_kept_in_the_reserve_within_its_share() -> None:
    """The flips check (engine/tta.py) runs after the last checkpoint: the schedule and the stop make room for it."""
    now = time.monotonic()
    plain, checked = WallClockBudget(minutes=10, started=now), WallClockBudget(minutes=10, started=now, check_passes=5)
    plain.val_s = checked.val_s = 2.0
    checked.forward_pass_s = 0.8  # forwards only: a validation pass also scores the loss and the subsets of heads
    assert checked.final_reserve() - plain.final_reserve() == pytest.approx(5 * 0.8)
    checked.forward_pass_s = 60.0  # a slow model: the check keeps its share, and stops when that is spent
    assert checked.check_reserve() == pytest.approx(CHECK_SHARE * 600)


def test_a_slow_set_up_shrinks_the_validation_subset_and_the_check_not_training() -> None:
    """DSB 2018 at 6 minutes read its masks for 28-48 s and trained 78-84% of the budget: the end (the last
    validation and the flips check) now takes only what the set-up left of the non-training share."""
    sizes = [80_000] * 91  # 91 validation images, 16 s a whole pass, forwards 13 s
    per_voxel, forward_per_voxel = 16.0 / sum(sizes), 13.0 / sum(sizes)

    def end(setup_s: float) -> tuple[int, WallClockBudget]:
        now = time.monotonic()
        budget = WallClockBudget(minutes=6, started=now - setup_s, check_passes=4)
        budget.train_start = now
        keep = budget.validation_images(sizes, per_voxel, forward_per_voxel)
        budget.set_validation(sum(sizes[:keep]), per_voxel, forward_per_voxel)
        return keep, budget

    quick, fast = end(setup_s=3.0)
    slow, slower = end(setup_s=28.0)
    least, slowest = end(setup_s=48.0)
    assert quick > slow > least == MIN_VAL_IMAGES
    assert fast.check_reserve() == pytest.approx(CHECK_SHARE * 360)  # a quick start: the check keeps its share
    assert 0 < slower.check_reserve() < fast.check_reserve()
    assert slowest.check_reserve() == 0.0  # no time left for it: prediction runs one pass
    for budget in (fast, slower):  # the set-up and the end within the non-training share
        assert budget.setup_s() + budget.final_reserve() <= (1 - TRAINING_SHARE) * 360 + 1e-6


def test_the_validation_subset_is_evenly_spaced_and_fixed() -> None:
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(3, 5) == [0, 1, 2]
    assert evenly_spaced(100, 7) == evenly_spaced(100, 7)
    assert MIN_VAL_IMAGES >= 1


def test_the_schedule_warms_up_then_lands_at_zero() -> None:
    for shape in ("linear", "cosine", "poly"):
        f = lr_factor(shape, 0.02)
        assert 0.09 < f(0.0) < 0.11  # warm-up starts at a tenth of the peak
        assert abs(f(0.02) - 1.0) < 1e-9  # the peak after the warm-up
        assert f(0.5) < 1.0
        assert abs(f(1.0)) < 1e-9  # zero exactly at the end of the budget


def test_the_accurate_mode_chooses_among_every_subset_of_heads() -> None:
    subsets = head_subsets([1, 2, 3, 4])
    assert len(subsets) == 15
    assert (1, 2, 3, 4) in subsets
    assert (3,) in subsets
    assert head_subsets([4]) == []


def test_a_second_command_in_one_process_gets_its_whole_budget(monkeypatch) -> None:
    """The first command's budget counts the process's imports; a later main() (a benchmark script, a notebook)
    counts from its own call (a second `train --minutes 6` in one process trained one step)."""
    import importlib

    cli_main = importlib.import_module("unetpp.cli.main")  # the module (unetpp.cli.main is also the function)
    monkeypatch.setattr(cli_main, "_first_command", True)
    monkeypatch.setattr(cli_main, "_process_age", lambda: 300.0)
    first = cli_main._command_start()
    second = cli_main._command_start()
    now = time.monotonic()
    assert now - first >= 300.0
    assert 0.0 <= now - second < 5.0
