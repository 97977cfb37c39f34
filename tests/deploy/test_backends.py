"""Runtime choice by measurement: fake candidates with fixed times, so nothing depends on the wall clock."""

from __future__ import annotations

import json

import pytest
import torch

import unetpp
from unetpp.deploy import backends
from unetpp.errors import ConfigError
from unetpp.inference import PredictOptions, Predictor
from unetpp.models.fusion import fuse_batch_norm


@pytest.fixture
def model(tiny_model) -> unetpp.NestedUNet:
    torch.manual_seed(0)
    return fuse_batch_norm(tiny_model())


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake(name: str, ms: float, offset: float = 0.0, installed: bool = True, built: list | None = None):
    """A candidate that runs the eager model (plus `offset` on its logits), timed at `ms` per call."""

    def build(model, x, precision):
        if built is not None:
            built.append(name)

        def run(x, head=None):
            return [y + offset for y in model(x, head=head)]

        return run

    return backends.Candidate(name, lambda: installed, build), ms


def install(monkeypatch, *candidates: tuple[backends.Candidate, float]) -> None:
    """Use these candidates, each timed at its fixed milliseconds instead of the clock."""
    monkeypatch.setattr(backends, "CANDIDATES", {c.name: c for c, _ in candidates})
    ms = {c.name: t for c, t in candidates}

    def fixed_times(runners, budget_s=backends.BUDGET_S):
        for run in runners.values():
            run()  # still runs each, as the real timing does
        return {n: ms[n] / 1e3 for n in runners}

    monkeypatch.setattr(backends, "time_runners", fixed_times)


def test_auto_picks_the_faster_runtime(monkeypatch, model) -> None:
    install(monkeypatch, fake("torch", 30.0), fake("openvino", 10.0), fake("onnxruntime", 20.0))
    chosen = backends.choose(model, torch.randn(2, 1, 32, 32), runtime="auto")
    assert chosen.runtime == "openvino"
    assert chosen.times_ms == {"torch": 30.0, "openvino": 10.0, "onnxruntime": 20.0}
    assert not chosen.cached


def test_auto_skips_a_runtime_that_is_missing_or_disagrees(monkeypatch, model) -> None:
    install(
        monkeypatch,
        fake("torch", 30.0),
        fake("openvino", 5.0, installed=False),
        fake("onnxruntime", 10.0, offset=0.01),  # logits off by 0.01: probabilities off by ~2.5e-3
    )
    chosen = backends.choose(model, torch.randn(2, 1, 32, 32), runtime="auto")
    assert chosen.runtime == "torch"
    assert "openvino" not in chosen.diffs
    assert chosen.diffs["onnxruntime"] > backends.TOLERANCE


def test_auto_falls_back_when_a_runtime_fails_to_build(monkeypatch, model) -> None:
    def broken(model, x, precision):
        raise RuntimeError("converter cannot take this graph")

    install(monkeypatch, fake("torch", 30.0), (backends.Candidate("openvino", lambda: True, broken), 1.0))
    assert backends.choose(model, torch.randn(2, 1, 32, 32), runtime="auto").runtime == "torch"


def test_the_choice_is_cached_per_shape_and_reused(monkeypatch, model, cache_home) -> None:
    built: list[str] = []
    install(monkeypatch, fake("torch", 30.0, built=built), fake("openvino", 10.0, built=built))
    x = torch.randn(2, 1, 32, 32)
    first = backends.choose(model, x, runtime="auto")
    entries = json.loads((cache_home / "unetpp" / "runtimes.json").read_text())
    assert [e["runtime"] for e in entries.values()] == ["openvino"]
    assert next(iter(entries.values()))["times_ms"] == {"torch": 30.0, "openvino": 10.0}
    built.clear()
    second = backends.choose(model, x, runtime="auto")
    assert (first.cached, second.cached, second.runtime) == (False, True, "openvino")
    assert built == ["openvino"]  # nothing else built, nothing timed
    backends.choose(model, torch.randn(1, 1, 64, 64), runtime="auto")  # another shape: measured again
    assert len(json.loads((cache_home / "unetpp" / "runtimes.json").read_text())) == 2


def test_named_runtime_must_be_installed(monkeypatch, model) -> None:
    install(monkeypatch, fake("torch", 30.0), fake("openvino", 10.0, installed=False))
    with pytest.raises(ConfigError, match="openvino.*not installed"):
        backends.choose(model, torch.randn(1, 1, 32, 32), runtime="openvino")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        PredictOptions(runtime="tensorrt")


def test_predictor_with_auto_gives_eager_probabilities(monkeypatch, model) -> None:
    install(monkeypatch, fake("torch", 30.0), fake("openvino", 10.0))
    image = torch.randn(1, 1, 40, 56)
    want = Predictor(model)(image)
    auto = backends.predictor(model, PredictOptions(runtime="auto"))
    torch.testing.assert_close(auto(image), want)
    assert auto.model.chosen is not None
    assert auto.model.chosen.runtime == "openvino"
    with pytest.raises(ConfigError, match="runtime 'auto' is chosen where models are deployed"):
        Predictor(model, PredictOptions(runtime="auto"))  # the runtime is composed by the caller, not inferred
    torch.testing.assert_close(unetpp.predict(model, image, runtime="auto"), want)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_real_runtimes_match_eager(runtime, model) -> None:
    pytest.importorskip(runtime)
    x = torch.randn(2, 1, 32, 32)
    runner = backends.CANDIDATES[runtime].build(model, x, "32")
    with torch.inference_mode():
        want = model(x)
        got = runner(torch.randn(1, 1, 48, 64))  # another shape: dynamic sizes
        assert [tuple(g.shape) for g in got] == [(1, 1, 48, 64)] * 2
        for g, w in zip(runner(x), want, strict=True):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
