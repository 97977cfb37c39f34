"""Under `--minutes` the plan narrows a model too slow to take MIN_STEPS steps (issue 19: at 15 minutes on the
hippocampus, UNet++ 32-256 took 261 steps and 80.7 Dice, 16-128 took 693 steps and 84.9)."""

from __future__ import annotations

import dataclasses

import pytest

from unetpp.config import RunConfig
from unetpp.engine import budget_widths
from unetpp.engine.budget_widths import MIN_FIRST_WIDTH, MIN_STEPS, fit_widths, steps_affordable
from unetpp.engine.planning import planned_config, user_fields_of
from unetpp.plan.fingerprint import fingerprint
from unetpp.plan.rules import make_plan

from ..plan.test_fingerprint import write_set


@pytest.fixture
def plan(tmp_path):
    return make_plan(fingerprint(write_set(tmp_path / "d", "rgb"), cache_dir=tmp_path / "cache"), memory_gb=8)


def _fake_timer(seconds_at_32: float):
    """A step's cost as FLOPs go: a quarter for half the widths."""
    return lambda p: seconds_at_32 * (p.widths[0] / 32) ** 2


def _recording_replan(plan, calls: list):
    """A replan that keeps the fingerprint's plan with other widths, and records the widths asked for."""

    def replan(widths):
        calls.append(widths)
        return dataclasses.replace(plan, widths=widths)

    return replan


def test_a_budget_that_buys_too_few_steps_narrows_the_widths(plan) -> None:
    assert plan.widths[0] == 32
    replanned: list[tuple[int, ...]] = []
    # 15 minutes at 3.4 s a step (UNet++ 32-256 on the hippocampus): about 230 steps, so half the widths
    narrow, _ = fit_widths(plan, 15, _fake_timer(3.4), _recording_replan(plan, replanned))
    assert narrow.widths == tuple(w // 2 for w in plan.widths)
    assert replanned == [narrow.widths]
    assert steps_affordable(3.4 / 4, 15) >= MIN_STEPS
    assert "only" in narrow.reasons["widths"]
    assert str(MIN_STEPS) in narrow.reasons["widths"]


def test_a_budget_that_buys_enough_steps_keeps_the_paper_widths(plan) -> None:
    kept, steps = fit_widths(plan, 60, _fake_timer(1.0), lambda w: pytest.fail("narrowed a run that has the time"))
    assert kept.widths == plan.widths
    assert f">= {MIN_STEPS}" in kept.reasons["widths"]
    assert steps == steps_affordable(1.0, 60)


def test_the_widths_are_never_narrowed_below_the_measured_floor(plan) -> None:
    calls: list[tuple[int, ...]] = []
    # hopeless: no width buys MIN_STEPS steps in a minute
    floor, _ = fit_widths(plan, 1, _fake_timer(30.0), _recording_replan(plan, calls))
    assert floor.widths[0] == MIN_FIRST_WIDTH
    assert len(calls) == 1
    assert "narrower is not planned" not in floor.reasons["widths"]


def test_planned_config_with_minutes_times_a_step_and_trains_the_narrowed_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_set(tmp_path / "d", "rgb")
    timed = []

    def seconds(cfg, device):  # the real timer would take seconds: the model's widths are what matter
        timed.append(cfg.model.widths)
        return 10.0 * (cfg.model.widths[0] / 32) ** 2

    monkeypatch.setattr(budget_widths, "training_step_seconds", seconds)
    cfg = RunConfig().override([f"data.root={tmp_path / 'd'}", "train.memory_gb=4", "train.max_minutes=20"])
    out, plan = planned_config(cfg, "auto", user_fields_of(cfg))
    assert timed[0][0] == 32
    assert timed[-1][0] == 16
    assert out.model.widths == plan.widths
    assert plan.widths[0] == 16
    mine = cfg.override(["model.widths=[32,64,128,256,512]"])
    timed.clear()
    kept, _ = planned_config(mine, "auto", user_fields_of(mine))
    assert kept.model.widths == (32, 64, 128, 256, 512)
    assert timed == [(32, 64, 128, 256, 512)]  # timed once, for the augmentation the budget affords: not narrowed


def test_the_step_timer_runs_the_planned_model() -> None:
    cfg = RunConfig().override(
        ["model.widths=[4,8,16]", "model.depth=2", "data.patch_size=[32,32]", "data.batch_size=4"]
    )
    assert 0 < budget_widths.training_step_seconds(cfg, "cpu") < 30


def test_plan_with_minutes_shows_the_widths_train_would_use(tmp_path, monkeypatch, capsys) -> None:
    from unetpp.cli import main
    from unetpp.plan.record import load_plan

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_set(tmp_path / "d", "rgb")
    monkeypatch.setattr(
        budget_widths, "training_step_seconds", lambda cfg, device: 10.0 * (cfg.model.widths[0] / 32) ** 2
    )
    argv = ["plan", "--data", str(tmp_path / "d"), "--memory-gb", "4"]
    assert main([*argv, "--out", str(tmp_path / "paper.yaml")]) == 0
    assert main([*argv, "--minutes", "20", "--out", str(tmp_path / "budget.yaml")]) == 0
    assert "20 min buy about" in capsys.readouterr().out
    paper, budget = load_plan(tmp_path / "paper.yaml"), load_plan(tmp_path / "budget.yaml")
    assert paper.widths[0] == 32
    cfg = RunConfig().override([f"data.root={tmp_path / 'd'}", "train.memory_gb=4", "train.max_minutes=20"])
    trained, _ = planned_config(cfg, "auto", user_fields_of(cfg))
    assert budget.widths == trained.model.widths == tuple(w // 2 for w in paper.widths)
