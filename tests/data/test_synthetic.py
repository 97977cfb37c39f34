"""The embedded demo data: deterministic, fast, realistic class balance, written as a paired folder."""

from __future__ import annotations

import time

import numpy as np
import pytest

from unetpp import ConfigError, DataError
from unetpp.data import FolderPairs, make_synthetic_em, write_synthetic_dataset


def test_deterministic_and_prefix_stable() -> None:
    images, masks = make_synthetic_em(3, size=64, seed=5)
    again, again_masks = make_synthetic_em(3, size=64, seed=5)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(masks, again_masks)
    first, _ = make_synthetic_em(1, size=64, seed=5)
    np.testing.assert_array_equal(first[0], images[0])  # image k does not depend on how many are made
    other, _ = make_synthetic_em(1, size=64, seed=6)
    assert not np.array_equal(other[0], images[0])


def test_types_and_realistic_classes() -> None:
    images, masks = make_synthetic_em(4, size=256, seed=0)
    assert images.shape == masks.shape == (4, 256, 256)
    assert images.dtype == masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) == {0, 1}
    interior = masks.mean(axis=(1, 2))
    assert np.all((interior > 0.70) & (interior < 0.85)), interior  # ISBI: 78% cell interior
    # membranes are darker than cell interiors, with overlap (noise, organelles): not a trivial threshold
    membrane, inside = images[masks == 0].astype(float), images[masks == 1].astype(float)
    assert membrane.mean() + 40 < inside.mean()
    assert np.percentile(membrane, 95) > np.percentile(inside, 5)
    assert images.std() > 20


def test_fast() -> None:
    make_synthetic_em(1, size=64)  # warm up SciPy's import
    start = time.perf_counter()
    make_synthetic_em(20, size=256)
    assert time.perf_counter() - start < 2.0


def test_written_as_paired_folder(tmp_path) -> None:
    root = write_synthetic_dataset(tmp_path / "demo", n_images=3, size=64)
    ds = FolderPairs(root)
    assert ds.ids == ["000", "001", "002"]
    _, masks = make_synthetic_em(3, size=64)
    np.testing.assert_array_equal(ds[2]["mask"][0].numpy(), masks[2])
    with pytest.raises(DataError, match=r"demo/images: folder is not empty"):
        write_synthetic_dataset(root, n_images=3, size=64)
    write_synthetic_dataset(root, n_images=3, size=64, seed=1, overwrite=True)


@pytest.mark.parametrize(("kwargs", "message"), [({"n_images": 0}, "n_images"), ({"n_images": 1, "size": 16}, "size")])
def test_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_synthetic_em(**kwargs)
