"""Augmentation keeps shapes, dtypes and label values, moves image and mask together; normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetpp import ConfigError
from unetpp.data import build_transforms, normalize_intensity, percentile_clip, zscore
from unetpp.data.transforms import RandomRot90, RescaledGamma, TorchioAugment


def sample(spatial, classes=3):
    mask = torch.randint(0, classes, (1, *spatial))
    return {"image": mask.float().repeat(2, *(1,) * len(spatial)), "mask": mask, "id": "s"}


@pytest.mark.parametrize("strength", ["light", "full"])
@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16), (24, 16)])
def test_pipelines_keep_shapes_types_and_labels(spatial, strength) -> None:
    transform = build_transforms(len(spatial), strength)
    for _ in range(4):
        out = transform(sample(spatial))
        assert out["image"].shape == (2, *spatial)
        assert out["image"].dtype == torch.float32
        assert out["mask"].shape == (1, *spatial)
        assert out["mask"].dtype == torch.int64
        assert set(out["mask"].unique().tolist()) <= {0, 1, 2}  # nearest neighbour: no new label values
        assert out["id"] == "s"


def test_none_is_identity() -> None:
    s = sample((8, 8))
    out = build_transforms(2, "none")(s)
    assert out["image"] is s["image"]
    assert out["mask"] is s["mask"]


@pytest.mark.parametrize("spatial", [(16, 16), (8, 8, 8)])
def test_light_only_flips_and_rotates_the_mask(spatial) -> None:
    """No resampling: every draw is a permutation of the mask's pixels (the label counts stay exact)."""
    torch.manual_seed(0)
    s = sample(spatial)
    counts = torch.bincount(s["mask"].flatten(), minlength=3)
    transform = build_transforms(len(spatial), "light")
    outs = [transform(s) for _ in range(8)]
    assert all(torch.equal(torch.bincount(o["mask"].flatten(), minlength=3), counts) for o in outs)
    assert any(not torch.equal(o["mask"], s["mask"]) for o in outs)  # something happened
    assert all(o["image"].shape == (2, *spatial) and o["mask"].dtype == torch.int64 for o in outs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_spatial_transforms_move_image_and_mask_together(spatial_dims) -> None:
    import torchio as tio

    s = sample((24,) * spatial_dims, classes=2)
    flat = spatial_dims == 2
    affine = tio.RandomAffine(degrees=(0, 0, 0, 0, 20, 20) if flat else 20, scales=0, p=1)
    out = TorchioAugment(affine, spatial_dims)(RandomRot90(p=1.0)(s))
    assert not torch.equal(out["mask"], s["mask"])  # something happened
    # the image was the mask as float: after the same warp they still agree (up to interpolation at edges)
    agree = ((out["image"][0] > 0.5).long() == out["mask"][0]).float().mean()
    assert agree > 0.9


def test_2d_elastic_deformation_does_not_touch_the_dummy_axis() -> None:
    import torchio as tio

    s = sample((32, 32), classes=2)
    elastic = tio.RandomElasticDeformation(max_displacement=(3, 3, 0), p=1)
    out = TorchioAugment(elastic, 2)(s)
    assert out["image"].shape == (2, 32, 32)
    assert set(out["mask"].unique().tolist()) <= {0, 1}


def test_rescaled_gamma_keeps_the_range_of_negative_images() -> None:
    s = {"image": torch.linspace(-2, 3, 64).reshape(1, 8, 8), "mask": torch.zeros(1, 8, 8, dtype=torch.long)}
    out = RescaledGamma(log_gamma=(0.5, 0.5), p=1)(s)["image"]
    assert float(out.min()) == pytest.approx(-2)
    assert float(out.max()) == pytest.approx(3)
    assert torch.all(out[0].flatten().diff() >= 0)  # monotonic: a gamma curve, not sign(x)|x|^g


def test_build_transforms_arguments() -> None:
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        build_transforms(1)
    with pytest.raises(ConfigError, match="strength must be 'light', 'full' or 'none'"):
        build_transforms(2, "heavy")


def test_zscore_per_channel() -> None:
    image = np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 7.0)])
    out = zscore(image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(out[0].std(), 1, atol=1e-5)
    np.testing.assert_array_equal(out[1], 0)  # constant channel: zeros, no division by zero


def test_percentile_clip_tames_outliers() -> None:
    image = np.zeros((1, 100, 100), np.float32)
    image[0, :50] = 100.0
    image[0, 0, 0] = -3024.0  # CT padding value
    clipped = percentile_clip(image, 0.5, 99.5)
    assert clipped.min() == 0.0
    normalized = normalize_intensity(image, "percentile")
    np.testing.assert_allclose(np.unique(normalized), [-1, 1], atol=1e-3)
    with pytest.raises(ConfigError, match="percentiles must satisfy"):
        percentile_clip(image, 50, 10)
    with pytest.raises(ConfigError, match="normalize must be"):
        normalize_intensity(image, "minmax")
