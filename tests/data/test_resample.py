"""Resampling to a target spacing and back: shapes, field of view, affine, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetpp.data.io import ImageMeta
from unetpp.data.resample import from_spacing_labels, resample_labels, resampled_meta, target_shape, to_spacing


def _volume() -> tuple[np.ndarray, np.ndarray, ImageMeta]:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 20, 24, 8)).astype(np.float32)
    labels = np.zeros((20, 24, 8), dtype=np.int64)
    labels[4:16, 5:19, 2:6] = 1
    labels[8:12, 9:14, 3:5] = 2
    affine = np.array([[0, -1.0, 0, 10], [1.0, 0, 0, -5], [0, 0, 3.0, 2], [0, 0, 0, 1]])  # rotated, 1x1x3 mm
    return image, labels, ImageMeta(Path("v.nii.gz"), 3, (1.0, 1.0, 3.0), affine)


def test_to_spacing_keeps_the_field_of_view_and_world_positions() -> None:
    image, labels, meta = _volume()
    out, lab, new = to_spacing(image, meta, (1.0, 1.0, 1.0), labels)
    assert out.shape == (2, 20, 24, 24)
    assert lab.shape == (20, 24, 24)
    assert new.spacing == pytest.approx((1.0, 1.0, 1.0))
    # the new grid's first voxel centre lies 1/3 of an old voxel before the old first centre along Z
    np.testing.assert_allclose(new.affine @ [0, 0, 0, 1], meta.affine @ [0, 0, -1 / 3, 1])
    np.testing.assert_allclose(new.affine @ [0, 0, 24, 1] - new.affine @ [0, 0, 0, 1], meta.affine @ [0, 0, 8, 0])


def test_round_trip_restores_shape_affine_and_labels() -> None:
    image, labels, meta = _volume()
    _, lab, new = to_spacing(image, meta, (1.0, 1.0, 1.0), labels, classes=3)
    back = from_spacing_labels(lab, labels.shape, classes=3)
    assert back.shape == labels.shape
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(resampled_meta(new, lab.shape, labels.shape).affine, meta.affine, atol=1e-12)


def test_one_hot_resampling_keeps_every_class() -> None:
    labels = np.zeros((9, 9, 9), dtype=np.int64)
    labels[4, 4, 3:6] = 2  # a thin structure
    down = resample_labels(labels, (5, 5, 5), classes=3)
    assert 2 in down


def test_target_shape() -> None:
    assert target_shape((40, 36, 12), (1.0, 1.0, 3.0), (1.0, 1.0, 1.0)) == (40, 36, 36)
    assert target_shape((10, 10), (0.5, 0.5), (1.0, 1.0)) == (5, 5)
