"""Prediction, export, pruning, benchmarks and evaluation on hostile files: one line, nothing half-done."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from unetpp.cli import main
from unetpp.evaluation.semantic import Row, evaluate, format_table, summarize

from .conftest import snapshot

pytestmark = pytest.mark.bad_input


@pytest.fixture
def images(data):
    return data / "images"


def test_predict_opens_every_input_before_writing_anything(model_file, images, tmp_path, fails) -> None:
    third = sorted(images.iterdir())[2]
    third.write_bytes(third.read_bytes()[:40])  # truncated
    out = tmp_path / "out"
    line = fails(["predict", "--checkpoint", model_file, "--inputs", images, "--out", out, "--no-overlay"])
    assert third.name in line
    assert snapshot(out) == {}


def test_a_rerun_after_a_failure_in_the_middle_finishes_the_rest(model_file, images, tmp_path, fails) -> None:
    bad = images / "zz.npy"
    np.save(bad, np.zeros((5, 32, 32), np.float32))  # opens fine, but 5 channels: fails when its turn comes
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", model_file, "--inputs", images, "--out", out, "--no-overlay"]
    assert "zz.npy" in fails(args)
    done = snapshot(out)
    assert len([n for n in done if n.endswith("_mask.png")]) == 3  # complete outputs only
    bad.unlink()
    assert main([str(a) for a in args]) == 0  # no --overwrite needed: same model and settings
    assert {k: v for k, v in snapshot(out).items() if k in done} == done  # the finished ones were kept as they were
    assert "model.pt" not in fails([*args, "--depth", "1"])  # other settings: refused, nothing replaced


def test_export_checks_the_calibration_images_before_writing(model_file, tmp_path, fails) -> None:
    out = tmp_path / "m.onnx"
    assert "nope" in fails(["export", "--checkpoint", model_file, "--out", out, "--calibration", "nope/*.png"])
    assert not out.exists()


@pytest.mark.parametrize("command", ["prune", "bench", "evaluate"])
def test_existing_outputs_are_refused_within_a_second(command, model_file, images, tmp_path, fails) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text("keep")
    args = {
        "prune": ["prune", "--checkpoint", model_file, "--depth", "1", "--out", tmp_path / "p.pt", "--table", mine],
        "bench": ["bench", "--checkpoint", model_file, "--shapes", "1x1x32x32", "--json", mine],
        "evaluate": ["evaluate", "--checkpoint", model_file, "--data", images.parent, "--out", mine],
    }[command]
    t0 = time.perf_counter()
    assert "file exists; pass --overwrite" in fails(args)
    assert time.perf_counter() - t0 < 1.0
    assert mine.read_text() == "keep"


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_output_that_cannot_be_written_is_refused_first(where, model_file, tmp_path, fails) -> None:
    (tmp_path / "f").write_text("x")
    target = tmp_path / "f" / "b.json" if where == "under a file" else tmp_path
    t0 = time.perf_counter()
    fails(["bench", "--checkpoint", model_file, "--shapes", "1x1x32x32", "--json", target])
    assert time.perf_counter() - t0 < 1.0


def test_outputs_into_a_missing_folder_are_made(model_file, tmp_path) -> None:
    out = tmp_path / "new" / "b.json"
    assert (
        main(["bench", "--checkpoint", str(model_file), "--shapes", "1x1x32x32", "--reps", "1", "--json", str(out)])
        == 0
    )
    assert json.loads(out.read_text())


def test_prune_to_a_depth_the_model_lacks_refuses_at_once(model_file, tmp_path, fails) -> None:
    t0 = time.perf_counter()
    assert "--depth 9" in fails(["prune", "--checkpoint", model_file, "--depth", "9", "--out", tmp_path / "p.pt"])
    assert time.perf_counter() - t0 < 1.0
    assert not (tmp_path / "p.pt").exists()


def _tampered(tmp_path, model_file, what):
    ckpt = torch.load(model_file, weights_only=True)
    if what == "config not a dict":
        ckpt["config"] = [1, 2]
    elif what == "weights of the wrong shape":
        key = next(k for k, v in ckpt["state_dict"].items() if v.ndim == 4)
        ckpt["state_dict"][key] = torch.zeros(3, 3, 3, 3)
    elif what == "a weight not a tensor":
        ckpt["state_dict"][next(iter(ckpt["state_dict"]))] = "x"
    path = tmp_path / "tampered.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("what", ["config not a dict", "weights of the wrong shape", "a weight not a tensor"])
def test_a_tampered_checkpoint_is_one_short_line(what, model_file, images, tmp_path, fails) -> None:
    path = _tampered(tmp_path, model_file, what)
    line = fails(["evaluate", "--checkpoint", path, "--data", images.parent, "--out", tmp_path / "e.csv"])
    assert "tampered.pt: " in line
    assert len(line) < 300
    assert not (tmp_path / "e.csv").exists()


def test_a_malicious_pickle_never_runs(tmp_path, images, fails) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"config": Evil()}, tmp_path / "evil.pt")
    assert "refused to load them" in fails(
        ["predict", "--checkpoint", tmp_path / "evil.pt", "--inputs", images, "--out", tmp_path / "out"]
    )
    assert not marker.exists()


def test_a_garbage_onnx_file_is_named_as_onnx(tmp_path, images, fails) -> None:
    (tmp_path / "m.onnx").write_bytes(b"garbage" * 10)
    assert "an ONNX file" in fails(["evaluate", "--checkpoint", tmp_path / "m.onnx", "--data", images.parent])
    line = fails(["predict", "--checkpoint", tmp_path / "m.onnx", "--inputs", images, "--out", tmp_path / "o"])
    assert "not a readable ONNX model" in line
    assert "Unpickling" not in line


def test_an_onnx_file_whose_metadata_is_not_json(tmp_path, images, fails) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["head1"])],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("head1", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"unetpp.config": "{not json"})
    onnx.save(model, tmp_path / "m.onnx")
    line = fails(["predict", "--checkpoint", tmp_path / "m.onnx", "--inputs", images, "--out", tmp_path / "o"])
    assert "m.onnx: the unetpp config in its ONNX metadata is not valid JSON" in line


def test_hd95_undefined_on_some_images_is_counted_not_nan() -> None:
    rows = [
        Row("a", "ensemble", 0.5, 0.6, 3.0),
        Row("b", "ensemble", 0.0, 0.0, float("inf")),
        Row("c", "ensemble", 0.7, 0.8, 5.0),
    ]
    table = format_table({"m": summarize(rows)})
    assert "4.00 ± 1.41 (1 of 3 undefined)" in table
    assert "nan" not in table
    assert "undefined in all 1" in format_table({"m": summarize([Row("b", "ensemble", 0, 0, float("nan"))])})


def test_multi_class_results_per_class_and_averaged(tiny_model) -> None:
    model = tiny_model(classes=3)
    sample = {"image": torch.randn(1, 32, 32), "mask": torch.randint(0, 3, (1, 32, 32)), "id": "x"}
    modes = {r.mode for r in evaluate(model, [sample], per_class=True)}
    assert {"ensemble", "ensemble class 1", "ensemble class 2"} <= modes
