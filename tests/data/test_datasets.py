"""Data sets: each layout, 2D and 3D through one path, and each layout problem named in a DataError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unetpp import ConfigError, DataError
from unetpp.data import (
    DSB2018,
    ISBI2012,
    ArrayDataset,
    Decathlon,
    FolderPairs,
    make_synthetic_em,
    write_image,
    write_mask,
)

RNG = np.random.default_rng(0)


def make_pairs(root, n=3, size=(16, 12), ext=".png", masks="masks", spatial_dims=2):
    for k in range(n):
        shape = size if spatial_dims == 2 else (4, *size)
        image = RNG.integers(0, 256, (1, *shape), dtype=np.uint8)
        if ext.startswith(".nii"):
            image = image.astype(np.float32)
        write_image(root / "images" / f"case_{k}{ext}", image)
        write_mask(root / masks / f"case_{k}{ext}", (RNG.random(shape) > 0.3).astype(np.uint8))
    return root


def check_sample(sample, channels, spatial) -> None:
    assert sample["image"].shape == (channels, *spatial)
    assert sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (1, *spatial)
    assert sample["mask"].dtype == torch.int64
    assert set(sample["mask"].unique().tolist()) <= {0, 1}


# ------------------------------------------------------------------------------------------ folders


@pytest.mark.parametrize("masks", ["masks", "labels"])
def test_folder_pairs_2d(tmp_path, masks) -> None:
    ds = FolderPairs(make_pairs(tmp_path, masks=masks))
    assert len(ds) == 3
    assert ds.ids == ["case_0", "case_1", "case_2"]
    check_sample(ds[1], 1, (16, 12))
    image = ds[1]["image"]
    assert abs(float(image.mean())) < 1e-4  # z-scored per image by default
    assert float(image.std()) == pytest.approx(1.0, abs=0.01)


def test_folder_pairs_3d_same_code_path(tmp_path) -> None:
    ds = FolderPairs(make_pairs(tmp_path, ext=".nii.gz", spatial_dims=3), spatial_dims=3)
    check_sample(ds[0], 1, (4, 16, 12))


def test_mask_suffix_hidden_files_and_other_files_ignored(tmp_path) -> None:
    write_image(tmp_path / "images" / "a.png", np.zeros((1, 4, 4), np.uint8))
    write_mask(tmp_path / "masks" / "a_mask.png", np.ones((4, 4), np.uint8))
    (tmp_path / "images" / "._a.png").write_bytes(b"macOS metadata")
    (tmp_path / "images" / "README.txt").write_text("not an image")
    ds = FolderPairs(tmp_path, mask_suffix="_mask")
    assert ds.ids == ["a"]
    assert int(ds[0]["mask"].sum()) == 16


def test_normalize_none_keeps_values_and_transform_runs(tmp_path) -> None:
    make_pairs(tmp_path)
    raw = np.array(Image.open(tmp_path / "images" / "case_0.png"), dtype=np.float32)

    def flip(sample):
        return {**sample, "image": sample["image"].flip(-1), "mask": sample["mask"].flip(-1)}

    ds = FolderPairs(tmp_path, normalize="none", transform=flip, cache=True)
    np.testing.assert_array_equal(ds[0]["image"][0].numpy(), raw[:, ::-1])
    assert ds[0]["id"] == "case_0"


@pytest.mark.parametrize(("mode", "channels"), [("keep", 4), ("rgb", 3), ("grey", 1)])
def test_channel_modes(tmp_path, mode, channels) -> None:
    rgba = RNG.integers(0, 256, (4, 8, 8), dtype=np.uint8)
    rgba[3] = 255
    write_image(tmp_path / "images" / "x.png", rgba)
    write_mask(tmp_path / "masks" / "x.png", np.zeros((8, 8), np.uint8))
    sample = FolderPairs(tmp_path, channels=mode, normalize="none")[0]
    assert sample["image"].shape == (channels, 8, 8)
    if mode == "grey":  # ITU-R 601 luma, as Pillow's convert("L")
        expected = np.array(Image.fromarray(np.moveaxis(rgba[:3], 0, -1)).convert("L"), dtype=np.float32)
        np.testing.assert_allclose(sample["image"][0].numpy(), expected, atol=0.6)


def test_grey_to_rgb(tmp_path) -> None:
    make_pairs(tmp_path, n=1)
    image = FolderPairs(tmp_path, channels="rgb")[0]["image"]
    assert image.shape[0] == 3
    assert torch.equal(image[0], image[2])


# ------------------------------------------------------------------------------------------ folder problems


def test_missing_root(tmp_path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        FolderPairs(tmp_path / "nowhere")


def test_missing_mask_folder(tmp_path) -> None:
    write_image(tmp_path / "images" / "a.png", np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"has neither a masks/ nor a labels/ folder"):
        FolderPairs(tmp_path)
    with pytest.raises(DataError, match=r"segs: no such folder"):
        FolderPairs(tmp_path, mask_dir="segs")


def test_empty_folder(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "._junk.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"images: folder has no image files"):
        FolderPairs(tmp_path)


def test_image_without_mask_names_it(tmp_path) -> None:
    make_pairs(tmp_path)
    (tmp_path / "masks" / "case_1.png").unlink()
    with pytest.raises(DataError, match=r"no mask in .*masks for 1 image\(s\): case_1\.png"):
        FolderPairs(tmp_path)


def test_mask_without_image_names_it(tmp_path) -> None:
    make_pairs(tmp_path)
    write_mask(tmp_path / "masks" / "stray.png", np.zeros((16, 12), np.uint8))
    with pytest.raises(DataError, match=r"no image in .*images for 1 mask\(s\): stray\.png"):
        FolderPairs(tmp_path)


def test_two_files_with_one_stem(tmp_path) -> None:
    make_pairs(tmp_path)
    write_image(tmp_path / "images" / "case_0.tif", np.zeros((1, 16, 12), np.uint8))
    with pytest.raises(DataError, match=r"case_0\.tif: has the same name as case_0\.png"):
        FolderPairs(tmp_path)


def test_mask_size_differs_from_image(tmp_path) -> None:
    make_pairs(tmp_path)
    write_mask(tmp_path / "masks" / "case_2.png", np.zeros((16, 10), np.uint8), overwrite=True)
    ds = FolderPairs(tmp_path)
    ds[0]  # the good ones still load
    message = r"case_2\.png: mask is 16x10 but image case_2\.png is 16x12; masks must match their image"
    with pytest.raises(DataError, match=message):
        ds[2]
    with pytest.raises(DataError, match=message):
        ds.verify()


def test_verify_reads_on_threads_and_fails_on_the_first_bad_item_in_order(tmp_path, monkeypatch) -> None:
    import threading
    import time

    make_pairs(tmp_path, n=8)
    for name in ("case_3.png", "case_6.png"):
        path = tmp_path / "images" / name
        path.write_bytes(path.read_bytes()[:40])
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    ds = FolderPairs(tmp_path, cache=True)
    readers: set[str] = set()
    load = ds.load

    def recorded(k: int):
        readers.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough that the pool starts a thread for each item in flight
        return load(k)

    monkeypatch.setattr(ds, "load", recorded)
    with pytest.raises(DataError, match=r"case_3\.png: not a readable image"):
        ds.verify()
    assert len(readers) == 4
    assert threading.current_thread().name not in readers
    ds.verify([0, 1, 2, 4, 5, 7])  # the good ones
    assert set(ds._cache) == {0, 1, 2, 4, 5, 7}


def test_noisy_masks_are_counted_exactly_when_read_on_threads(tmp_path, monkeypatch) -> None:
    make_pairs(tmp_path, n=12)
    for k in range(12):
        noisy = np.zeros((16, 12), np.uint8)
        noisy[:4, :4] = 250  # 16 pixels neither 0 nor 255 in each file
        Image.fromarray(noisy).save(tmp_path / "masks" / f"case_{k}.png")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    ds = FolderPairs(tmp_path, mask_threshold=127.5)
    ds.verify()
    assert ds.thresholded == [12, 12 * 16, 12 * 16 * 12]
    assert sorted(p.name for p in ds.noisy_masks) == sorted(f"case_{k}.png" for k in range(12))


def test_corrupt_image_in_data_set(tmp_path) -> None:
    make_pairs(tmp_path)
    path = tmp_path / "images" / "case_1.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=r"case_1\.png: not a readable image"):
        FolderPairs(tmp_path).verify()


def test_non_binary_mask_in_data_set(tmp_path) -> None:
    make_pairs(tmp_path)
    Image.fromarray(np.array([[0, 128], [255, 0]], np.uint8)).resize((12, 16), Image.NEAREST).save(
        tmp_path / "masks" / "case_0.png"
    )
    with pytest.raises(DataError, match=r"case_0\.png: mask values \{0, 128, 255\} are not binary"):
        FolderPairs(tmp_path)[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"channels": "bgr"}, "channels must be 'grey', 'rgb' or 'keep'"),
        ({"normalize": "minmax"}, "normalize must be"),
        ({"classes": 0}, "classes must be 1 \\(binary\\) or the number of classes"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        FolderPairs(make_pairs(tmp_path, n=1), **kwargs)


# ------------------------------------------------------------------------------------------ ISBI 2012


def test_isbi_folder_layout(tmp_path) -> None:
    labels = np.full((16, 16), 255, np.uint8)
    labels[5:7] = 0  # a membrane
    (tmp_path / "labels").mkdir()
    for k in range(3):
        write_image(tmp_path / "images" / f"{k:02d}.png", RNG.integers(0, 256, (1, 16, 16), dtype=np.uint8))
        Image.fromarray(labels).save(tmp_path / "labels" / f"{k:02d}.png")
    ds = ISBI2012(tmp_path)
    check_sample(ds[0], 1, (16, 16))
    assert ds.ids == ["00", "01", "02"]
    mask = ds[0]["mask"][0]
    assert mask[5:7].sum() == 0  # membrane = 0
    assert mask[:5].all()  # 255 = cell interior = 1


def test_isbi_stack_layout(tmp_path) -> None:
    import tifffile

    volume = RNG.integers(0, 256, (5, 16, 16), dtype=np.uint8)
    labels = np.where(RNG.random((5, 16, 16)) > 0.2, 255, 0).astype(np.uint8)
    tifffile.imwrite(tmp_path / "train-volume.tif", volume, photometric="minisblack")
    tifffile.imwrite(tmp_path / "train-labels.tif", labels, photometric="minisblack")
    ds = ISBI2012(tmp_path, normalize="none")
    assert len(ds) == 5
    sample = ds[3]
    check_sample(sample, 1, (16, 16))
    np.testing.assert_array_equal(sample["image"][0].numpy(), volume[3])
    np.testing.assert_array_equal(sample["mask"][0].numpy(), labels[3] // 255)


def test_isbi_stack_problems(tmp_path) -> None:
    import tifffile

    with pytest.raises(DataError, match=r"not an ISBI 2012 folder; expected train-volume\.tif"):
        ISBI2012(tmp_path)
    tifffile.imwrite(tmp_path / "train-volume.tif", np.zeros((5, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match=r"train-labels\.tif: no such file"):
        ISBI2012(tmp_path)
    tifffile.imwrite(tmp_path / "train-labels.tif", np.zeros((4, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match=r"train-labels\.tif: has 4 pages but train-volume\.tif has 5"):
        ISBI2012(tmp_path)


# ------------------------------------------------------------------------------------------ DSB 2018


def make_dsb(root, ids=("aaa", "bbb"), size=(12, 14)):
    for k, name in enumerate(ids):
        rgba = np.zeros((4, *size), np.uint8)
        rgba[:3] = RNG.integers(0, 256, (1, *size), dtype=np.uint8)  # grey stored as RGBA, as most DSB images
        rgba[3] = 255
        write_image(root / name / "images" / f"{name}.png", rgba)
        for j in range(k + 2):  # non-overlapping nuclei, one file each
            nucleus = np.zeros(size, np.uint8)
            nucleus[2 + 3 * j : 4 + 3 * j, 2:5] = 1
            write_mask(root / name / "masks" / f"n{j}.png", nucleus)
    return root


def test_dsb_layout(tmp_path) -> None:
    ds = DSB2018(make_dsb(tmp_path / "stage1_train"))
    assert ds.ids == ["aaa", "bbb"]
    sample = ds[1]
    check_sample(sample, 3, (12, 14))
    instances = ds.instances(1)
    assert instances.max() == 3
    assert sorted(np.unique(instances).tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(sample["mask"][0].numpy(), instances > 0)  # semantic = union of instances


def test_dsb_grey_subset_and_parent_folder(tmp_path) -> None:
    make_dsb(tmp_path / "stage1_train", ids=("aaa", "bbb", "ccc"))
    ds = DSB2018(tmp_path, ids=["ccc"], channels="grey")  # the folder that contains stage1_train works too
    assert ds.ids == ["ccc"]
    assert ds[0]["image"].shape == (1, 12, 14)
    with pytest.raises(DataError, match=r"no sample folder for id\(s\) zzz"):
        DSB2018(tmp_path, ids=["zzz"])


def test_dsb_problems(tmp_path) -> None:
    root = tmp_path / "stage1_train"
    root.mkdir()
    with pytest.raises(DataError, match=r"stage1_train: folder is empty"):
        DSB2018(root)
    make_dsb(root)
    for p in (root / "bbb" / "masks").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"bbb/masks: no mask files for image bbb\.png"):
        DSB2018(root)
    (root / "aaa" / "images" / "aaa.png").unlink()
    with pytest.raises(DataError, match=r"aaa\.png: no such file; each DSB sample folder holds images/<id>\.png"):
        DSB2018(root)


def test_dsb_instance_of_wrong_size(tmp_path) -> None:
    root = make_dsb(tmp_path)
    write_mask(root / "aaa" / "masks" / "n1.png", np.zeros((12, 13), np.uint8), overwrite=True)
    with pytest.raises(DataError, match=r"n1\.png: mask is 12x13 but the other masks of aaa are 12x14"):
        DSB2018(root)[0]


# ------------------------------------------------------------------------------------------ Decathlon


def make_msd(root, n=2, labels=None):
    labels = {"0": "background", "1": "Anterior", "2": "Posterior"} if labels is None else labels
    entries = []
    for k in range(n):
        name = f"hippocampus_{k:03d}.nii.gz"
        write_image(root / "imagesTr" / name, RNG.normal(size=(1, 6, 7, 5)).astype(np.float32))
        write_mask(root / "labelsTr" / name, RNG.integers(0, 3, (6, 7, 5)))
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        (root / "imagesTr" / f"._{name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # as in the MSD tars
        (root / "labelsTr" / f"._{name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "training": entries}))
    return root


def test_decathlon_layout(tmp_path) -> None:
    ds = Decathlon(make_msd(tmp_path))
    assert len(ds) == 2
    assert ds.classes == 3
    sample = ds[0]
    assert sample["image"].shape == (1, 6, 7, 5)
    assert sample["mask"].shape == (1, 6, 7, 5)
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 2}


def test_decathlon_class_id_out_of_range(tmp_path) -> None:
    make_msd(tmp_path)
    write_mask(tmp_path / "labelsTr" / "hippocampus_000.nii.gz", np.full((6, 7, 5), 3), overwrite=True)
    with pytest.raises(DataError, match=r"hippocampus_000\.nii\.gz: mask has class ids \{3\} >= label_count=3"):
        Decathlon(tmp_path)[0]


def test_decathlon_needs_its_json(tmp_path) -> None:
    make_msd(tmp_path)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(DataError, match=r"dataset\.json: no such file"):
        Decathlon(tmp_path)
    assert Decathlon(tmp_path, classes=3).classes == 3
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: not readable JSON"):
        Decathlon(tmp_path)


def test_decathlon_wrong_dimensionality(tmp_path) -> None:
    make_msd(tmp_path)
    write_image(tmp_path / "imagesTr" / "hippocampus_001.nii.gz", np.zeros((1, 6, 7), np.float32), overwrite=True)
    with pytest.raises(DataError, match=r"hippocampus_001\.nii\.gz: is 2-D .* but a 3-D image is expected"):
        Decathlon(tmp_path)[1]


def test_nan_image_in_data_set(tmp_path) -> None:
    make_msd(tmp_path)
    image = np.zeros((1, 6, 7, 5), np.float32)
    image[0, 1, 1, 1] = np.nan
    write_image(tmp_path / "imagesTr" / "hippocampus_000.nii.gz", image, overwrite=True)
    with pytest.raises(DataError, match=r"hippocampus_000\.nii\.gz: contains 1 NaN and 0 Inf values"):
        Decathlon(tmp_path).verify()


# ------------------------------------------------------------------------------------------ arrays


def test_array_dataset() -> None:
    images, masks = make_synthetic_em(2, size=32)
    ds = ArrayDataset(images, masks)
    check_sample(ds[1], 1, (32, 32))
    with pytest.raises(DataError, match="do not match"):
        ArrayDataset(images, masks[:1])
    bad = masks[:1].copy()
    bad[0, 0, 0] = 7
    with pytest.raises(DataError, match=r"<array 0>: mask values \[0, 1, 7\] are not class ids in 0\.\.1"):
        ArrayDataset(images[:1], bad)[0]
