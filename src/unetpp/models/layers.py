"""`spatial_dims` -> layer class lookups: the only place that knows 2D from 3D."""

from __future__ import annotations

from typing import Literal

from torch import nn

from ..errors import ConfigError

NormKind = Literal["batch", "instance"] | None
NORMS: tuple[str | None, ...] = (None, "batch", "instance")


def check_spatial_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims!r}")
    return spatial_dims


def conv_cls(spatial_dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[check_spatial_dims(spatial_dims)]


def conv_transpose_cls(spatial_dims: int) -> type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[check_spatial_dims(spatial_dims)]


def max_pool_cls(spatial_dims: int) -> type[nn.MaxPool2d] | type[nn.MaxPool3d]:
    return {2: nn.MaxPool2d, 3: nn.MaxPool3d}[check_spatial_dims(spatial_dims)]


def norm_layer(kind: NormKind, spatial_dims: int, channels: int) -> nn.Module:
    """A normalisation layer, or Identity for the authors' plain block (`kind=None`)."""
    if kind not in NORMS:
        raise ConfigError(f"norm must be one of {NORMS}, got {kind!r}")
    check_spatial_dims(spatial_dims)
    if kind is None:
        return nn.Identity()
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels)
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](channels, affine=True)
