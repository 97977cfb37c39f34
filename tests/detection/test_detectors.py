"""Mask R-CNN and Mask R-CNN++: build by name, train a few steps on one batch, detect, save and load."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import unetpp
from unetpp import CheckpointError, ConfigError
from unetpp.detection import Detector, NestedPyramid, build_detector, load, save


@pytest.mark.parametrize("name", ["maskrcnn", "maskrcnn++"])
def test_trains_on_one_batch_and_detects(name: str, tiny: dict, blobs) -> None:  # noqa: ANN001
    model = unetpp.build_model(name, **tiny)
    assert isinstance(model, Detector)
    assert isinstance(model.backbone.fpn, NestedPyramid) == (name == "maskrcnn++")
    image, target = blobs()
    empty_image, empty = blobs(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    totals = []
    for _ in range(4):
        losses = model([image, empty_image], [target, empty])
        assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} == set(losses)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total))
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < totals[0]
    model.eval()
    with torch.no_grad():
        (det,) = model([image])
    n = det["boxes"].shape[0]
    assert det["boxes"].shape == (n, 4)
    assert det["labels"].shape == det["scores"].shape == (n,)
    assert det["masks"].shape == (n, 1, 64, 64)


def test_config_rebuilds_and_save_load_round_trip(tmp_path, tiny: dict) -> None:  # noqa: ANN001
    model = build_detector("maskrcnn++", **tiny, in_channels=1).eval()
    path = save(model, tmp_path / "det.pt")
    with pytest.raises(CheckpointError, match="exists"):
        save(model, path)
    same = load(path).eval()
    assert same.config == model.config
    assert same.config["image_mean"] == pytest.approx([0.449, 0.449, 0.449][:1], abs=1e-3)
    x = [torch.rand(1, 64, 64)]
    with torch.no_grad():
        a, b = model(x)[0], same(x)[0]
    for k in ("boxes", "scores", "masks"):
        torch.testing.assert_close(a[k], b[k])


def test_load_refuses_segmentation_files_and_junk(tmp_path) -> None:  # noqa: ANN001
    seg = unetpp.save(unetpp.build_model("unet", depth=1, widths=(4, 8)), tmp_path / "seg.pt")
    with pytest.raises(CheckpointError, match="segmentation model"):
        load(seg)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load(junk)


def test_registry_lists_and_dispatches_detectors(tiny: dict) -> None:
    assert unetpp.list_models(detectors=True) == [*unetpp.list_models(), "maskrcnn", "maskrcnn++"]
    with pytest.raises(ConfigError, match="maskrcnn"):
        unetpp.build_model("maskrcn", **tiny)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": 1}, "background"),
        ({"encoder": "resnet_nope"}, "unknown encoder"),
        ({"anchor_sizes": (8, 16)}, "anchor_sizes"),
        ({"in_channels": 1, "image_mean": [0.5, 0.5, 0.5]}, "image_mean"),
    ],
)
def test_bad_arguments_are_one_line(kwargs: dict, match: str, tiny: dict) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_detector("maskrcnn++", **{**tiny, **kwargs})
    assert "\n" not in str(info.value)


def test_import_unetpp_does_not_import_torchvision() -> None:
    code = "import sys, unetpp, unetpp.metrics; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
