"""Metric values against hand-computed numbers, the empty-mask conventions, and the error cases."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from unetpp.errors import ConfigError, InputShapeError
from unetpp.metrics import (
    by_object_size,
    dice,
    hd95,
    iou,
    masks_from_logits,
    object_scores,
    one_hot,
    pooled_dice,
    pooled_iou,
)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def m(values) -> torch.Tensor:
    """A bool mask (1, 1, *spatial) from nested lists."""
    return torch.tensor(values, dtype=torch.bool)[None, None]


# --- IoU and Dice ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "target", "expected_iou", "expected_dice"),
    [
        (m([[1, 1], [0, 0]]), m([[1, 0], [1, 0]]), 1 / 3, 2 / 4),
        (m([[1, 1], [1, 0]]), m([[1, 1], [0, 0]]), 2 / 3, 4 / 5),
        (m([[[1, 1], [0, 0]], [[1, 0], [0, 0]]]), m([[[1, 0], [0, 0]], [[1, 0], [0, 1]]]), 2 / 4, 4 / 6),  # 3D
    ],
)
def test_iou_and_dice_by_hand(pred, target, expected_iou, expected_dice) -> None:
    assert iou(pred, target).item() == pytest.approx(expected_iou)
    assert dice(pred, target).item() == pytest.approx(expected_dice)
    assert iou(pred.long(), target.float()).item() == pytest.approx(expected_iou)  # dtypes don't matter


def test_probabilities_are_thresholded() -> None:
    probs = torch.tensor([[[[0.9, 0.6], [0.4, 0.1]]]])
    target = m([[1, 0], [0, 0]])
    assert iou(probs, target).item() == pytest.approx(1 / 2)
    assert iou(probs, target, threshold=0.7).item() == pytest.approx(1.0)


@pytest.mark.parametrize("spatial", [(8, 8), (4, 4, 4)])
def test_dice_equals_2iou_over_1_plus_iou_per_image(spatial, rng) -> None:
    pred = torch.rand(4, 3, *spatial, generator=rng) > 0.6
    target = torch.rand(4, 3, *spatial, generator=rng) > 0.6
    pred[0, 0], target[0, 0] = False, False  # one empty pair, to cover the convention too
    j = iou(pred, target)
    assert j.shape == (4, 3)
    torch.testing.assert_close(dice(pred, target), 2 * j / (1 + j))


@pytest.mark.parametrize("func", [iou, dice])
def test_empty_mask_conventions(func) -> None:
    empty, full = m([[0, 0], [0, 0]]), m([[0, 1], [0, 0]])
    assert func(empty, empty).item() == 1.0  # nothing to find, nothing found
    assert func(full, empty).item() == 0.0  # false positive on an empty image
    assert func(empty, full).item() == 0.0  # missed object


def test_multiclass_from_label_maps_and_background_option() -> None:
    target = one_hot(torch.tensor([[[[0, 1], [2, 2]]]]), 3)
    pred = one_hot(torch.tensor([[[[0, 1], [1, 2]]]]), 3)
    # class 0: 1/1; class 1: 1/2; class 2: 1/2
    torch.testing.assert_close(iou(pred, target), torch.tensor([[1.0, 0.5, 0.5]]))
    torch.testing.assert_close(iou(pred, target, include_background=False), torch.tensor([[0.5, 0.5]]))
    logits = torch.tensor([[[[5.0, 0], [0, 0]], [[0, 5], [5, 0]], [[0, 0], [0, 5]]]])
    assert torch.equal(masks_from_logits(logits), pred)
    assert torch.equal(masks_from_logits(torch.tensor([[[[1.0, -1.0]]]])), m([[1, 0]]))


def test_pooled_sums_counts_over_the_set_before_dividing() -> None:
    pred = torch.cat([m([[1, 1], [1, 1]]), m([[1, 0], [0, 0]])])
    target = torch.cat([m([[1, 1], [1, 0]]), m([[0, 0], [0, 1]])])
    # image 0: inter 3, union 4; image 1: inter 0, union 2 -> pooled 3/6, mean of images 3/8
    assert pooled_iou(pred, target).tolist() == pytest.approx([3 / 6])
    assert iou(pred, target).mean().item() == pytest.approx(3 / 8)
    # dice: 2*3 / (5 + 4)
    assert pooled_dice(pred, target).tolist() == pytest.approx([6 / 9])
    # images of different sizes come as a list and pool the same way
    big_pred, big_target = torch.zeros(1, 1, 4, 4, dtype=torch.bool), torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    big_pred[..., 0, 0] = big_target[..., 0, 0] = True
    assert pooled_iou([pred, big_pred], [target, big_target]).tolist() == pytest.approx([4 / 7])
    assert pooled_iou(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)).tolist() == [1.0]


# --- HD95 -------------------------------------------------------------------------------------------


def point(shape, where) -> torch.Tensor:
    x = torch.zeros(1, 1, *shape, dtype=torch.bool)
    x[(0, 0, *where)] = True
    return x


@pytest.mark.parametrize(
    ("pred", "target", "spacing", "expected"),
    [
        (point((4, 4), (0, 0)), point((4, 4), (3, 0)), None, 3.0),
        (point((4, 4), (0, 0)), point((4, 4), (3, 0)), (2.0, 1.0), 6.0),
        (point((4, 4), (0, 0)), point((4, 4), (3, 4 - 1)), 0.5, 0.5 * math.hypot(3, 3)),
        (point((2, 2, 2), (0, 0, 0)), point((2, 2, 2), (1, 1, 1)), (1.0, 2.0, 2.0), 3.0),
    ],
)
def test_hd95_by_hand_in_physical_units(pred, target, spacing, expected) -> None:
    out = hd95(pred, target, spacing=spacing)
    assert out.shape == (1, 1)
    assert out.dtype == torch.float64
    assert out.item() == pytest.approx(expected)


def test_hd95_empty_mask_conventions() -> None:
    empty, some = torch.zeros(1, 1, 4, 4, dtype=torch.bool), point((4, 4), (1, 1))
    assert math.isnan(hd95(empty, empty).item())
    assert hd95(some, empty).item() == math.inf
    assert hd95(empty, some).item() == math.inf


def test_hd95_bad_spacing_raises() -> None:
    with pytest.raises(ConfigError, match="2 positive number"):
        hd95(point((4, 4), (0, 0)), point((4, 4), (0, 0)), spacing=(1.0, 1.0, 1.0))


# --- by object size ---------------------------------------------------------------------------------


def test_object_scores_and_bins_by_hand() -> None:
    target = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    target[0, 0, :2, :2] = True  # object A, 4 px
    target[0, 0, 5, 5] = True  # object B, 1 px, missed
    pred = torch.zeros_like(target)
    pred[0, 0, :2, :2] = True
    pred[0, 0, 2, 0] = True  # A's predicted blob has one extra pixel: 5 px
    pred[0, 0, 0, 5] = True  # a false positive touching no object: not counted
    scores = object_scores(pred, target)
    assert scores.size.tolist() == [4, 1]
    assert scores.iou.tolist() == pytest.approx([4 / 5, 0])
    assert scores.dice.tolist() == pytest.approx([8 / 9, 0])
    bins = by_object_size(scores, [0, 2, 10, math.inf])
    assert [(b.low, b.high, b.count) for b in bins] == [(0, 2, 1), (2, 10, 1), (10, math.inf, 0)]
    assert (bins[0].iou, bins[1].iou, bins[1].dice) == pytest.approx((0.0, 0.8, 8 / 9))
    assert math.isnan(bins[2].iou)
    assert math.isnan(bins[2].dice)
    assert by_object_size([scores, scores], [0, math.inf])[0].count == 4  # a data set is a list of scores


def test_a_blob_merging_two_objects_lowers_both() -> None:
    target = m([[1, 0, 1]])
    pred = m([[1, 1, 1]])
    assert object_scores(pred, target).iou.tolist() == pytest.approx([1 / 3, 1 / 3])


def test_object_connectivity_and_spacing() -> None:
    target = m([[1, 0], [0, 1]])  # diagonal neighbours
    assert len(object_scores(target, target).size) == 2
    assert object_scores(target, target, connectivity=2).size.tolist() == [2]
    volume = torch.ones(1, 1, 2, 2, 2, dtype=torch.bool)
    assert object_scores(volume, volume, spacing=(1.0, 0.5, 0.5)).size.tolist() == [2.0]


@pytest.mark.parametrize("bins", [[5], [0, 10, 10], [3, 1]])
def test_bad_bins_raise(bins) -> None:
    with pytest.raises(ConfigError, match="strictly increasing"):
        by_object_size(object_scores(m([[1]]), m([[1]])), bins)


# --- errors and imports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "func", [iou, dice, hd95, object_scores, lambda p, t: pooled_iou([p], [t])], ids=lambda f: f.__name__
)
def test_shape_mismatch_names_both_shapes(func) -> None:
    with pytest.raises(InputShapeError, match=r"\(2, 1, 4, 4\).*\(2, 1, 4, 5\)"):
        func(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))


def test_one_hot_rejects_out_of_range_ids_and_missing_channel_axis() -> None:
    with pytest.raises(ConfigError, match=r"class id 3, outside the valid range 0\.\.2"):
        one_hot(torch.tensor([[[[0, 3]]]]), 3)
    with pytest.raises(InputShapeError, match=r"\(B, 1, \*spatial\)"):
        one_hot(torch.zeros(2, 4, 4, dtype=torch.long), 3)


def test_importing_metrics_needs_only_torch() -> None:
    code = "import sys, unetpp.metrics; print(sorted({'scipy', 'medpy', 'monai'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
