"""Export round trips: torch.export and ONNX (checked with onnxruntime when installed)."""

from __future__ import annotations

import pytest
import torch

import unetpp
from unetpp import build_model

TINY = (4, 8, 16)


@pytest.mark.parametrize("name", ["unet", "unet++"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torch_export_round_trip(name, spatial_dims) -> None:
    model = build_model(name, depth=2, widths=TINY, spatial_dims=spatial_dims).eval()
    x = torch.randn(1, 1, *(8,) * spatial_dims)
    exported = torch.export.export(model, (x,))
    for a, b in zip(model(x), exported.module()(x), strict=True):
        torch.testing.assert_close(a, b)


def test_onnx_round_trip(tmp_path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = unetpp.prune(build_model("unet++", depth=2, widths=TINY, classes=2), 2).eval()
    x = torch.randn(2, 1, 16, 16)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), path, dynamo=True, input_names=["image"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model(x)[0], rtol=1e-4, atol=1e-5)
