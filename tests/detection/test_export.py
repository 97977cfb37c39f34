"""The traced detector file runs without this package and equals eager, whatever the number of detections."""

from __future__ import annotations

import pytest
import torch

from unetpp import ConfigError
from unetpp.detection import build_detector, export_detector


def test_traced_file_matches_eager_on_other_images(tmp_path, tiny: dict, blobs) -> None:  # noqa: ANN001
    model = build_detector("maskrcnn++", **{**tiny, "detections_per_img": 1000}).eval()
    with torch.no_grad():  # an untrained model scores everything alike: cut at the median so that counts vary
        model.roi_heads.score_thresh = float(model([blobs(1)[0]])[0]["scores"].median())
    path = export_detector(model, tmp_path / "det.pt", blobs(1)[0])
    traced = torch.jit.load(str(path))
    counts = set()
    for image in (blobs(3)[0], torch.rand(3, 80, 48)):  # other content, other size
        with torch.no_grad():
            eager = model([image])[0]
            boxes, labels, scores, masks = traced(image)
        counts.add(boxes.shape[0])
        torch.testing.assert_close(boxes, eager["boxes"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(scores, eager["scores"], atol=1e-4, rtol=1e-4)
        assert torch.equal(labels, eager["labels"])
        assert masks.shape == eager["masks"].shape
    assert len(counts) == 2  # the trace did not freeze the number of detections


def test_bad_example_is_refused(tmp_path, tiny: dict) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="one image"):
        export_detector(build_detector("maskrcnn", **tiny), tmp_path / "x.pt", torch.rand(1, 3, 64, 64))
