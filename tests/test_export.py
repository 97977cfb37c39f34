"""Deployment formats: ONNX (verified in onnxruntime, int8), torch.export, safetensors + JSON."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import unetpp
from unetpp import CheckpointError, ConfigError, InputShapeError, build_model
from unetpp.export import (
    OnnxRunner,
    export_onnx,
    export_program,
    export_safetensors,
    load_safetensors,
    quantize_onnx,
    sidecar,
)
from unetpp.predict import predict

TINY = (4, 8, 16)


def tiny(spatial_dims: int = 2, classes: int = 1) -> nn.Module:
    model = build_model("unet++", depth=2, widths=TINY, spatial_dims=spatial_dims, classes=classes)
    with torch.no_grad():  # non-trivial batch-norm statistics, so that folding them is checked
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = tiny(classes=2)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return model, path, export_onnx(model, path, (1, 1, 16, 16))


def test_onnx_round_trip_reports_the_difference(onnx_file) -> None:
    model, path, report = onnx_file
    assert report.path == path
    assert report.bytes == path.stat().st_size
    assert report.max_abs_diff is not None
    assert report.max_abs_diff < 1e-4
    runner = OnnxRunner(path)
    assert runner.spec == model.spec
    assert (runner.in_channels, runner.classes, runner.spatial_dims) == (1, 2, 2)
    x = torch.randn(3, 1, 24, 36)  # another batch and size than the traced one: the graph is dynamic
    got, want = runner(x), model(x)
    assert len(got) == len(want) == 2
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(runner(x, head=2)[0], want[1], rtol=1e-4, atol=1e-5)


def test_predict_runs_an_onnx_runner_like_the_model(onnx_file) -> None:
    model, path, _ = onnx_file
    runner = OnnxRunner(path)
    x = torch.randn(1, 37, 22)
    torch.testing.assert_close(
        predict(runner, x, roi_size=16, tta=True), predict(model, x, roi_size=16, tta=True), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(InputShapeError, match=r"divisible by 4, got shape \(1, 1, 10, 12\)"):
        runner(torch.randn(1, 1, 10, 12))
    with pytest.raises(ConfigError, match="bfloat16 runs on PyTorch models only"):
        predict(runner, x, precision="bfloat16")


def test_onnx_refuses_to_overwrite(onnx_file) -> None:
    model, path, _ = onnx_file
    with pytest.raises(CheckpointError, match=r"model.onnx: file exists"):
        export_onnx(model, path, verify=False)


def test_int8_quantization_stays_close(onnx_file, tmp_path) -> None:
    model, path, _ = onnx_file
    calibration = [torch.randn(2, 1, 32, 32) for _ in range(3)]
    report = quantize_onnx(path, tmp_path / "int8.onnx", calibration=calibration)
    int8 = OnnxRunner(report.path)
    assert int8.spec == model.spec
    x = torch.randn(1, 32, 32)
    torch.testing.assert_close(predict(int8, x), predict(model, x), rtol=0, atol=0.05)
    with pytest.raises(ConfigError, match="static quantization needs calibration"):
        quantize_onnx(path, tmp_path / "other.onnx")


def test_a_pruned_model_exports_as_small_as_it_is(tmp_path) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("safetensors")
    model = build_model("unet++", depth=3, widths=(4, 8, 16, 32))
    small = unetpp.prune(model, 1)
    full_onnx = export_onnx(model, tmp_path / "full.onnx", verify=False).bytes
    small_onnx = export_onnx(small, tmp_path / "l1.onnx", verify=False).bytes
    assert small_onnx < full_onnx / 4
    assert export_safetensors(small, tmp_path / "l1.safetensors").bytes < (
        export_safetensors(model, tmp_path / "full.safetensors").bytes / 4
    )


def test_foreign_or_broken_onnx_files_are_refused(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="broken.onnx: not a readable ONNX model"):
        OnnxRunner(broken)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(proto, foreign)
    with pytest.raises(CheckpointError, match="foreign.onnx: ONNX file has no unetpp config"):
        OnnxRunner(foreign)


def test_torch_export_program_round_trip(tmp_path) -> None:
    model = tiny(spatial_dims=3)
    report = export_program(model, tmp_path / "model.pt2")
    assert report.max_abs_diff is not None
    assert report.max_abs_diff < 1e-4
    extra = {"unetpp_config.json": ""}
    loaded = torch.export.load(report.path, extra_files=extra).module()
    assert json.loads(extra["unetpp_config.json"]) == model.config
    x = torch.randn(2, 1, 8, 12, 16)
    for a, b in zip(loaded(x), model(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_safetensors_round_trip(tmp_path) -> None:
    pytest.importorskip("safetensors")
    model = tiny(classes=3)
    report = export_safetensors(model, tmp_path / "model.safetensors")
    assert report.files == (tmp_path / "model.safetensors", tmp_path / "model.json")
    assert json.loads(sidecar(report.path).read_text()) == model.config
    loaded = load_safetensors(report.path)
    assert loaded.config == model.config
    x = torch.randn(2, 1, 16, 16)
    for a, b in zip(loaded(x), model(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sidecar(report.path).unlink()  # the header carries the config too
    assert load_safetensors(report.path).config == model.config
    with pytest.raises(CheckpointError, match="model.safetensors: file exists"):
        export_safetensors(model, report.path)


def test_broken_safetensors_are_refused(tmp_path) -> None:
    pytest.importorskip("safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="broken.safetensors: not a readable safetensors file"):
        load_safetensors(broken)
    with pytest.raises(CheckpointError, match="missing.safetensors: no such weights file"):
        load_safetensors(tmp_path / "missing.safetensors")
    report = export_safetensors(tiny(), tmp_path / "m.safetensors")
    other = tiny(classes=2).config
    sidecar(report.path).write_text(json.dumps(other))
    with pytest.raises(CheckpointError, match=r"m.safetensors: weights do not fit the config in m.json"):
        load_safetensors(report.path)
