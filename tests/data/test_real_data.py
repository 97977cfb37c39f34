"""A few items of each public data set in ../shared/data, read as their users lay them out (marked `data`)."""

from __future__ import annotations

import numpy as np
import pytest

from unetpp.data import DSB2018, ISBI2012, Decathlon, PatchDataset, read_with_meta, verify

pytestmark = pytest.mark.data


def test_isbi2012_sections(shared_data) -> None:
    ds = ISBI2012(shared_data / "isbi2012-em")
    assert len(ds) == 24
    interior = []
    for i in (0, 23):
        sample = ds[i]
        assert sample["image"].shape == sample["mask"].shape == (1, 512, 512)
        assert set(sample["mask"].unique().tolist()) == {0, 1}
        interior.append(float(sample["mask"].float().mean()))
    assert 0.7 < np.mean(interior) < 0.85  # README: 78% is 255 = cell interior


def test_isbi2012_as_stacks(shared_data, tmp_path) -> None:
    import tifffile
    from PIL import Image

    folder = shared_data / "isbi2012-em"
    for name, sub in (("train-volume.tif", "images"), ("train-labels.tif", "labels")):
        pages = np.stack([np.array(Image.open(folder / sub / f"{k:02d}.png")) for k in range(3)])
        tifffile.imwrite(tmp_path / name, pages, photometric="minisblack")
    stacks, files = ISBI2012(tmp_path), ISBI2012(folder)
    for i in range(3):
        assert np.array_equal(stacks[i]["mask"], files[i]["mask"])
        assert np.allclose(stacks[i]["image"], files[i]["image"])


def test_dsb2018_subset(shared_data) -> None:
    root = shared_data / "dsb2018" / "stage1_train"
    ids = sorted(p.name for p in root.iterdir())[:3]
    ds = DSB2018(root, ids=ids)
    for i, name in enumerate(ids):
        sample = ds[i]
        assert sample["image"].shape[0] == 3
        assert sample["image"].shape[1:] == sample["mask"].shape[1:]
        instances = ds.instances(i)
        assert instances.max() == len(list((root / name / "masks").glob("*.png")))
        assert np.array_equal(sample["mask"][0].numpy(), instances > 0)
    assert DSB2018(root, ids=ids[:1], channels="grey")[0]["image"].shape[0] == 1


def test_msd_hippocampus_volumes(shared_data) -> None:
    root = shared_data / "msd-hippocampus"
    ds = Decathlon(root)
    assert len(ds) == 220
    assert ds.classes == 3
    for i in (0, 1):
        sample = ds[i]
        assert sample["image"].ndim == 4
        assert sample["image"].shape[1:] == sample["mask"].shape[1:]
        assert set(sample["mask"].unique().tolist()) == {0, 1, 2}
    _, meta = read_with_meta(ds.items[0].image)
    assert meta.spatial_dims == 3
    assert meta.spacing == pytest.approx((1.0, 1.0, 1.0))
    patch = PatchDataset(ds, 32, fg_prob=1.0)[0]
    assert patch["image"].shape == (1, 32, 32, 32)
    assert patch["mask"].any()


@pytest.mark.parametrize(
    ("name", "folder"),
    [("isbi2012", "isbi2012-em"), ("dsb2018", "dsb2018/stage1_train"), ("msd-hippocampus", "msd-hippocampus")],
)
def test_layouts_verify_offline(shared_data, name, folder) -> None:
    assert verify(name, shared_data / folder) == shared_data / folder
