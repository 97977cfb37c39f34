"""prune() yields a physically smaller model whose output is the selected head, bit for bit."""

from __future__ import annotations

import pytest
import torch

import unetpp
from unetpp import ConfigError
from unetpp.models.fusion import fuse_batch_norm


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["unet_e", "unet+", "unet++"])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("norm", [None, "batch"])
def test_pruned_output_equals_the_head(name, d, norm, tiny_model) -> None:
    full = tiny_model(name, depth=4, norm=norm).eval()
    x = torch.randn(2, 1, 32, 32)
    small = unetpp.prune(full, d)
    assert not small.training
    assert small.spec.heads == (d,)
    torch.testing.assert_close(small(x)[0], full(x)[d - 1], rtol=0, atol=0)
    assert set(small.state_dict()) <= set(full.state_dict())
    if d < 4:
        assert n_params(small) < n_params(full)


def test_pruned_unet_plus_plus_parameter_counts(tiny_model) -> None:
    full = tiny_model(depth=4, norm=None)
    counts = [n_params(unetpp.prune(full, d)) for d in (1, 2, 3, 4)]
    # A freshly built UNet++ of each depth with one head has exactly these counts.
    built = [n_params(tiny_model(depth=d, norm=None, deep_supervision=False)) for d in (1, 2, 3, 4)]
    assert counts == built
    assert counts == sorted(counts)


def test_pruned_unet_e_is_a_unet(tiny_model) -> None:
    full = tiny_model("unet_e", depth=4, norm=None)
    small = unetpp.prune(full, 2)
    assert small.spec == tiny_model("unet").spec
    assert n_params(small) == n_params(tiny_model("unet", norm=None))


def test_prune_again_and_to_a_missing_head(tiny_model) -> None:
    full = tiny_model(depth=4)
    with pytest.raises(ConfigError, match=r"cannot prune to depth 2: this model has heads only at depth \[3\]"):
        unetpp.prune(unetpp.prune(full, 3), 2)
    with pytest.raises(ConfigError, match=r"heads only at depth \[1, 2, 3, 4\]"):
        unetpp.prune(full, 5)


def test_pruned_model_keeps_training_mode_and_trains(tiny_model) -> None:
    small = unetpp.prune(tiny_model(depth=4), 2)
    assert small.training
    small(torch.randn(2, 1, 16, 16))[0].mean().backward()
    assert all(p.grad is not None for p in small.parameters())


@pytest.mark.parametrize("norm", [None, "batch", "instance"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_fused_batch_norm_keeps_the_output(norm, spatial_dims, tiny_model) -> None:
    model = tiny_model(norm=norm, spatial_dims=spatial_dims)
    x = torch.randn(2, 1, *(8,) * spatial_dims)
    for _ in range(3):  # move the running statistics away from their initial values
        model(torch.randn_like(x) * 3 + 1)
    model.eval()
    fused = fuse_batch_norm(model)
    assert fused.norm is None if norm == "batch" else fused.norm == norm
    assert not fused.training
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    for a, b in zip(model(x), fused(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
