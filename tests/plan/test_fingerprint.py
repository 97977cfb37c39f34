"""Fingerprints of data sets the tests write: channels, label kinds, noisy masks, spacing, intensities, caching."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from PIL import Image

from unetpp.data import FolderPairs, write_image, write_mask
from unetpp.data.io import ImageMeta
from unetpp.plan.fingerprint import Fingerprint, fingerprint

RNG = np.random.default_rng(0)


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A binary mask with a couple of rectangles (2D or 3D)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    for _ in range(2):
        lo = [int(rng.integers(0, s // 2)) for s in shape]
        mask[tuple(slice(a, a + s // 3) for a, s in zip(lo, shape, strict=True))] = 1
    return mask


def write_set(root, kind: str, n: int = 4, shape: tuple[int, ...] = (48, 64)) -> FolderPairs:
    """images/ + masks/ of one kind: "noisy-rgb-jpeg", "rgba-grey", "rgb", "labels" or "ct"."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = _blobs(shape, i)
        grey = (RNG.integers(0, 100, shape) + 120 * mask).astype(np.uint8)
        if kind == "noisy-rgb-jpeg":
            colour = np.stack([grey, RNG.integers(0, 256, shape, dtype=np.uint8), 255 - grey])
            Image.fromarray(np.moveaxis(colour, 0, -1)).save(root / "images" / f"{i}.jpg", quality=90)
            Image.fromarray(mask * 255).save(root / "masks" / f"{i}.jpg", quality=60)  # JPEG noise near 0 and 255
        elif kind == "rgba-grey":
            write_image(root / "images" / f"{i}.png", np.stack([grey, grey, grey, np.full(shape, 255, np.uint8)]))
            write_mask(root / "masks" / f"{i}.png", mask)
        elif kind == "rgb":
            colour = np.stack([grey, RNG.integers(0, 256, shape, dtype=np.uint8), 255 - grey])
            write_image(root / "images" / f"{i}.png", colour)
            write_mask(root / "masks" / f"{i}.png", mask)
        elif kind == "labels":
            labels = mask.astype(np.int64) + (np.arange(shape[-1]) > shape[-1] // 2) * mask
            write_image(root / "images" / f"{i}.png", grey[None])
            write_mask(root / "masks" / f"{i}.png", labels)
        elif kind == "ct":
            hu = RNG.normal(-800, 50, shape) + 900.0 * mask  # air around soft tissue, in Hounsfield units
            meta = ImageMeta(root / "x.nii.gz", 3, (1.0, 1.0, 1.0))
            write_image(root / "images" / f"{i}.nii.gz", hu.astype(np.int16)[None], meta=meta)
            write_mask(root / "masks" / f"{i}.nii.gz", mask, meta=meta)
    return FolderPairs(root, classes=None, spatial_dims=len(shape))


def test_noisy_jpeg_masks_are_noisy_binary_with_the_midpoint(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path, "noisy-rgb-jpeg"), cache_dir=tmp_path / "cache")
    assert fp.label_kind == "noisy-binary"
    assert fp.mask_threshold == 127.5
    assert 0 < fp.noisy_fraction < 0.2
    assert fp.classes == (0, 1)
    assert fp.channel_kind == "rgb"
    assert fp.channels == 3
    assert fp.grey_fraction == 0.0


def test_rgba_with_grey_content(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path, "rgba-grey"), cache_dir=tmp_path / "cache")
    assert (fp.channels, fp.channel_kind, fp.grey_fraction) == (4, "grey-as-colour", 1.0)
    assert fp.label_kind == "binary-255"
    assert fp.mask_threshold is None


def test_label_map_keeps_its_classes(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path, "labels"), cache_dir=tmp_path / "cache")
    assert fp.label_kind == "label-map"
    assert fp.classes == (0, 1, 2)
    assert fp.mask_threshold is None
    assert sum(fp.class_frequencies) == pytest.approx(1.0, abs=1e-5)
    assert [o["class"] for o in fp.objects] == [1, 2]
    assert all(o["per_image"] > 0 and o["median"] > 0 for o in fp.objects)


def test_ct_volumes_are_recognised_and_intensities_are_foreground_statistics(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path, "ct", shape=(24, 20, 16)), cache_dir=tmp_path / "cache")
    assert fp.spatial_dims == 3
    assert fp.modalities == ("CT",)
    stats = fp.intensity[0]
    assert 50 < stats["mean"] < 150  # foreground is ~100 HU; the -800 HU background is left out
    assert stats["p00_5"] < stats["mean"] < stats["p99_5"]


def test_shapes_spacing_and_anisotropy(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, depth in enumerate((8, 10, 12)):
        affine = np.diag([1.0, 1.0, 3.0, 1.0])
        meta = ImageMeta(tmp_path / "x", 3, (1.0, 1.0, 3.0), affine)
        write_image(
            tmp_path / "images" / f"{i}.nii.gz", RNG.normal(size=(1, 32, 30, depth)).astype(np.float32), meta=meta
        )
        write_mask(tmp_path / "masks" / f"{i}.nii.gz", _blobs((32, 30, depth), i), meta=meta)
    fp = fingerprint(FolderPairs(tmp_path, classes=None, spatial_dims=3), cache_dir=tmp_path / "cache")
    assert fp.median_shape == (32, 30, 10)
    assert fp.min_shape == (32, 30, 8)
    assert fp.max_shape == (32, 30, 12)
    assert fp.median_spacing == (1.0, 1.0, 3.0)
    assert fp.anisotropy == 3.0


def test_to_dict_round_trip(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path, "labels"), cache_dir=tmp_path / "cache")
    assert Fingerprint.from_dict(fp.to_dict()) == fp


def test_cache_is_used_and_invalidated_by_a_changed_file(tmp_path, monkeypatch) -> None:
    mod = importlib.import_module("unetpp.plan.fingerprint")  # the package exports a function of that name

    ds = write_set(tmp_path / "d", "rgba-grey")
    first = fingerprint(ds, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached fingerprint should have been used")

    monkeypatch.setattr(mod, "read_with_meta", no_reading)
    assert fingerprint(ds, cache_dir=tmp_path / "cache") == first
    monkeypatch.undo()
    mask = ds.items[0].mask
    write_mask(mask, np.zeros((48, 64), dtype=np.uint8), overwrite=True)  # size or mtime changes the key
    second = fingerprint(ds, cache_dir=tmp_path / "cache")
    assert second.key != first.key
    assert second.class_frequencies != first.class_frequencies


def test_sampling_bounds_the_items_read(tmp_path) -> None:
    fp = fingerprint(write_set(tmp_path, "rgba-grey", n=6), max_items=3, cache_dir=tmp_path / "cache")
    assert (fp.n_items, fp.n_sampled, fp.ids) == (6, 3, ("0", "2", "5"))


def test_list_of_paths_is_a_source(tmp_path) -> None:
    ds = write_set(tmp_path, "rgba-grey")
    fp = fingerprint([(i.image, i.mask) for i in ds.items], cache_dir=tmp_path / "cache")
    assert fp.n_items == 4
    assert fp.channel_kind == "grey-as-colour"


def test_class_ids_keep_a_compact_integer_mask_and_threshold_to_uint8() -> None:
    from unetpp.plan.labels import class_ids

    mask = np.array([[0, 2], [1, 2]], np.uint8)
    assert class_ids(mask, None) is mask
    np.testing.assert_array_equal(class_ids(np.array([[0.0, 2.0]]), None), [[0, 2]])
    thresholded = class_ids(np.array([[10, 200]], np.uint8), 127.5)
    assert thresholded.dtype == np.uint8
    np.testing.assert_array_equal(thresholded, [[0, 1]])
