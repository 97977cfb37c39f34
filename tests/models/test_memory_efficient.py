"""Memory-efficient training recomputes concatenations and norm + ReLU: same gradients, less stored."""

from __future__ import annotations

import copy

import pytest
import torch

import unetpp
from unetpp.config import ModelConfig
from unetpp.errors import ConfigError
from unetpp.losses import DeepSupervisionLoss, HybridLoss
from unetpp.models.blocks import ConvBlock


def _grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    x = x.clone().requires_grad_()
    heads = model(x)
    DeepSupervisionLoss(HybridLoss(), [1.0] * len(heads))(heads, y).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    grads["input"] = x.grad.clone()
    return grads


@pytest.mark.parametrize(
    ("spatial_dims", "size", "norm", "dropout"),
    [
        (2, 32, "batch", 0.0),
        (3, 16, "batch", 0.0),
        (2, 32, "instance", 0.0),
        (2, 32, None, 0.0),
        (3, 16, "instance", 0.0),
    ],
)
def test_same_gradients_as_normal_training(
    spatial_dims: int, size: int, norm: str | None, dropout: float, tiny_model
) -> None:
    torch.manual_seed(0)
    normal = tiny_model(spatial_dims=spatial_dims, norm=norm)
    efficient = copy.deepcopy(normal)
    efficient.memory_efficient = True
    x = torch.randn(3, 1, *(size,) * spatial_dims)  # 3: concatenated in uneven groups of samples (2 + 1)
    y = (torch.rand(3, 1, *(size,) * spatial_dims) > 0.5).long()
    want, got = _grads(normal, x, y), _grads(efficient, x, y)
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=k)
    # batch norm's running statistics move once per step, as in normal training
    for (k, a), (_, b) in zip(normal.named_buffers(), efficient.named_buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=k)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_an_up_sampled_output_is_rebuilt_as_forward_made_it_under_bf16_autocast(
    spatial_dims: int, tiny_model, monkeypatch
) -> None:
    """Backward runs without autocast: the up-sampler's rebuild must re-enter it (a 3D hippocampus run crashed on
    a bf16 input with float32 weights), and give the forward's tensor up to bf16 rounding (its input is rebuilt by
    a scale-and-shift, not the forward's batch-norm kernel)."""
    from unetpp.models import blocks

    made, register = [], blocks.register

    def keep(out: torch.Tensor, recipe) -> None:
        made.append((out, recipe))
        register(out, recipe)

    monkeypatch.setattr(blocks, "register", keep)
    model = tiny_model(spatial_dims=spatial_dims).train()
    model.memory_efficient = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 1, *(16,) * spatial_dims))
    up = [(out, recipe) for out, recipe in made if recipe.source is not None]
    assert up  # every up-sampling of a rebuilt node is itself rebuilt
    for out, recipe in up:
        rebuilt = recipe.rebuild()
        assert rebuilt.dtype == out.dtype == torch.bfloat16
        torch.testing.assert_close(rebuilt, out.detach(), rtol=2e-2, atol=2e-2)  # bf16: 8 bits of mantissa


def test_stores_less_for_backward() -> None:
    """Saved-for-backward bytes, as an outer hook (the plan's memory model) counts them, fall to about half."""

    def saved_bytes(model: torch.nn.Module) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sum(h.sum() for h in model(torch.randn(2, 1, 64, 64)))
        return sum(seen.values())

    torch.manual_seed(0)
    model = unetpp.build_model("unet++", depth=3, widths=(8, 16, 32, 64)).train()
    normal = saved_bytes(model)
    model.memory_efficient = True
    efficient = saved_bytes(model)
    assert 0 < efficient < 0.5 * normal


def test_option_reaches_every_block_and_not_inference(tiny_model) -> None:
    model = tiny_model(memory_efficient=True)
    blocks = [m for m in model.modules() if isinstance(m, ConvBlock)]
    assert blocks
    assert all(b.memory_efficient for b in blocks)
    x = torch.randn(1, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        on = model(x)
    model.memory_efficient = False
    with torch.no_grad():
        off = model(x)
    torch.testing.assert_close(on, off)
    assert not any(b.memory_efficient for b in blocks)
    with pytest.raises(ConfigError, match="memory_efficient"):
        model.memory_efficient = "yes"  # type: ignore[assignment]
    assert ModelConfig(memory_efficient=True).build_kwargs()["memory_efficient"] is True


def test_same_gradients_with_batch_norm_in_eval_mode(tiny_model) -> None:
    """Fine-tuning with frozen batch-norm statistics (eval mode, gradients on) recomputes from running stats."""
    torch.manual_seed(0)
    normal = tiny_model()
    _grads(normal, torch.randn(2, 1, 32, 32), torch.zeros(2, 1, 32, 32).long())  # move the running stats
    efficient = copy.deepcopy(normal)
    efficient.memory_efficient = True
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    grads = []
    for model in (normal, efficient):
        model.eval()
        model.zero_grad()
        x.grad = None
        sum(h.square().mean() for h in model(x)).backward()
        grads.append([x.grad.clone(), *(p.grad.clone() for p in model.parameters())])
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_same_gradients_on_gpu(spatial_dims: int) -> None:
    torch.manual_seed(0)
    normal = unetpp.build_model("unet++", depth=2, widths=(8, 16, 32), spatial_dims=spatial_dims).cuda()
    efficient = copy.deepcopy(normal)
    efficient.memory_efficient = True
    size = (32,) * spatial_dims
    x, y = torch.randn(2, 1, *size, device="cuda"), (torch.rand(2, 1, *size, device="cuda") > 0.5).long()
    want, got = _grads(normal, x, y), _grads(efficient, x, y)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-3, atol=1e-4, msg=k)  # cuDNN picks its own algorithms
