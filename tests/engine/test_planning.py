"""The plan fills only what the user left unset; the memory guard lowers a planned batch and refuses a fixed one."""

from __future__ import annotations

import dataclasses

import pytest

from unetpp.config import RunConfig
from unetpp.engine.planning import apply_plan, guard_memory, planned_config, user_fields_of
from unetpp.errors import ConfigError
from unetpp.plan.fingerprint import fingerprint
from unetpp.plan.memory import GB, estimate_peak_bytes, fit_batch
from unetpp.plan.rules import WORKER_BYTES, make_plan

from ..plan.test_fingerprint import write_set

SMALL = RunConfig().override(["model.widths=[4,8,16]", "model.depth=2", "data.num_workers=0"])


def _budget_between(cfg: RunConfig, low: int, high: int) -> float:
    """A budget (GB) in which batch `low` fits and batch `high` does not."""
    patch = (96, 96)
    a = estimate_peak_bytes(cfg.model, patch, low)
    b = estimate_peak_bytes(cfg.model, patch, high)
    return (a + b) / 2 / GB


def test_user_fields_are_the_assigned_and_those_that_differ_from_the_defaults() -> None:
    cfg = RunConfig().override(["data.batch_size=4", "train.lr=1e-3"])
    assert user_fields_of(cfg, ["data.channels"]) == {"data.batch_size", "train.lr", "data.channels"}


def test_the_guard_lowers_a_batch_the_plan_owns() -> None:
    cfg = SMALL.override(["data.batch_size=16"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, memory_gb=_budget_between(cfg, 4, 16)))
    out = guard_memory(cfg, user_fields={"model.memory_efficient"})  # recomputation pinned off by the user
    assert 4 <= out.data.batch_size < 16
    assert out.data.batch_size == fit_batch(cfg.model, (96, 96), cfg.train.memory_gb * GB, 16)


def test_the_guard_refuses_a_batch_the_user_fixed_in_one_line() -> None:
    cfg = SMALL.override(["data.batch_size=16"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, memory_gb=_budget_between(cfg, 4, 16)))
    with pytest.raises(ConfigError, match=r"data.batch_size=16 on 96x96 patches needs about .* would fit") as e:
        guard_memory(cfg, user_fields={"data.batch_size", "model.memory_efficient"})
    assert "\n" not in str(e.value)


def test_the_guard_counts_loader_workers() -> None:
    cfg = SMALL.override(["data.batch_size=2", "data.num_workers=2"])
    one, two = (estimate_peak_bytes(cfg.model, (96, 96), b) + 2 * WORKER_BYTES for b in (1, 2))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, memory_gb=(one + two) / 2 / GB))
    assert guard_memory(cfg, {"model.memory_efficient"}).data.batch_size == 1


def test_the_guard_recomputes_before_it_lowers_the_batch() -> None:
    cfg = SMALL.override(["data.batch_size=16"])
    normal = estimate_peak_bytes(cfg.model, (96, 96), 16)
    efficient = estimate_peak_bytes(dataclasses.replace(cfg.model, memory_efficient=True), (96, 96), 16)
    assert efficient < normal  # what recomputation saves is counted (by the saved-tensor hooks), not assumed
    budget = (normal + efficient) / 2 / GB
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, memory_gb=budget))
    out = guard_memory(cfg, user_fields={"data.batch_size"})  # even a batch the user fixed now fits
    assert (out.data.batch_size, out.model.memory_efficient) == (16, True)
    one = estimate_peak_bytes(cfg.model, (96, 96), 1)
    assert one < efficient
    tight = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, memory_gb=(one + efficient) / 2 / GB))
    lowered = guard_memory(tight, user_fields=set())  # over budget either way: the batch is lowered as before
    assert lowered.data.batch_size < 16
    assert not lowered.model.memory_efficient


def test_apply_plan_fills_only_fields_the_user_did_not_set(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path / "d", "noisy-rgb-jpeg"), cache_dir=tmp_path / "cache")
    plan = make_plan(fp, memory_gb=8)
    cfg = RunConfig().override(["data.normalize=none", "data.cache=false"])
    out = apply_plan(cfg, plan, {"data.normalize", "data.cache"})
    assert (out.data.normalize, out.data.cache) == ("none", False)
    assert (out.model.in_channels, out.data.channels, out.data.mask_threshold) == (3, "rgb", 127.5)
    assert out.data.patch_size == plan.patch_size
    assert out.data.batch_size == plan.batch_size
    assert out.model.depth == plan.depth


def test_planned_config_hands_user_settings_to_the_plan(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_set(tmp_path / "d", "rgb")
    cfg = SMALL.override([f"data.root={tmp_path / 'd'}", "data.channels=grey", "train.memory_gb=4"])
    out, plan = planned_config(cfg, "auto", user_fields_of(cfg))
    assert plan is not None
    assert plan.in_channels == 1  # derived from the user's channels
    assert (out.model.in_channels, out.model.depth, out.model.widths) == (1, 2, (4, 8, 16))
    assert plan.reasons["channels"] == "set by you"


def test_the_plan_chooses_the_training_precision_unless_the_user_did(tmp_path, monkeypatch) -> None:
    from unetpp.utils import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "bf16_supported", lambda: True)
    write_set(tmp_path / "d", "rgb")
    cfg = SMALL.override([f"data.root={tmp_path / 'd'}", "train.memory_gb=4"])
    planned, _ = planned_config(cfg, "auto", user_fields_of(cfg))
    assert planned.train.precision == "bf16"
    mine = cfg.override(["train.precision=32"])
    kept, plan = planned_config(mine, "auto", {*user_fields_of(mine), "train.precision"})
    assert (kept.train.precision, plan.precision) == ("32", "32")


def test_a_plan_for_other_dimensions_is_refused(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path / "d", "rgb"), cache_dir=tmp_path / "cache")
    plan = make_plan(fp, memory_gb=8)
    cfg = RunConfig().override(["model.spatial_dims=3"])
    with pytest.raises(ConfigError, match="plan is for 2D data"):
        apply_plan(cfg, plan, {"model.spatial_dims"})
