"""Under `--minutes` a run that buys fewer than AUGMENT_FROM_STEPS steps trains without augmentation (issue 19: at 6
and 15 minutes on the shared data sets, augmentation cost held-out accuracy), unless the user set it."""

from __future__ import annotations

import pytest

from unetpp.config import RunConfig
from unetpp.engine import budget_widths
from unetpp.engine.budget_augment import AUGMENT_FROM_STEPS, augment_for
from unetpp.engine.budget_widths import steps_affordable
from unetpp.engine.planning import planned_config, user_fields_of
from unetpp.plan.fingerprint import fingerprint
from unetpp.plan.record import Plan, save_plan
from unetpp.plan.rules import make_plan

from ..plan.test_fingerprint import write_set


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_set(tmp_path / "d", "rgb")
    return tmp_path / "d"


def _step_of(monkeypatch, seconds: float) -> list:
    """Every training step timed takes `seconds`; returns the widths timed."""
    timed: list = []

    def step(cfg, device):
        timed.append(cfg.model.widths)
        return seconds

    monkeypatch.setattr(budget_widths, "training_step_seconds", step)
    return timed


def _config(data, *settings: str) -> RunConfig:
    return RunConfig().override([f"data.root={data}", "train.memory_gb=4", *settings])


def test_few_steps_plan_no_augmentation_and_many_keep_it(data, tmp_path) -> None:
    plan = make_plan(fingerprint(write_set(tmp_path / "e", "rgb"), cache_dir=tmp_path / "cache"), memory_gb=8)
    few = augment_for(plan, 6, AUGMENT_FROM_STEPS - 1)
    many = augment_for(plan, 60, AUGMENT_FROM_STEPS)
    assert (few.augment, many.augment) == ("none", "light")
    assert f"about {AUGMENT_FROM_STEPS - 1} steps" in few.reasons["augment"]
    assert f">= {AUGMENT_FROM_STEPS}" in many.reasons["augment"]


def test_a_short_budget_trains_without_augmentation(data, monkeypatch) -> None:
    step_s = 0.5  # 6 minutes buy a few hundred steps
    assert steps_affordable(step_s, 6) < AUGMENT_FROM_STEPS
    _step_of(monkeypatch, step_s)
    cfg = _config(data, "train.max_minutes=6")
    out, plan = planned_config(cfg, "auto", user_fields_of(cfg))
    assert out.data.augment == plan.augment == "none"


def test_a_long_budget_keeps_augmentation(data, monkeypatch) -> None:
    step_s = 0.5
    assert steps_affordable(step_s, 60) >= AUGMENT_FROM_STEPS
    _step_of(monkeypatch, step_s)
    cfg = _config(data, "train.max_minutes=60")
    out, plan = planned_config(cfg, "auto", user_fields_of(cfg))
    assert out.data.augment == plan.augment == "light"


@pytest.mark.parametrize("mine", ["light", "full"])
def test_the_users_augmentation_is_kept_whatever_the_budget(data, monkeypatch, mine: str) -> None:
    timed = _step_of(monkeypatch, 0.5)
    cfg = _config(data, "train.max_minutes=6", f"data.augment={mine}", "model.widths=[8,16,32,64,128]")
    out, plan = planned_config(cfg, "auto", user_fields_of(cfg, ["data.augment", "model.widths"]))
    assert out.data.augment == plan.augment == mine
    assert plan.reasons["augment"] == "set by you"
    assert timed == []  # widths and augmentation set: nothing for the budget to decide, no step timed


def test_the_users_widths_still_get_the_budgets_augmentation(data, monkeypatch) -> None:
    timed = _step_of(monkeypatch, 0.5)
    cfg = _config(data, "train.max_minutes=6", "model.widths=[8,16,32,64,128]")
    out, _ = planned_config(cfg, "auto", user_fields_of(cfg, ["model.widths"]))
    assert out.data.augment == "none"
    assert timed == [(8, 16, 32, 64, 128)]  # the user's model is the one timed


def test_without_a_budget_and_with_an_older_plan_the_config_decides(data, tmp_path, monkeypatch) -> None:
    timed = _step_of(monkeypatch, 0.5)
    cfg = _config(data, "data.augment=full")
    out, plan = planned_config(cfg, "auto", user_fields_of(cfg))
    assert out.data.augment == "full"
    assert timed == []
    unplanned = _config(data)
    out, plan = planned_config(unplanned, "auto", user_fields_of(unplanned))
    assert out.data.augment == "light"
    assert "augment" not in plan.reasons
    older = {k: v for k, v in plan.to_dict().items() if k != "augment"}  # a plan.yaml saved before the field
    assert Plan.from_dict(older).augment == "light"
    budget = _config(data, "train.max_minutes=6")
    saved = save_plan(planned_config(budget, "auto", user_fields_of(budget))[1], tmp_path / "plan.yaml")
    out, _ = planned_config(unplanned, saved, user_fields_of(unplanned))  # a budget's plan, reused: its choice holds
    assert out.data.augment == "none"
