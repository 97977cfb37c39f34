"""The DSB 2018 score and its companions on constructed label maps, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetpp import metrics
from unetpp.metrics.instances import THRESHOLDS, instance_scores, label_components, masks_to_label_map, match_iou


def squares() -> np.ndarray:
    """Three 10x10 nuclei (100 px each) on a 40x40 image."""
    t = np.zeros((40, 40), dtype=np.int32)
    t[0:10, 0:10], t[0:10, 20:30], t[20:30, 20:30] = 1, 2, 3
    return t


def test_thresholds_are_the_competitions() -> None:
    assert THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_perfect_match_scores_one_whatever_the_ids() -> None:
    t = squares()
    permuted = np.select([t == 1, t == 2, t == 3], [7, 3, 5], 0)  # ids need not agree, nor be consecutive
    s = instance_scores(permuted, t)
    assert (s.dsb_score, s.ap50, s.precision, s.recall, s.iou, s.dice) == (1, 1, 1, 1, 1, 1)
    assert metrics.dsb_score(torch.from_numpy(permuted), t) == 1.0


def test_one_missed_nucleus() -> None:
    t = squares()
    p = np.where(t == 3, 0, t)  # TP 2, FP 0, FN 1 at every threshold
    s = instance_scores(p, t)
    assert s.dsb_score == pytest.approx(2 / 3)
    assert s.ap50 == pytest.approx(2 / 3)
    assert (s.precision, s.recall) == (1.0, pytest.approx(2 / 3))
    assert s.iou == pytest.approx(200 / 300)
    assert s.dice == pytest.approx(2 * 200 / (200 + 300))


def test_split_nucleus() -> None:
    """Nucleus 1 predicted as two halves: IoU 0.5 each, which is not > 0.5, so both are FPs and 1 is an FN."""
    t = squares()
    p = t.copy()
    p[0:10, 5:10] = 4
    assert match_iou(p, t)[0].tolist() == [0.5, 0.0, 0.0, 0.5]
    s = instance_scores(p, t)
    assert s.dsb_score == pytest.approx(2 / (2 + 2 + 1))  # TP 2, FP 2, FN 1 at every threshold
    assert (s.precision, s.recall) == (pytest.approx(2 / 4), pytest.approx(2 / 3))
    assert s.iou == 1.0  # semantically perfect


def test_partial_overlap_counts_only_up_to_its_iou() -> None:
    t = squares()
    p = np.where(t == 1, 0, t)
    p[0:10, 0:8] = 1  # IoU 80/100 = 0.8: a match at t = 0.5..0.75 (6 thresholds), not at 0.8..0.95
    expected = (6 * 1.0 + 4 * (2 / 4)) / 10  # at high t: TP 2, FP 1, FN 1
    assert metrics.dsb_score(p, t) == pytest.approx(expected)


def test_empty_image_with_and_without_predictions() -> None:
    empty = np.zeros((16, 16), dtype=np.int32)
    pred = empty.copy()
    pred[2:5, 2:5] = 1
    assert metrics.dsb_score(empty, empty) == 1.0
    assert metrics.dsb_score(pred, empty) == 0.0
    assert metrics.dsb_score(empty, squares()[:16, :16]) == 0.0


def test_set_score_is_the_mean_over_images() -> None:
    t = squares()
    missed = np.where(t == 3, 0, t)
    assert metrics.dsb_score([t, missed], [t, t]) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.ap50(np.stack([t, missed]), np.stack([t, t])) == pytest.approx((1 + 2 / 3) / 2)
    mean = metrics.mean_scores([instance_scores(t, t), instance_scores(missed, t)])
    assert mean.recall == pytest.approx((1 + 2 / 3) / 2)
    assert mean.n_true == 6
    assert mean.n_pred == 5


def test_label_components_gives_semantic_models_instances() -> None:
    t = squares()
    labels = label_components(torch.from_numpy(t > 0).float())
    assert labels.max() == 3
    assert metrics.dsb_score(labels, t) == 1.0
    touching = np.zeros((5, 5), dtype=bool)
    touching[0, 0] = touching[1, 1] = True  # diagonal neighbours: 2 objects at connectivity 1, 1 at 2
    assert label_components(touching).max() == 2
    assert label_components(touching, connectivity=2).max() == 1


def test_masks_to_label_map_gives_overlaps_to_the_higher_score() -> None:
    masks = np.zeros((2, 1, 8, 8), dtype=np.float32)
    masks[0, 0, 0:4, 0:4] = 0.9
    masks[1, 0, 2:6, 2:6] = 0.8
    labels = masks_to_label_map(masks, scores=np.array([0.3, 0.7]))
    assert labels[3, 3] == 2
    assert labels[0, 0] == 1
    assert labels[5, 5] == 2
    assert masks_to_label_map(np.zeros((0, 8, 8))).shape == (8, 8)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.dsb_score(np.zeros((4, 4), int), np.zeros((4, 5), int))
