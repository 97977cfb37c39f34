"""Loss values against hand-computed numbers on 2×2 and 2×2×2 tensors, plus the error cases."""

from __future__ import annotations

import math

import pytest
import torch

from unetpp.errors import ConfigError, InputShapeError
from unetpp.losses import DeepSupervisionLoss, HybridLoss, SoftDiceLoss

LN2 = math.log(2)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# --- hand-computed values --------------------------------------------------------------------------
# Zero logits give p = 0.5 everywhere (sigmoid and 2-class softmax alike), so the sums are easy:
# Dice = 2 * sum(p * y) / (sum(p) + sum(y)) and BCE = CE = ln 2.


@pytest.mark.parametrize(
    ("target", "dice"),
    [
        (t([[[[1, 0], [0, 0]]]]), 2 * 0.5 / (2 + 1)),  # 2D: 1/3
        (t([[[[[1, 0], [0, 0]], [[0, 0], [0, 0]]]]]), 2 * 0.5 / (4 + 1)),  # 3D: 1/5
        (t([[[[1, 1], [1, 1]]]]), 2 * 2 / (2 + 4)),  # 2/3
    ],
)
def test_binary_values_by_hand(target, dice) -> None:
    logits = torch.zeros_like(target)
    assert SoftDiceLoss(smooth=0)(logits, target).item() == pytest.approx(1 - dice)
    assert HybridLoss(smooth=0)(logits, target).item() == pytest.approx(0.5 * LN2 + 1 - dice)
    assert HybridLoss(1.0, 1.0, smooth=0)(logits, target).item() == pytest.approx(LN2 + 1 - dice)
    assert HybridLoss(1.0, 0.0)(logits, target).item() == pytest.approx(LN2)


@pytest.mark.parametrize("layout", ["label_map", "label_map_no_channel", "one_hot"])
def test_multiclass_values_by_hand(layout) -> None:
    labels = torch.tensor([[[[0, 1], [1, 1]]]])  # (1, 1, 2, 2)
    target = {
        "label_map": labels,
        "label_map_no_channel": labels[:, 0],
        "one_hot": torch.cat([labels == 0, labels == 1], dim=1).float(),
    }[layout]
    logits = torch.zeros(1, 2, 2, 2)
    # class 0: 2*0.5 / (2 + 1) = 1/3; class 1: 2*1.5 / (2 + 3) = 3/5
    assert SoftDiceLoss(smooth=0)(logits, target).item() == pytest.approx(1 - (1 / 3 + 3 / 5) / 2)
    assert SoftDiceLoss(smooth=0, include_background=False)(logits, target).item() == pytest.approx(1 - 3 / 5)
    assert HybridLoss(1.0, 0.0)(logits, target).item() == pytest.approx(LN2)


def test_batch_dice_pools_over_the_batch() -> None:
    # image 0: predicts 2 of 4 foreground pixels (Dice 2/3); image 1: empty target, one false positive (Dice ~0)
    pred = t([[[[1, 1], [0, 0]]], [[[1, 0], [0, 0]]]])
    target = t([[[[1, 1], [1, 1]]], [[[0, 0], [0, 0]]]])
    logits = 30 * (2 * pred - 1)
    assert SoftDiceLoss(smooth=0)(logits, target).item() == pytest.approx(1 - (2 / 3 + 0) / 2, abs=1e-6)
    assert SoftDiceLoss(smooth=0, batch_dice=True)(logits, target).item() == pytest.approx(1 - 4 / 7, abs=1e-6)


def test_empty_target_and_empty_prediction_cost_nothing() -> None:
    loss = SoftDiceLoss()(torch.full((1, 1, 2, 2), -30.0), torch.zeros(1, 1, 2, 2))
    assert loss.item() == pytest.approx(0, abs=1e-4)


@pytest.mark.parametrize("spatial", [(2, 2), (2, 2, 2)])
@pytest.mark.parametrize("classes", [1, 3])
def test_perfect_prediction_gives_dice_loss_near_zero(spatial, classes, rng) -> None:
    if classes == 1:
        target = (torch.rand(2, 1, *spatial, generator=rng) > 0.5).float()
        logits = 30 * (2 * target - 1)
    else:
        labels = torch.randint(0, classes, (2, 1, *spatial), generator=rng)
        target = labels
        logits = 30 * torch.cat([labels == c for c in range(classes)], dim=1).float()
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(0, abs=1e-4)
    assert HybridLoss()(logits, target).item() == pytest.approx(0, abs=1e-4)


@pytest.mark.parametrize("spatial", [(4, 4), (2, 4, 4)])
@pytest.mark.parametrize("classes", [1, 3])
def test_hybrid_loss_is_non_negative_and_gradients_reach_logits(spatial, classes, rng) -> None:
    logits = torch.randn(2, classes, *spatial, generator=rng, requires_grad=True)
    if classes == 1:
        target = (torch.rand(2, 1, *spatial, generator=rng) > 0.5).float()
    else:
        target = torch.randint(0, classes, (2, 1, *spatial), generator=rng)
    loss = HybridLoss()(logits, target)
    assert loss.item() >= 0
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


# --- deep supervision ------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [[1, 1, 1], [0.5, 0, 2], [0, 0, 1]])
def test_deep_supervision_equals_the_hand_weighted_sum(weights, rng) -> None:
    heads = [torch.randn(2, 1, 2, 2, generator=rng) for _ in weights]
    target = (torch.rand(2, 1, 2, 2, generator=rng) > 0.5).float()
    base = HybridLoss()
    ds = DeepSupervisionLoss(base, weights)
    expected = sum(w * base(h, target) for w, h in zip(weights, heads, strict=True))
    assert ds(heads, target).item() == pytest.approx(expected.item())
    total, per_head = ds.per_head(heads, target)
    assert total.item() == pytest.approx(expected.item())
    assert per_head.tolist() == pytest.approx([base(h, target).item() for h in heads])


@pytest.mark.parametrize("classes", [1, 3])
def test_deep_supervision_prepares_the_target_once_per_step(classes, rng, monkeypatch) -> None:
    import unetpp.losses as losses

    calls = []
    original = losses.prepare_target
    monkeypatch.setattr(losses, "prepare_target", lambda *a: calls.append(1) or original(*a))
    heads = [torch.randn(2, classes, 4, 4, generator=rng) for _ in range(4)]
    target = torch.randint(0, 2 if classes == 1 else classes, (2, 1, 4, 4), generator=rng)
    target = target.float() if classes == 1 else target
    ds = DeepSupervisionLoss(HybridLoss(), [1, 1, 1, 1])
    total, per_head = ds.per_head(heads, target)
    assert len(calls) == 1  # not once per head
    monkeypatch.setattr(losses, "prepare_target", original)
    assert per_head.tolist() == pytest.approx([HybridLoss()(h, target).item() for h in heads])
    # a loss without from_prepared (any nn.Module) still gets the raw target, once per head
    mse = DeepSupervisionLoss(torch.nn.MSELoss(), [1, 1])
    assert mse(heads[:2], heads[0]).item() == pytest.approx(torch.nn.MSELoss()(heads[1], heads[0]).item())


def test_zero_weight_heads_get_no_gradient_but_are_logged(rng) -> None:
    heads = [torch.randn(1, 1, 2, 2, generator=rng, requires_grad=True) for _ in range(2)]
    target = torch.ones(1, 1, 2, 2)
    total, per_head = DeepSupervisionLoss(HybridLoss(), [0, 1]).per_head(heads, target)
    total.backward()
    assert heads[0].grad is None
    assert heads[1].grad is not None
    assert per_head[0] > 0


@pytest.mark.parametrize(
    ("weights", "match"),
    [([], "empty"), ([0, 0], "all zero"), ([1, -1], ">= 0"), ([1, math.nan], ">= 0")],
)
def test_bad_weights_raise_at_construction(weights, match) -> None:
    with pytest.raises(ConfigError, match=match):
        DeepSupervisionLoss(HybridLoss(), weights)


def test_head_count_mismatch_names_both_lengths() -> None:
    ds = DeepSupervisionLoss(HybridLoss(), [1, 1, 1, 1])
    with pytest.raises(ConfigError, match=r"got 2 head output\(s\) but 4 weight\(s\)"):
        ds([torch.zeros(1, 1, 2, 2)] * 2, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="list of head logits"):
        ds(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize(("bce", "dice", "match"), [(0, 0, "both 0"), (-1, 1, "bce_weight"), (1, math.inf, "dice")])
def test_bad_hybrid_weights_raise(bce, dice, match) -> None:
    with pytest.raises(ConfigError, match=match):
        HybridLoss(bce, dice)


# --- target errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logits_shape", "target_shape"),
    [((2, 1, 4, 4), (2, 1, 4, 5)), ((2, 3, 4, 4), (2, 2, 4, 4)), ((2, 3, 2, 4, 4), (2, 1, 4, 4))],
)
def test_shape_mismatch_names_both_shapes(logits_shape, target_shape) -> None:
    target = torch.zeros(target_shape, dtype=torch.long if logits_shape[1] > 1 else torch.float32)
    with pytest.raises(InputShapeError) as info:
        HybridLoss()(torch.zeros(logits_shape), target)
    assert str(tuple(logits_shape)) in str(info.value)
    assert str(tuple(target_shape)) in str(info.value)


@pytest.mark.parametrize(("bad", "shown"), [(3, "class id 3"), (-1, "class id -1")])
def test_out_of_range_class_id_names_value_and_range(bad, shown) -> None:
    labels = torch.tensor([[[[0, 1], [2, bad]]]])
    with pytest.raises(ConfigError, match=f"{shown}, outside the valid range 0..2"):
        HybridLoss()(torch.zeros(1, 3, 2, 2), labels)


def test_non_integer_label_map_and_0_255_binary_mask_raise() -> None:
    with pytest.raises(ConfigError, match="non-integer"):
        SoftDiceLoss()(torch.zeros(1, 3, 2, 2), torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ConfigError, match="255"):
        HybridLoss()(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 255.0))


def test_float_label_map_with_integer_values_is_accepted() -> None:
    labels = torch.tensor([[[[0, 1], [1, 1]]]])
    logits = torch.zeros(1, 2, 2, 2)
    assert HybridLoss()(logits, labels.float()).item() == pytest.approx(HybridLoss()(logits, labels).item())
