"""The model family: shapes, exact parameter counts, gradient wiring, early exit, bad input."""

from __future__ import annotations

import pytest
import torch

import unetpp
from unetpp import ConfigError, InputShapeError, build_model
from unetpp.models.nested import key

from ..conftest import make_tiny_model

DS_MODELS = ["unet_e", "unet+", "unet++"]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(name: str, depth: int = 3, **kw) -> unetpp.NestedUNet:
    return make_tiny_model(name, depth, **kw)


def test_list_models() -> None:
    assert unetpp.list_models() == ["unet", "wide_unet", "unet_e", "unet+", "unet++"]


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("unet", {"depth": 1}, 100_961),
        ("unet", {"depth": 2}, 465_953),
        ("unet", {"depth": 3}, 1_925_025),
        ("unet", {"depth": 4}, 7_759_521),
        ("wide_unet", {}, 9_282_246),
        ("unet_e", {}, 8_728_356),
        ("unet+", {}, 8_728_356),
        ("unet++", {}, 9_041_700),
        ("unet++", {"deep_supervision": False}, 9_041_601),
    ],
)
def test_parameter_counts_match_the_authors_block(name, kwargs, expected) -> None:
    assert n_params(build_model(name, norm=None, **kwargs)) == expected


def test_batch_norm_block_counts() -> None:
    # Each 3x3 conv drops its bias (-f) and gains BN's scale and shift (+2f): +f per conv, i.e.
    # encoder 2*(32+64+128+256+512) + decoder 2*(4*32 + 3*64 + 2*128 + 256) = 1,984 + 1,664 = 3,648.
    assert n_params(build_model("unet++", norm="batch")) == 9_041_700 + 3_648


@pytest.mark.parametrize("name", unetpp.list_models())
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("in_channels", "classes", "batch"), [(1, 1, 1), (3, 3, 2)])
def test_output_shapes(name, spatial_dims, in_channels, classes, batch) -> None:
    depth = 2 if spatial_dims == 3 else 3
    model = tiny(name, depth, in_channels=in_channels, classes=classes, spatial_dims=spatial_dims)
    size = (16,) * spatial_dims
    out = model(torch.randn(batch, in_channels, *size))
    assert isinstance(out, list)
    n_heads = depth if name in DS_MODELS else 1
    assert len(out) == n_heads
    assert all(y.shape == (batch, classes, *size) for y in out)


@pytest.mark.parametrize("name", DS_MODELS)
def test_single_head_without_deep_supervision(name) -> None:
    model = tiny(name, deep_supervision=False)
    assert list(model.heads) == ["x_0_3"]
    assert len(model(torch.randn(1, 1, 16, 16))) == 1


@pytest.mark.parametrize("name", unetpp.list_models())
@pytest.mark.parametrize("norm", [None, "batch", "instance"])
def test_every_parameter_gets_a_gradient_from_all_heads(name, norm) -> None:
    model = tiny(name, norm=norm)
    sum(y.square().mean() for y in model(torch.randn(2, 1, 16, 16))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def modules_of_head(model: unetpp.NestedUNet, d: int) -> set[str]:
    """Prefixes of the modules head d depends on, from the topology alone."""
    nodes = model.spec.ancestors((0, d))
    return (
        {f"encoder.x_{i}_0." for i in range(d + 1)}
        | {f"nodes.{key(n)}." for n in nodes}
        | {f"ups.{key(n)}." for n in nodes}
        | {f"heads.x_0_{d}."}
    )


@pytest.mark.parametrize("name", DS_MODELS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_loss_on_one_head_reaches_exactly_its_nodes(name, d) -> None:
    model = tiny(name, norm=None)
    model(torch.randn(2, 1, 16, 16))[d - 1].square().mean().backward()
    needed = modules_of_head(model, d)
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    expected = {n for n, _ in model.named_parameters() if any(n.startswith(m) for m in needed)}
    assert got == expected


@pytest.mark.parametrize("name", DS_MODELS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_head_argument_runs_only_the_needed_nodes(name, d) -> None:
    model = tiny(name).eval()
    called: set[str] = set()
    hooks = [
        m.register_forward_hook(lambda *_, n=n: called.add(n))
        for n, m in model.named_modules()
        if n.count(".") == 1 and not n.startswith("encoder.pool")
    ]
    x = torch.randn(1, 1, 16, 16)
    (y,) = model(x, head=d)
    for h in hooks:
        h.remove()
    assert called == {m.rstrip(".") for m in modules_of_head(model, d)}
    torch.testing.assert_close(y, model(x)[d - 1], rtol=0, atol=0)


def test_ensemble_is_mean_of_probabilities() -> None:
    a, b = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(unetpp.ensemble([a, b]), (a.sigmoid() + b.sigmoid()) / 2)
    c, d = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    p = unetpp.ensemble([c, d])
    torch.testing.assert_close(p, (c.softmax(1) + d.softmax(1)) / 2)
    torch.testing.assert_close(p.sum(1), torch.ones(2, 4, 4))


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 1, 97, 97), r"97×97 is not divisible by 16 .*nearest valid sizes 96×96 or 112×112; unetpp.predict pads"),
        ((1, 1, 8, 32), r"8×32 is not divisible by 16 .*nearest valid sizes 16×32;"),
        ((1, 3, 32, 32), r"takes 1 input channel\(s\), got 3"),
        ((1, 32, 32), r"expected a 4-D tensor \(B, C, H, W\), got shape \(1, 32, 32\)"),
    ],
)
def test_bad_input_tensors(shape, match) -> None:
    model = tiny("unet++", depth=4)
    with pytest.raises(InputShapeError, match=match):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "unet+++"}, r"unknown model 'unet\+\+\+'; available: unet, wide_unet, .*did you mean 'unet\+\+'"),
        ({"spatial_dims": 4}, r"spatial_dims must be 2 \(images\) or 3 \(volumes\), got 4"),
        ({"widths": (4, 8, 16)}, r"widths must be 5 positive integers for depth 4 .*got \(4, 8, 16\)"),
        ({"depth": 0}, r"depth must be an integer >= 1, got 0"),
        ({"depth": 5}, r"depth 5 needs 6 widths"),
        ({"norm": "layer"}, r"norm must be one of .*got 'layer'"),
        ({"classes": 0}, r"classes must be a positive integer, got 0"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\), got 1.5"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    args = {"name": "unet++"} | kwargs
    with pytest.raises(ConfigError, match=match):
        build_model(args.pop("name"), **args)


def test_unknown_head() -> None:
    model = tiny("unet")
    with pytest.raises(ConfigError, match=r"head=2 does not exist; this model has heads at depth \[3\]"):
        model(torch.zeros(1, 1, 16, 16), head=2)
