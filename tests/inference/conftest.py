from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from unetpp import NestedUNet, build_model

TINY = (4, 8, 16)


def make_tiny(spatial_dims: int = 2, classes: int = 1, **kw) -> NestedUNet:
    """A depth-2 UNet++ whose batch norms hold non-trivial statistics (so that folding them is tested)."""
    model = build_model("unet++", depth=2, widths=TINY, spatial_dims=spatial_dims, classes=classes, **kw)
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
