"""Readers and writers: every format round-trips, and every bad file raises DataError naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unetpp import DataError
from unetpp.data import ImageMeta, read_image, read_mask, read_with_meta, write_image, write_mask
from unetpp.data.mask_values import value_counts

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (1, 12, 10), dtype=np.uint8)
RGB = RNG.integers(0, 256, (3, 12, 10), dtype=np.uint8)
VOLUME = RNG.normal(size=(1, 5, 6, 7)).astype(np.float32)
BINARY = (RNG.random((12, 10)) > 0.5).astype(np.int64)
LABELS = RNG.integers(0, 3, (5, 6, 7)).astype(np.int64)


@pytest.mark.parametrize(
    ("name", "image", "spatial_dims"),
    [
        ("a.png", GREY, 2),
        ("a.png", RGB, 2),
        ("a.bmp", RGB, 2),
        ("a.tif", GREY, 2),
        ("a.tif", RGB, 2),
        ("stack.tif", (VOLUME * 10).astype(np.int16), 3),
        ("stack3.tif", RGB[None], 3),  # a 3-page stack must not be mistaken for RGB
        ("a.nii.gz", VOLUME, 3),
        ("a.nii", GREY, 2),
        ("a.npy", VOLUME, 3),
        ("a.npy", GREY, 2),
    ],
)
def test_image_round_trip(tmp_path, name, image, spatial_dims) -> None:
    path = write_image(tmp_path / name, image)
    out, meta = read_with_meta(path)
    assert meta.spatial_dims == spatial_dims
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, image)


def test_jpeg_is_read_channel_first(tmp_path) -> None:
    out = read_image(write_image(tmp_path / "a.jpg", RGB))
    assert out.shape == RGB.shape
    assert out.dtype == np.uint8


def test_multichannel_npy_needs_spatial_dims(tmp_path) -> None:
    path = write_image(tmp_path / "rgb.npy", RGB)
    np.testing.assert_array_equal(read_image(path, spatial_dims=2), RGB)
    assert read_image(path).shape == (1, *RGB.shape)  # without it, a 3-D array is a grey volume


def test_nifti_keeps_affine_and_spacing(tmp_path) -> None:
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [10, -4, 3]
    path = write_image(tmp_path / "v.nii.gz", VOLUME, meta=ImageMeta(tmp_path, 3, (0.5, 0.7, 2.0), affine))
    out, meta = read_with_meta(path)
    np.testing.assert_allclose(meta.affine, affine)
    assert meta.spacing == pytest.approx((0.5, 0.7, 2.0))
    # writing it back with the meta keeps the geometry
    _, meta2 = read_with_meta(write_image(tmp_path / "w.nii.gz", out, meta=meta))
    np.testing.assert_allclose(meta2.affine, affine)


def test_nifti_with_channels_last_is_read_channel_first(tmp_path) -> None:
    import nibabel as nib

    data = RNG.normal(size=(4, 5, 6, 2)).astype(np.float32)  # (X, Y, Z, modalities), as MSD stores it
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "m.nii.gz")
    out = read_image(tmp_path / "m.nii.gz")
    assert out.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(out[1], data[..., 1])


def test_multipage_tiff_is_a_stack(tmp_path) -> None:
    import tifffile

    pages = RNG.integers(0, 256, (4, 8, 9), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "train-volume.tif", pages, photometric="minisblack")  # ISBI: a section per page
    out = read_image(tmp_path / "train-volume.tif")
    assert out.shape == (1, 4, 8, 9)
    np.testing.assert_array_equal(out[0], pages)


@pytest.mark.parametrize("name", ["m.png", "m.tif", "m.nii.gz", "m.npy"])
def test_binary_mask_round_trip(tmp_path, name) -> None:
    out = read_mask(write_mask(tmp_path / name, BINARY), label_count=2)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, BINARY)


@pytest.mark.parametrize(("dtype", "stored"), [(bool, 255), (np.uint8, 255), (np.uint8, 1), (bool, 1)])
def test_a_binary_mask_in_a_smaller_type_holds_the_same_ids(tmp_path, dtype, stored) -> None:
    path = tmp_path / "m.png"
    Image.fromarray((BINARY * stored).astype(np.uint8)).save(path)
    out = read_mask(path, label_count=2, dtype=dtype)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, read_mask(path, label_count=2))


@pytest.mark.parametrize(("dtype", "label_count"), [(np.uint8, None), (bool, 3), (np.uint8, 300), (np.float32, 2)])
def test_a_type_that_cannot_hold_the_ids_is_refused(tmp_path, dtype, label_count) -> None:
    path = write_mask(tmp_path / "m.png", BINARY)
    with pytest.raises(ValueError, match="cannot hold class ids"):
        read_mask(path, label_count=label_count, dtype=dtype)


def test_binary_mask_is_stored_as_0_255_in_png(tmp_path) -> None:
    path = write_mask(tmp_path / "m.png", BINARY)
    assert set(np.unique(np.array(Image.open(path))).tolist()) == {0, 255}


@pytest.mark.parametrize("name", ["l.nii.gz", "l.npy", "l.tif"])
def test_label_map_round_trip(tmp_path, name) -> None:
    out = read_mask(write_mask(tmp_path / name, LABELS), spatial_dims=3, label_count=3)
    np.testing.assert_array_equal(out, LABELS)


def test_255_means_foreground(tmp_path) -> None:
    Image.fromarray((BINARY * 255).astype(np.uint8)).save(tmp_path / "isbi.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "isbi.png"), BINARY)


def test_equal_rgb_channels_collapse(tmp_path) -> None:
    grey = (BINARY * 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb_mask.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1)).save(tmp_path / "rgba_mask.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb_mask.png"), BINARY)
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba_mask.png"), BINARY)


def test_palette_mask_keeps_indices(tmp_path) -> None:
    img = Image.fromarray(LABELS[0].astype(np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "voc.png", label_count=3), LABELS[0])


def test_write_refuses_to_overwrite(tmp_path) -> None:
    path = write_image(tmp_path / "a.png", GREY)
    with pytest.raises(DataError, match=r"a\.png: file exists; pass --overwrite"):
        write_image(path, RGB)
    write_image(path, RGB, overwrite=True)
    np.testing.assert_array_equal(read_image(path), RGB)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left behind


def test_failed_write_leaves_nothing(tmp_path) -> None:
    with pytest.raises(DataError, match="uint8"):
        write_image(tmp_path / "f.png", VOLUME[:, 0])  # float32 is not a PNG type
    assert list(tmp_path.iterdir()) == []


def test_jpeg_masks_are_refused(tmp_path) -> None:
    with pytest.raises(DataError, match=r"m\.jpg: JPEG is lossy"):
        write_mask(tmp_path / "m.jpg", BINARY)


# ------------------------------------------------------------------------------------------ bad input


def _truncated_png(path):
    Image.fromarray(GREY[0]).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _nan_image(path):
    image = VOLUME.copy()
    image[0, 1, 2, 3] = np.nan
    image[0, 0, 0, 0] = np.inf
    np.save(path, image)
    return path


def _bytes(data: bytes):
    def make(path):
        path.write_bytes(data)
        return path

    return make


def _pickled(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


BAD_IMAGES = {
    "missing.png": (lambda p: p, "no such file"),
    "notes.txt": (_bytes(b"hello"), "unknown file type '.txt'"),
    "truncated.png": (_truncated_png, "not a readable image"),
    "garbage.png": (_bytes(b"\x89PNG not really"), "not a readable image"),
    "garbage.tif": (_bytes(b"II*\x00 broken"), "not a readable TIFF"),
    "garbage.nii.gz": (_bytes(b"\x1f\x8b\x08 broken gzip"), "not a readable NIfTI"),
    "pickled.npy": (_pickled, "not a readable .npy"),
    "nan.npy": (_nan_image, "1 NaN and 1 Inf values"),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_image_raises_data_error_naming_file(tmp_path, name) -> None:
    make, message = BAD_IMAGES[name]
    path = make(tmp_path / name)
    with pytest.raises(DataError, match=rf"{name.replace('.', r'[.]')}: .*{message}".replace("(", r"\(")):
        read_image(path)


def test_truncated_nifti(tmp_path) -> None:
    path = write_image(tmp_path / "cut.nii.gz", VOLUME)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"cut\.nii\.gz: not a readable NIfTI"):
        read_image(path)


@pytest.mark.parametrize(
    ("name", "spatial_dims", "message"),
    [
        ("flat.png", 3, "is 2-D .* but a 3-D image is expected"),
        ("vol.nii.gz", 2, "is 3-D .* but a 2-D image is expected"),
        ("stack.tif", 2, "is a stack of 5 pages but a 2-D image is expected"),
        ("five.npy", 3, r"array of shape \(1, 2, 3, 4, 5\) is neither 3-D nor channel-first"),
    ],
)
def test_wrong_dimensionality(tmp_path, name, spatial_dims, message) -> None:
    path = tmp_path / name
    if name == "flat.png":
        write_image(path, GREY)
    elif name == "five.npy":
        np.save(path, np.zeros((1, 2, 3, 4, 5), np.float32))
    else:
        write_image(path, (VOLUME * 0).astype(np.uint8) if name.endswith("tif") else VOLUME)
    with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')}: {message}"):
        read_image(path, spatial_dims=spatial_dims)


def test_nifti_with_too_many_dims(tmp_path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 5, 6), np.float32), np.eye(4)), tmp_path / "5d.nii.gz")
    with pytest.raises(DataError, match=r"5d\.nii\.gz: NIfTI array has shape \(2, 3, 4, 5, 6\)"):
        read_image(tmp_path / "5d.nii.gz")


def test_three_channel_mask_is_refused(tmp_path) -> None:
    colours = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(colours).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match=r"colour\.png: mask has 3 channels with different values"):
        read_mask(tmp_path / "colour.png")


def test_antialiased_mask_names_its_values(tmp_path) -> None:
    values = np.array([[0, 128, 255], [255, 0, 0]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "soft.png")
    with pytest.raises(DataError, match=r"soft\.png: mask values \{0, 128, 255\} are not binary"):
        read_mask(tmp_path / "soft.png", label_count=2)


def test_out_of_range_class_id(tmp_path) -> None:
    path = write_mask(tmp_path / "lab.nii.gz", np.array([[[0, 1], [2, 5]]]))
    with pytest.raises(DataError, match=r"lab\.nii\.gz: mask has class ids \{5\} >= label_count=3"):
        read_mask(path, label_count=3)
    assert read_mask(path).max() == 5  # without label_count any non-negative id is accepted


@pytest.mark.parametrize(
    ("values", "message"),
    [(np.array([[0.0, 0.5]]), r"non-integer values \{0.5\}"), (np.array([[0, -1]]), r"negative values \{-1\}")],
)
def test_mask_values_that_are_not_ids(tmp_path, values, message) -> None:
    np.save(tmp_path / "bad.npy", values)
    with pytest.raises(DataError, match=rf"bad\.npy: mask has {message}"):
        read_mask(tmp_path / "bad.npy")


def test_nan_in_float_mask(tmp_path) -> None:
    np.save(tmp_path / "nan_mask.npy", np.array([[0.0, np.nan]]))
    with pytest.raises(DataError, match=r"nan_mask\.npy: contains 1 NaN"):
        read_mask(tmp_path / "nan_mask.npy")


# ------------------------------------------------------------------------------ thresholding noisy masks


def _noisy_jpeg_mask(tmp_path, name: str = "noisy.jpg") -> tuple:
    """A binary mask written as JPEG: compression spreads 0/255 into values near 0 and near 255."""
    truth = np.zeros((64, 64), dtype=np.uint8)
    truth[16:48, 20:44] = 1
    path = tmp_path / name
    Image.fromarray(truth * 255).save(path, quality=60)
    return path, truth


def test_noisy_jpeg_mask_is_refused_without_threshold_and_names_the_option(tmp_path) -> None:
    path, _ = _noisy_jpeg_mask(tmp_path)
    with pytest.raises(DataError, match=r"noisy\.jpg: mask values .* are not binary.*data\.mask_threshold=127\.5"):
        read_mask(path, label_count=2)


def test_threshold_binarises_a_noisy_mask_and_warns_once_naming_the_count(tmp_path, caplog) -> None:
    path, truth = _noisy_jpeg_mask(tmp_path)
    raw = np.array(Image.open(path))
    noisy = int(np.count_nonzero((raw != 0) & (raw != 255)))
    assert noisy > 0  # the test needs JPEG noise to mean anything
    with caplog.at_level("WARNING", logger="unetpp.data.mask_values"):
        mask = read_mask(path, label_count=2, threshold=127.5)
        again = read_mask(path, label_count=2, threshold=127.5)
    assert mask.dtype == np.int64
    assert set(np.unique(mask).tolist()) == {0, 1}
    np.testing.assert_array_equal(mask, truth)  # JPEG noise at quality 60 never crosses the midpoint
    np.testing.assert_array_equal(again, mask)
    records = [r for r in caplog.records if "thresholded" in r.getMessage()]
    assert len(records) == 1  # once per file, not once per read
    message = records[0].getMessage()
    assert "noisy.jpg" in message
    assert f"{noisy} of {64 * 64} pixels" in message
    assert "\n" not in message


def test_threshold_on_a_clean_mask_changes_nothing_and_stays_quiet(tmp_path, caplog) -> None:
    path = write_mask(tmp_path / "clean.png", BINARY)
    with caplog.at_level("WARNING", logger="unetpp.data.mask_values"):
        mask = read_mask(path, label_count=2, threshold=127.5)
    np.testing.assert_array_equal(mask, BINARY)
    assert not [r for r in caplog.records if "thresholded" in r.getMessage()]


def test_threshold_below_one_binarises_soft_float_masks(tmp_path) -> None:
    soft = np.array([[0.0, 0.2, 0.6], [1.0, 0.49, 0.51]], dtype=np.float32)
    path = tmp_path / "soft.npy"
    np.save(path, soft)
    np.testing.assert_array_equal(read_mask(path, spatial_dims=2, threshold=0.5), [[0, 0, 1], [1, 0, 1]])


def test_read_mask_values_keeps_the_stored_values(tmp_path) -> None:
    from unetpp.data.io import read_mask_values

    path, _ = _noisy_jpeg_mask(tmp_path)
    values, meta = read_mask_values(path)
    assert values.shape == (64, 64)
    assert meta.spatial_dims == 2
    assert values.max() > 200
    assert np.count_nonzero((values > 0) & (values < 255)) > 0


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[0, 255], [255, 255]], np.uint8),
        np.array([[0, 65535], [7, 7]], np.uint16),
        np.array([[3, 1], [1, 3]], np.int64),
        np.array([[-1, 0], [2, 2]], np.int32),  # negative: sorted as before
        np.array([[0, 70000], [1, 1]], np.int64),  # beyond 16 bits: sorted as before
        np.array([[0.0, 0.5], [1.0, 1.0]], np.float32),
        np.zeros((0, 3), np.uint8),
        np.zeros((2, 3), np.uint8),  # 0 alone
        np.full((2, 3), 255, np.uint8),  # one value, not 0
        np.array([[0.0, 1.0], [1.0, 1.0]], np.float64),  # 0 and one other value, in floats
        np.array([[-2, -2], [-2, -2]], np.int16),
        np.array([[np.nan, 0.0]], np.float32),
    ],
)
def test_value_counts_are_np_unique_s(mask) -> None:
    values, counts = value_counts(mask)
    expected_values, expected_counts = np.unique(mask, return_counts=True)
    assert values.dtype == expected_values.dtype
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(counts, expected_counts)
