"""One loader for every model file: .pt, a run's .ckpt (header or legacy), .safetensors, .onnx; errors name the file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import unetpp
from unetpp import CheckpointError, ConfigError, InputShapeError, predict
from unetpp.inference import OnnxRunner, load_model

BUILD = {"name": "unet++", "depth": 2, "widths": [4, 8, 16], "classes": 2}  # a run's model_config


def run_checkpoint(model, path, *, header: bool = True):
    """A checkpoint laid out as Lightning writes one for SegmentationModule (its state dict, hparams, hooks).

    ``header=False`` is a checkpoint from before the engine wrote the unetpp header.
    """
    from unetpp.engine.module import SegmentationModule

    module = SegmentationModule(BUILD)
    module.model.load_state_dict(model.state_dict())
    ckpt = {"epoch": 3, "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    if header:
        module.on_save_checkpoint(ckpt)  # Lightning calls this hook on every save
        assert ckpt["unetpp"]["state_dict_prefix"] == "model."
        del ckpt["hyper_parameters"]  # the header alone is enough: the loader never reads Lightning's keys
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def onnx_file(tiny, tmp_path_factory):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from unetpp.deploy.export import export_onnx

    model = tiny(classes=2)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, path, (1, 1, 16, 16))
    return model, path


# --------------------------------------------------------------------------------------------- one loader


def test_every_kind_of_model_file_loads_through_one_loader_with_the_same_outputs(onnx_file, tmp_path) -> None:
    pytest.importorskip("safetensors")
    from unetpp.deploy.export import export_safetensors

    model, onnx_path = onnx_file
    files = {
        "pt": unetpp.save(model, tmp_path / "m.pt"),
        "run ckpt": run_checkpoint(model, tmp_path / "best.ckpt"),
        "legacy run ckpt": run_checkpoint(model, tmp_path / "old.ckpt", header=False),
        "safetensors": export_safetensors(model, tmp_path / "m.safetensors").path,
        "onnx": onnx_path,
    }
    x = torch.randn(1, 1, 24, 20)
    want = predict(model, x)
    for kind, path in files.items():
        loaded = load_model(path)
        assert isinstance(loaded, OnnxRunner) == (kind == "onnx"), kind
        assert loaded.spec == model.spec, kind
        tol = 1e-4 if kind == "onnx" else 1e-6
        torch.testing.assert_close(predict(loaded, x), want, rtol=tol, atol=tol, msg=kind)
        if kind != "onnx":  # the PyTorch files are the same model, weights and all
            assert loaded.config == model.config
            assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items()), kind


def test_loading_run_checkpoints_never_imports_lightning(tiny, tmp_path) -> None:
    model = tiny(classes=2)
    new, old = run_checkpoint(model, tmp_path / "new.ckpt"), run_checkpoint(model, tmp_path / "old.ckpt", header=False)
    code = (
        "import json, sys, unetpp\n"
        f"models = [unetpp.load({str(new)!r}), unetpp.load({str(old)!r})]\n"
        "print(json.dumps([len(m.spec.heads) for m in models] + [m for m in sys.modules if m.startswith('lightning')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2, 2]


def test_a_newer_model_file_is_refused(tiny, tmp_path) -> None:
    path = run_checkpoint(tiny(classes=2), tmp_path / "future.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["unetpp"]["version"] = 99
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="future.ckpt: model file version 99 is newer than this unetpp reads"):
        unetpp.load(path)


# --------------------------------------------------------------------------------------------- .pt


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_save_load_round_trip(tmp_path, spatial_dims, tiny_model) -> None:
    model = tiny_model(depth=3, classes=2, spatial_dims=spatial_dims).eval()
    x = torch.randn(1, 1, *(8,) * spatial_dims)
    path = unetpp.save(model, tmp_path / "m.pt")
    loaded = unetpp.load(path).eval()
    assert loaded.config == model.config
    for a, b in zip(model(x), loaded(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pruned_model_round_trip_and_prune_again(tmp_path, tiny_model) -> None:
    model = unetpp.prune(tiny_model("unet+", depth=3), 2).eval()
    loaded = unetpp.load(unetpp.save(model, tmp_path / "p.pt")).eval()
    assert loaded.spec == model.spec
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(loaded(x)[0], model(x)[0], rtol=0, atol=0)
    with pytest.raises(unetpp.ConfigError, match="heads only at depth"):
        unetpp.prune(loaded, 1)


def test_save_refuses_to_overwrite(tmp_path, tiny_model) -> None:
    model = tiny_model("unet", depth=1)
    path = unetpp.save(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="file exists; pass --overwrite to replace it"):
        unetpp.save(model, path)
    unetpp.save(model, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_load_into_another_model_is_refused(tmp_path, tiny_model) -> None:
    path = unetpp.save(tiny_model(depth=3), tmp_path / "a.pt")
    other = tiny_model("unet+", depth=3)
    with pytest.raises(
        CheckpointError, match=r"a.pt: checkpoint holds unet\+\+ \(dense skips.* but the model is unet\+ \(short skips"
    ):
        unetpp.load(path, into=other)


def test_bad_files(tmp_path, tiny_model) -> None:
    with pytest.raises(CheckpointError, match=r"missing.pt: no such checkpoint file"):
        unetpp.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a readable checkpoint"):
        unetpp.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"foreign.pt: not a unetpp model file"):
        unetpp.load(tmp_path / "foreign.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list.pt: not a unetpp model file"):
        load_model(tmp_path / "list.pt")
    good = unetpp.save(tiny_model("unet", depth=1), tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc.pt: not a readable checkpoint"):
        unetpp.load(tmp_path / "trunc.pt")


def test_loading_never_unpickles_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "unetpp.model", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        unetpp.load(tmp_path / "evil.pt")


# --------------------------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip(tiny, tmp_path) -> None:
    pytest.importorskip("safetensors")
    from unetpp.deploy.export import export_safetensors, sidecar

    model = tiny(classes=3)
    report = export_safetensors(model, tmp_path / "model.safetensors")
    assert report.files == (tmp_path / "model.safetensors", tmp_path / "model.json")
    assert json.loads(sidecar(report.path).read_text()) == model.config
    loaded = unetpp.load(report.path).eval()
    assert loaded.config == model.config
    x = torch.randn(2, 1, 16, 16)
    for a, b in zip(loaded(x), model(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sidecar(report.path).unlink()  # the header carries the config too
    assert load_model(report.path).config == model.config


def test_broken_safetensors_are_refused(tiny, tmp_path) -> None:
    pytest.importorskip("safetensors")
    from unetpp.deploy.export import export_safetensors, sidecar

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="broken.safetensors: not a readable safetensors file"):
        unetpp.load(broken)
    with pytest.raises(CheckpointError, match="missing.safetensors: no such weights file"):
        unetpp.load(tmp_path / "missing.safetensors")
    report = export_safetensors(tiny(), tmp_path / "m.safetensors")
    sidecar(report.path).write_text(json.dumps(tiny(classes=2).config))
    with pytest.raises(CheckpointError, match=r"m.safetensors: weights do not fit the config in m.json"):
        unetpp.load(report.path)
    sidecar(report.path).write_text("{")
    with pytest.raises(CheckpointError, match=r"m.json: config is not valid JSON"):
        load_model(report.path)


# --------------------------------------------------------------------------------------------- ONNX


def test_onnx_runner_has_the_model_interface(onnx_file) -> None:
    model, path = onnx_file
    runner = load_model(path)
    assert isinstance(runner, OnnxRunner)
    assert runner.spec == model.spec
    assert (runner.in_channels, runner.classes, runner.spatial_dims) == (1, 2, 2)
    x = torch.randn(3, 1, 24, 36)  # another batch and size than the traced one: the graph is dynamic
    got, want = runner(x), model(x)
    assert len(got) == len(want) == 2
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(runner(x, head=2)[0], want[1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match=r"model.onnx: head=5 does not exist"):
        runner(x, head=5)


def test_predict_runs_an_onnx_runner_like_the_model(onnx_file) -> None:
    model, path = onnx_file
    runner = OnnxRunner(path)
    x = torch.randn(1, 37, 22)
    torch.testing.assert_close(
        predict(runner, x, roi_size=16, tta=True), predict(model, x, roi_size=16, tta=True), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(InputShapeError, match=r"divisible by 4, got shape \(1, 1, 10, 12\)"):
        runner(torch.randn(1, 1, 10, 12))
    with pytest.raises(ConfigError, match="bf16 runs on PyTorch models only"):
        predict(runner, x, precision="bf16")


def test_foreign_or_broken_onnx_files_are_refused(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    with pytest.raises(CheckpointError, match="missing.onnx: no such ONNX file"):
        load_model(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="broken.onnx: not a readable ONNX model"):
        load_model(broken)
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
