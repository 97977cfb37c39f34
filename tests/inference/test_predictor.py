"""Predictor and predict: modes, one heads->probabilities function, precision names, model left alone, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import Tensor

import unetpp
from unetpp import ConfigError, InputShapeError, predict
from unetpp.inference import PRECISIONS, PredictOptions, Predictor
from unetpp.models.fusion import fuse_batch_norm


def full_pass(model, x: Tensor) -> Tensor:
    with torch.inference_mode():
        return unetpp.ensemble(model(x))


def test_modes_ensemble_head_and_pruned(tiny) -> None:
    model = tiny(classes=3)
    x = torch.randn(1, 1, 16, 16)
    logits = model(x)
    ensemble = torch.stack([y.softmax(1) for y in logits]).mean(0)
    torch.testing.assert_close(predict(model, x[0])[None], ensemble, rtol=1e-4, atol=1e-5)
    head1 = predict(model, x, head=1)
    torch.testing.assert_close(head1, logits[0].softmax(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(predict(model, x, "select:1"), head1)
    torch.testing.assert_close(predict(unetpp.prune(model, 1), x), head1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head1.sum(1), torch.ones(1, 16, 16))


def test_ensemble_is_the_one_heads_to_probabilities_function() -> None:
    one = [torch.randn(2, 1, 4, 4, dtype=torch.bfloat16)]
    out = unetpp.ensemble(one)
    assert out.dtype == torch.float32  # whatever precision the heads ran in
    torch.testing.assert_close(out, one[0].float().sigmoid())  # one head: that head's probabilities
    many = [torch.randn(2, 3, 4, 4) for _ in range(3)]
    torch.testing.assert_close(unetpp.ensemble(many), sum(y.softmax(1) for y in many) / 3)
    binary = [torch.randn(1, 1, 4, 4) for _ in range(2)]
    torch.testing.assert_close(unetpp.ensemble(binary), (binary[0].sigmoid() + binary[1].sigmoid()) / 2)


def test_predict_leaves_the_model_alone_and_takes_numpy(tiny) -> None:
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(1, 20, 12)).astype(np.float32)
    out = predict(model, x)
    assert isinstance(out, Tensor)
    assert out.shape == (1, 20, 12)
    assert out.dtype == torch.float32
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    uint8 = predict(model, (x * 50 + 100).clip(0, 255).astype(np.uint8))
    assert uint8.shape == (1, 20, 12)


def test_bf16_is_close_to_32(tiny) -> None:
    model = tiny()
    x = torch.randn(2, 1, 32, 32)
    f32, bf16 = predict(model, x), predict(model, x, precision="bf16")
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, f32)  # it really ran in bfloat16
    torch.testing.assert_close(bf16, f32, rtol=0, atol=0.03)
    torch.testing.assert_close(full_pass(fuse_batch_norm(model), x), full_pass(model, x), rtol=1e-4, atol=1e-5)


def test_precision_names_follow_lightning_and_the_old_ones_are_deprecated(tiny) -> None:
    assert PRECISIONS == ("32", "bf16")
    model, x = tiny(), torch.randn(1, 1, 16, 16)
    with pytest.warns(FutureWarning, match="precision='bfloat16' is now spelled 'bf16'"):
        old = predict(model, x, precision="bfloat16")
    torch.testing.assert_close(old, predict(model, x, precision="bf16"))
    with pytest.warns(FutureWarning, match="is now spelled '32'"):
        assert PredictOptions(precision="float32").precision == "32"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"head": 7}, ConfigError, r"head=7 does not exist; the model has heads \[1, 2\]"),
        ({"mode": "fast"}, ConfigError, "mode must be 'ensemble' or 'select:<depth>'"),
        ({"mode": "select:1", "head": 2}, ConfigError, "disagree"),
        ({"roi_size": 10}, ConfigError, r"not divisible by 4.*\(8, 8\)"),
        ({"roi_size": (8, 8, 8)}, ConfigError, "2 positive integers"),
        ({"overlap": 1.0}, ConfigError, r"overlap must be in \[0, 1\), got 1.0"),
        ({"blend": "max"}, ConfigError, "blend must be one of"),
        ({"sw_batch_size": 0}, ConfigError, "sw_batch_size"),
        ({"precision": "float16"}, ConfigError, r"precision: got 'float16'; expected one of '32', 'bf16'"),
    ],
)
def test_bad_arguments(tiny, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        predict(tiny(), torch.randn(1, 16, 16), **kwargs)


@pytest.mark.parametrize(
    ("shape", "match"), [((2, 16, 16), r"takes 1 channel\(s\), got 2"), ((16, 16), r"got shape \(16, 16\)")]
)
def test_bad_images(tiny, shape, match) -> None:
    with pytest.raises(InputShapeError, match=match):
        predict(tiny(), torch.randn(shape))


def test_predictor_is_reusable_and_validates_once(tiny) -> None:
    predictor = Predictor(tiny(), PredictOptions(roi_size=8, tta=True))
    assert predictor(torch.randn(1, 12, 12)).shape == (1, 12, 12)
    assert predictor(torch.randn(3, 1, 9, 20)).shape == (3, 1, 9, 20)


def test_unetpp_predict_is_the_one_liner(tiny) -> None:
    assert unetpp.predict(tiny(), torch.randn(1, 8, 8)).shape == (1, 8, 8)


def loaded_modules(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of `names` a fresh interpreter has imported after running `code`."""
    probe = f"import json, sys\n{code}\nprint(json.dumps([m for m in {names!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_light() -> None:
    heavy = ("unetpp.data", "unetpp.engine", "onnx", "onnxruntime", "safetensors", "PIL", "nibabel", "lightning")
    assert loaded_modules("import unetpp.inference, unetpp.deploy.export, unetpp.deploy.bench", heavy) == []


def test_models_never_import_lightning_or_the_image_libraries() -> None:
    # which unetpp modules may import which is checked statically (tests/test_layers.py); this is about cost
    assert loaded_modules("import unetpp, unetpp.models", ("lightning", "PIL", "scipy", "torchvision", "onnx")) == []
