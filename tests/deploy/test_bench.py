"""Benchmark helpers: the figures are there and sane, and the depth choice is right on constructed cases."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from unetpp import ConfigError
from unetpp.deploy.bench import choose_depth, format_table, measure, pruning_table
from unetpp.models.fusion import fuse_batch_norm

SCORES = {1: 0.80, 2: 0.84, 3: 0.85, 4: 0.852}  # IoU per depth: the gain flattens after L3, as in the paper
LATENCY = {1: 10.0, 2: 20.0, 3: 45.0, 4: 80.0}


@pytest.mark.parametrize(("tolerance", "depth"), [(0.0, 4), (0.002, 3), (0.005, 3), (0.012, 2), (0.052, 1), (1.0, 1)])
def test_choose_depth_takes_the_shallowest_within_tolerance(tolerance, depth) -> None:
    assert choose_depth(SCORES, tolerance) == depth


@pytest.mark.parametrize(
    ("budget", "tolerance", "depth"), [(100, 0, 4), (50, 0, 3), (44.9, 0, 2), (10, 0, 1), (50, 0.02, 2)]
)
def test_choose_depth_under_a_latency_budget(budget, tolerance, depth) -> None:
    assert choose_depth(SCORES, tolerance, latencies=LATENCY, max_latency=budget) == depth


def test_choose_depth_prefers_the_shallower_on_ties() -> None:
    assert choose_depth({3: 0.9, 1: 0.7, 2: 0.9}) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": {}}, "no scores given"),
        ({"scores": {1: math.nan, 2: 0.5}}, r"depth \[1\] are not numbers"),
        ({"scores": SCORES, "tolerance": -0.1}, "tolerance must be >= 0"),
        ({"scores": SCORES, "max_latency": 5.0}, r"missing for depth \[1, 2, 3, 4\]"),
        ({"scores": SCORES, "latencies": LATENCY, "max_latency": 5.0}, "fastest: depth 1 at 10"),
    ],
)
def test_choose_depth_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        choose_depth(**kwargs)


def test_measure_reports_every_figure(tiny_model) -> None:
    model = tiny_model()
    row = measure(model, (2, 1, 32, 32), reps=2, memory=Path("/proc/self/clear_refs").exists())
    assert row["params"] == sum(p.numel() for p in fuse_batch_norm(model).parameters())  # as deployed
    assert row["gflops"] > 0
    assert row["latency_ms"] > 0
    assert row["throughput"] == pytest.approx(2 / (row["latency_ms"] / 1e3))
    assert row["peak_mib"] is None or row["peak_mib"] > 0
    assert measure(model, (1, 1, 32, 32), reps=1, head=1, memory=False)["params"] < row["params"]


def test_pruning_table_shrinks_with_depth(tiny_model) -> None:
    model = tiny_model(depth=3, norm=None)
    rows = pruning_table(model, (1, 1, 32, 32), reps=2, memory=False)
    assert [r["mode"] for r in rows] == ["L1", "L2", "L3", "ensemble"]
    params = [r["params"] for r in rows]
    assert params[:3] == sorted(params[:3])
    assert rows[2]["params_vs_full"] == 1.0
    assert rows[0]["gflops_vs_full"] < 1.0
    assert rows[0]["memory_vs_full"] is None
    assert "| L1 |" in format_table(rows)
    assert "IoU" not in format_table(rows)
    rows[0]["iou"] = 0.8123
    assert "| L1 | 81.23 |" in format_table(rows)
    assert "| L2 | – |" in format_table(rows)


def test_bad_shapes(tiny_model) -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="shape must be"):
        measure(model, (32, 32), memory=False)
    with pytest.raises(ConfigError, match="reps must be"):
        measure(model, (1, 1, 32, 32), reps=0, memory=False)


BENCHMARKS = sorted((Path(__file__).parents[2] / "benchmarks").glob("bench_*.py"))
assert BENCHMARKS, "no benchmark scripts found: has tests/deploy/ or benchmarks/ moved?"


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_every_benchmark_script_imports(script, monkeypatch) -> None:
    """The scripts import the package's helpers by name: a rename must not leave one broken (bench_table5 was)."""
    import importlib.util

    monkeypatch.syspath_prepend(str(script.parent))  # scripts import their neighbours, as when run from there
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # as an import does (dataclasses look themselves up there)
    spec.loader.exec_module(module)
    assert callable(module.main)
