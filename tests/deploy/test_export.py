"""Deployment writers: ONNX (verified in ONNX Runtime, int8), torch.export, safetensors + JSON; never overwrite."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import unetpp
from unetpp import ConfigError, ExportError, predict
from unetpp.deploy.export import export_onnx, export_program, export_safetensors, quantize_onnx, sidecar
from unetpp.inference import OnnxRunner


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, tiny):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = tiny(classes=2)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return model, path, export_onnx(model, path, (1, 1, 16, 16))


# --------------------------------------------------------------------------------------------- ONNX


def test_onnx_export_reports_the_difference_and_stays_dynamic(onnx_file) -> None:
    model, path, report = onnx_file
    assert report.path == path
    assert report.bytes == path.stat().st_size
    assert report.max_abs_diff is not None
    assert report.max_abs_diff < 1e-4
    runner = OnnxRunner(path)
    assert runner.spec == model.spec
    assert runner.config == model.config  # the config travels in the metadata
    x = torch.randn(3, 1, 24, 36)  # another batch and size than the traced one: the graph is dynamic
    for a, b in zip(runner(x), model(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_onnx_refuses_to_overwrite(onnx_file) -> None:
    model, path, _ = onnx_file
    before = path.read_bytes()
    with pytest.raises(ExportError, match=r"model.onnx: file exists"):
        export_onnx(model, path, verify=False)
    assert path.read_bytes() == before


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
    with pytest.raises(ExportError, match=r"int8.onnx: file exists"):
        quantize_onnx(path, report.path, "dynamic")


def test_a_pruned_model_exports_as_small_as_it_is(tmp_path, tiny_model) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("safetensors")
    model = tiny_model(depth=3)
    small = unetpp.prune(model, 1)
    full_onnx = export_onnx(model, tmp_path / "full.onnx", verify=False).bytes
    small_onnx = export_onnx(small, tmp_path / "l1.onnx", verify=False).bytes
    assert small_onnx < full_onnx / 4
    assert export_safetensors(small, tmp_path / "l1.safetensors").bytes < (
        export_safetensors(model, tmp_path / "full.safetensors").bytes / 4
    )


def test_plain_torch_onnx_export_of_a_pruned_model(tmp_path, tiny_model) -> None:
    """The grid itself traces with torch.onnx (no unetpp writer in between)."""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = unetpp.prune(tiny_model(classes=2), 2).eval()
    x = torch.randn(2, 1, 16, 16)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), path, dynamo=True, input_names=["image"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model(x)[0], rtol=1e-4, atol=1e-5)


def test_only_models_of_the_family_are_exported(tmp_path) -> None:
    with pytest.raises(ConfigError, match="export takes a NestedUNet .* got Conv2d"):
        export_onnx(nn.Conv2d(1, 1, 1), tmp_path / "x.onnx")


# --------------------------------------------------------------------------------------------- torch.export


@pytest.mark.parametrize("name", ["unet", "unet++"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torch_export_round_trip(name, spatial_dims, tiny_model) -> None:
    model = tiny_model(name, spatial_dims=spatial_dims).eval()
    x = torch.randn(1, 1, *(8,) * spatial_dims)
    exported = torch.export.export(model, (x,))
    for a, b in zip(model(x), exported.module()(x), strict=True):
        torch.testing.assert_close(a, b)


def test_torch_export_program_round_trip(tmp_path, tiny) -> None:
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
    with pytest.raises(ExportError, match=r"model.pt2: file exists"):
        export_program(model, report.path, verify=False)


# --------------------------------------------------------------------------------------------- safetensors


def test_safetensors_writes_weights_and_config(tmp_path, tiny) -> None:
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    model = tiny(classes=3)
    report = export_safetensors(model, tmp_path / "model.safetensors")
    assert report.files == (tmp_path / "model.safetensors", tmp_path / "model.json")
    assert report.bytes == sum(p.stat().st_size for p in report.files)
    assert json.loads(sidecar(report.path).read_text()) == model.config
    with safe_open(report.path, framework="pt") as f:
        assert json.loads(f.metadata()["unetpp.config"]) == model.config  # the weights file alone suffices
        assert set(f.keys()) == set(model.state_dict())
    assert unetpp.load(report.path).config == model.config


def test_safetensors_never_overwrites_either_file(tmp_path, tiny) -> None:
    pytest.importorskip("safetensors")
    model = tiny()
    report = export_safetensors(model, tmp_path / "m.safetensors")
    with pytest.raises(ExportError, match=r"m.safetensors: file exists"):
        export_safetensors(model, report.path)
    (tmp_path / "n.json").write_text("mine")  # the user's file where the new sidecar would go
    with pytest.raises(ExportError, match=r"n.json: file exists"):
        export_safetensors(model, tmp_path / "n.safetensors")
    assert not (tmp_path / "n.safetensors").exists()  # neither file written
    assert (tmp_path / "n.json").read_text() == "mine"
    export_safetensors(tiny(classes=2), report.path, overwrite=True)
    assert unetpp.load(report.path).classes == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "n.json"]  # no temp files
