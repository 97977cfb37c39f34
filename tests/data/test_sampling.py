"""Patch sampler: shapes in 2D and 3D, padding, determinism per (seed, epoch), foreground oversampling rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetpp import ConfigError
from unetpp.data import ArrayDataset, PatchDataset


def dataset(shape, foreground=None):
    images = np.random.default_rng(0).integers(0, 256, (1, *shape), dtype=np.uint8)
    masks = np.zeros((1, *shape), np.uint8)
    if foreground is not None:
        masks[(0, *foreground)] = 1
    return ArrayDataset(images, masks)


def test_default_patch_sizes_are_the_papers() -> None:
    assert PatchDataset(dataset((8, 8))).patch_size == (96, 96)
    assert PatchDataset(dataset((4, 4, 4))).patch_size == (64, 64, 64)


@pytest.mark.parametrize(
    ("shape", "patch"),
    [((120, 100), (96, 96)), ((40, 50), (96, 96)), ((20, 24, 10), (16, 16, 16)), ((9, 9, 9), (4, 8, 6))],
)
def test_patch_shapes_and_padding(shape, patch) -> None:
    patches = PatchDataset(dataset(shape), patch, patches_per_image=3)
    assert len(patches) == 3
    for k in range(3):
        p = patches[k]
        assert p["image"].shape == (1, *patch)
        assert p["mask"].shape == (1, *patch)
        assert p["mask"].dtype == torch.int64
        assert len(p["origin"]) == len(patch)


def test_padding_values() -> None:
    patches = PatchDataset(dataset((10, 12), foreground=(slice(None), slice(None))), 16, pad_value=-5.0)
    p = patches[0]
    assert (p["image"][0, 10:] == -5).all()
    assert (p["image"][0, :, 12:] == -5).all()
    assert (p["mask"][0, 10:] == 0).all()
    assert (p["mask"][0, :10, :12] == 1).all()


def test_deterministic_per_seed_and_epoch() -> None:
    def origins(seed, epoch):
        patches = PatchDataset(dataset((64, 64)), 16, patches_per_image=10, seed=seed)
        patches.set_epoch(epoch)
        return [patches[i]["origin"].tolist() for i in reversed(range(10))]  # order does not matter

    assert origins(0, 0) == origins(0, 0)
    assert origins(0, 0) != origins(0, 1)
    assert origins(0, 0) != origins(1, 0)


def test_patch_matches_image_content() -> None:
    ds = dataset((40, 30))
    p = PatchDataset(ds, (8, 6), seed=2)[0]
    y, x = p["origin"].tolist()
    torch.testing.assert_close(p["image"], ds[0]["image"][:, y : y + 8, x : x + 6])


def fg_rate(fg_prob: float, n: int = 300) -> float:
    # a 2x2 nucleus in a 64x64 image: a uniform 16x16 patch contains it about 5% of the time
    patches = PatchDataset(dataset((64, 64), (slice(40, 42), slice(10, 12))), 16, fg_prob=fg_prob, patches_per_image=n)
    return sum(bool(patches[i]["mask"].any()) for i in range(n)) / n


def test_foreground_oversampling_rate() -> None:
    uniform = fg_rate(0.0)
    assert uniform < 0.12
    assert fg_rate(1.0) == 1.0
    expected = 0.33 + 0.67 * uniform
    assert abs(fg_rate(0.33) - expected) < 0.08


def test_3d_foreground_patch_contains_the_voxel() -> None:
    patches = PatchDataset(dataset((30, 30, 30), (5, 25, 14)), 8, fg_prob=1.0, patches_per_image=5)
    assert all(patches[i]["mask"].sum() == 1 for i in range(5))


def test_transform_is_applied_to_patches() -> None:
    patches = PatchDataset(dataset((32, 32)), 8, transform=lambda s: {**s, "image": s["image"] * 0})
    assert patches[0]["image"].abs().sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": (8, 8, 8)}, "patch_size must be 2 positive ints"),
        ({"patch_size": 0}, "patch_size must be 2 positive ints"),
        ({"fg_prob": 1.5}, r"fg_prob must be in \[0, 1\]"),
        ({"patches_per_image": 0}, "data.patches_per_image: got 0; expected an integer >= 1"),
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        PatchDataset(dataset((8, 8)), **kwargs)


def test_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        PatchDataset(dataset((8, 8)), 4)[1]


def test_foreground_classes_are_drawn_evenly() -> None:
    # class 1 fills a large block, class 2 a single pixel: each still gets about half of the foreground patches
    images = np.zeros((1, 64, 64), np.uint8)
    masks = np.zeros((1, 64, 64), np.uint8)
    masks[0, :32, :32] = 1
    masks[0, 60, 60] = 2
    patches = PatchDataset(ArrayDataset(images, masks, classes=3), 8, fg_prob=1.0, patches_per_image=200)
    with_small = sum(bool((patches[i]["mask"] == 2).any()) for i in range(200)) / 200
    assert 0.35 < with_small < 0.65


def test_cached_samples_are_not_shared_with_callers() -> None:
    images = np.random.default_rng(0).integers(0, 256, (1, 8, 8), dtype=np.uint8)
    ds = ArrayDataset(images, np.zeros((1, 8, 8), np.uint8), cache=True)
    ds[0]["image"].zero_()  # an in-place transform must not change what the cache holds
    assert ds[0]["image"].abs().sum() > 0
