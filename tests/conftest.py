from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from unetpp import NestedUNet, build_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_WIDTHS = (4, 8, 16, 32, 64)
TINY_MODEL = ["model.depth=2", "model.widths=[4,8,16]"]  # the tiny model as run settings
# The tiny run every engine and fault test trains: a depth-2 model on six generated 64² images, in seconds.
TINY_RUN = [
    *TINY_MODEL,
    "data.layout=synthetic",
    "data.synthetic_images=6",
    "data.synthetic_size=64",
    "data.patch_size=[32,32]",
    "data.patches_per_image=2",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.val_fraction=0.34",
    "train.progress=false",
    "train.steps_per_epoch=null",  # an epoch of patches_per_image x images: a few steps, not 250
]


def make_tiny_model(name: str = "unet++", depth: int = 2, **kw) -> NestedUNet:
    """The tests' tiny model: widths 4-8-16-... up to `depth` (a depth-2 UNet++ by default)."""
    return build_model(name, depth=depth, widths=TINY_WIDTHS[: depth + 1], **kw)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_data = pytest.mark.skip(reason=f"needs the shared data sets in {SHARED_DATA}")
    for item in items:
        # by marker, not by keyword: a keyword match would also catch every test in the folder tests/data/
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if item.get_closest_marker("data") and not SHARED_DATA.is_dir():
            item.add_marker(skip_data)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., NestedUNet]:
    """``tiny_model(name="unet++", depth=2, **build_kwargs)``: see :func:`make_tiny_model`."""
    return make_tiny_model


def make_tiny(spatial_dims: int = 2, classes: int = 1, **kw) -> NestedUNet:
    """The tiny UNet++ in eval mode, its batch norms holding non-trivial statistics (so that folding them is tested)."""
    model = make_tiny_model(spatial_dims=spatial_dims, classes=classes, **kw)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny() -> Callable[..., NestedUNet]:
    """``tiny(spatial_dims=2, classes=1, **build_kwargs)``: see :func:`make_tiny`."""
    return make_tiny
