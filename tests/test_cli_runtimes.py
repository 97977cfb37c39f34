"""`--runtime` on predict/prune/bench and `bench --runtimes` (only eager PyTorch as a candidate: fast)."""

from __future__ import annotations

import json
import logging

import pytest

from unetpp import save
from unetpp.cli import main
from unetpp.data import write_synthetic_dataset
from unetpp.deploy import backends


@pytest.fixture(autouse=True)
def torch_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(backends, "CANDIDATES", {"torch": backends.CANDIDATES["torch"]})
    monkeypatch.setattr(backends, "BUDGET_S", 0.05)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    return save(tiny_model(), tmp_path / "model.pt")


def test_bench_runtimes_writes_a_list_of_rows(tmp_path, monkeypatch, capsys, tiny_checkpoint) -> None:
    from unetpp.deploy import runtime_table

    monkeypatch.setattr(runtime_table, "CANDIDATES", backends.CANDIDATES)
    out = tmp_path / "r.json"
    args = ["bench", "--checkpoint", str(tiny_checkpoint), "--shapes", "1x1x32x32", "2x1x16x16"]
    assert main([*args, "--reps", "1", "--runtimes", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert isinstance(rows, list)
    assert [(r["runtime"], r["precision"], r["shape"]) for r in rows if r["precision"] == "32"] == [
        ("torch", "32", "1x1x32x32"),
        ("torch", "32", "2x1x16x16"),
    ]
    assert all(r["latency_ms"] > 0 and r["max_abs_diff"] <= 1e-2 for r in rows)
    assert "| torch | 32 |" in capsys.readouterr().out


def test_predict_with_auto_caches_the_choice(tmp_path, caplog, tiny_checkpoint) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_images=1, size=32)
    args = ["predict", "--checkpoint", str(tiny_checkpoint), "--inputs", str(data / "images")]
    with caplog.at_level(logging.DEBUG, logger="unetpp"):
        assert main([*args, "--out", str(tmp_path / "a"), "--runtime", "auto"]) == 0
        assert main(["--verbose", *args, "--out", str(tmp_path / "b"), "--runtime", "auto"]) == 0
    cache = json.loads((tmp_path / "cache" / "unetpp" / "runtimes.json").read_text())
    assert [e["runtime"] for e in cache.values()] == ["torch"]
    assert "runtime torch (cached" in caplog.text
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in (tmp_path / "b").iterdir())


def test_prune_and_bench_take_a_runtime(tmp_path, capsys, tiny_checkpoint) -> None:
    ckpt = tiny_checkpoint
    assert main(["bench", "--checkpoint", str(ckpt), "--shapes", "1x1x16x16", "--reps", "1", "--runtime", "auto"]) == 0
    assert "(32, auto)" in capsys.readouterr().out
    args = ["prune", "--checkpoint", str(ckpt), "--depth", "1", "--shape", "1x1x16x16", "--reps", "1"]
    assert main([*args, "--runtime", "auto", "--out", str(tmp_path / "p.pt")]) == 0
    assert main([*args, "--runtime", "openvino", "--out", str(tmp_path / "q.pt")]) == 2  # not a candidate here
