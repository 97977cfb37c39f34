from __future__ import annotations

import pytest
import torch

TINY = {
    "encoder": "test_resnet",
    "encoder_weights": None,
    "min_size": 64,
    "max_size": 64,
    "pyramid_width": 16,
    "head_width": 16,
    "detections_per_img": 20,
}
TINY_ANCHORS = (8, 16, 32, 64, 128)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def tiny() -> dict:
    """Keyword arguments of a small, fast detector (timm's test_resnet, 64 px, small anchors)."""
    return {**TINY, "anchor_sizes": TINY_ANCHORS}


@pytest.fixture
def blobs():  # noqa: ANN201
    return make_blobs


def make_blobs(n: int = 2, size: int = 64) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """An image with `n` bright squares and its target (torchvision's format)."""
    image = torch.full((3, size, size), 0.1)
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    boxes = []
    for k in range(n):
        y, x = 6 + 28 * (k // 2), 6 + 28 * (k % 2)
        masks[k, y : y + 18, x : x + 18] = 1
        image[:, y : y + 18, x : x + 18] = 0.9
        boxes.append([x, y, x + 18, y + 18])
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.ones(n, dtype=torch.int64),
        "masks": masks,
    }
    return image, target
