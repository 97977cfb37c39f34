"""Instance targets from the three layouts, written by the tests; aligned augmentation; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetpp import DataError
from unetpp.data.instances import (
    CocoInstances,
    DSB2018Instances,
    InstanceAugment,
    LabelMapInstances,
    boxes_from_masks,
    collate_instances,
    make_target,
)


def label_map() -> np.ndarray:
    t = np.zeros((24, 32), dtype=np.uint16)
    t[2:6, 3:9] = 1  # rows 2..5, columns 3..8 -> box (3, 2, 9, 6)
    t[10:20, 20:21] = 2  # a one-pixel-wide nucleus -> box (20, 10, 21, 20)
    t[15, 5] = 3  # a single pixel -> box (5, 15, 6, 16)
    return t


EXPECTED_BOXES = [[3, 2, 9, 6], [20, 10, 21, 20], [5, 15, 6, 16]]


def check_target(target: dict, n: int, shape: tuple[int, int]) -> None:
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].shape == (n, 4)
    assert target["labels"].dtype == torch.int64
    assert target["labels"].shape == (n,)
    assert target["masks"].dtype == torch.uint8
    assert target["masks"].shape == (n, *shape)


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_dsb(root: Path, labels: np.ndarray, name: str = "abc") -> Path:
    image = np.zeros((*labels.shape, 4), dtype=np.uint8)
    image[..., :3], image[..., 3] = (labels > 0)[..., None] * 200, 255
    write_png(root / name / "images" / f"{name}.png", image)
    for k in range(1, int(labels.max()) + 1):
        write_png(root / name / "masks" / f"m{k}.png", ((labels == k) * 255).astype(np.uint8))
    return root


def test_boxes_are_pixel_edges() -> None:
    masks = torch.from_numpy(np.stack([label_map() == k for k in (1, 2, 3)]))
    assert boxes_from_masks(masks).tolist() == EXPECTED_BOXES


def test_dsb_layout(tmp_path: Path) -> None:
    root = write_dsb(tmp_path / "stage1_train", label_map().astype(np.int32))
    write_png(root / "empty" / "images" / "empty.png", np.zeros((24, 32, 4), dtype=np.uint8))
    (root / "empty" / "masks").mkdir()
    ds = DSB2018Instances(tmp_path, channels="grey")
    assert ds.ids == ["abc", "empty"]
    image, target = ds[0]
    assert image.shape == (1, 24, 32)
    assert image.dtype == torch.float32
    assert 0 <= float(image.min()) <= image.max() <= 1
    check_target(target, 3, (24, 32))
    assert target["boxes"].tolist() == EXPECTED_BOXES
    np.testing.assert_array_equal(ds.label_map(0), label_map())
    _, empty = ds[1]
    check_target(empty, 0, (24, 32))


def test_dsb_overlapping_masks_are_one_line(tmp_path: Path) -> None:
    root = write_dsb(tmp_path, label_map().astype(np.int32))
    write_png(root / "abc" / "masks" / "m9.png", ((label_map() == 1) * 255).astype(np.uint8))
    with pytest.raises(DataError, match=r"m9.png: overlaps another nucleus mask .* by 24 pixel") as info:
        DSB2018Instances(tmp_path)[0]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_label_maps_16_bit(tmp_path: Path, suffix: str) -> None:
    labels = label_map()  # uint16
    path = tmp_path / "labels" / f"a{suffix}"
    path.parent.mkdir()
    if suffix == ".png":
        Image.fromarray(labels).save(path)
    else:
        tifffile.imwrite(path, labels)
    write_png(tmp_path / "images" / "a.png", (labels > 0).astype(np.uint8) * 255)
    ds = LabelMapInstances(tmp_path)
    image, target = ds[0]
    check_target(target, 3, (24, 32))
    assert target["boxes"].tolist() == EXPECTED_BOXES


def test_label_map_with_more_than_255_objects(tmp_path: Path) -> None:
    labels = np.arange(1, 301, dtype=np.uint16).reshape(15, 20)
    write_png(tmp_path / "images" / "a.png", np.zeros((15, 20), np.uint8))
    write_png(tmp_path / "labels" / "a.png", labels)  # a 16-bit PNG
    _, target = LabelMapInstances(tmp_path)[0]
    assert target["masks"].shape[0] == 300
    assert target["masks"].sum() == 300


def test_label_map_gap_is_one_line_unless_relabel(tmp_path: Path) -> None:
    labels = label_map()
    labels[labels == 2] = 0  # ids 1 and 3: a gap
    write_png(tmp_path / "images" / "g.png", np.zeros((24, 32), np.uint8))
    write_png(tmp_path / "labels" / "g.png", labels)
    with pytest.raises(
        DataError, match=r"g.png: instance ids must run 1..N without gaps, but id\(s\) 2 are missing"
    ) as info:
        LabelMapInstances(tmp_path)[0]
    assert "\n" not in str(info.value)
    _, target = LabelMapInstances(tmp_path, relabel=True)[0]
    assert target["boxes"].tolist() == [EXPECTED_BOXES[0], EXPECTED_BOXES[2]]


def coco_file(tmp_path: Path, images: list[dict], annotations: list[dict]) -> Path:
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 5, "name": "nucleus"}, {"id": 9, "name": "cell"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_polygons_rle_crowd_and_empty_images(tmp_path: Path) -> None:
    from pycocotools import mask as coco_mask

    write_png(tmp_path / "a.png", np.zeros((24, 32, 3), np.uint8))
    write_png(tmp_path / "b.png", np.zeros((24, 32, 3), np.uint8))
    rle = coco_mask.encode(np.asfortranarray((label_map() == 2).astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    annotations = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 5,
            "segmentation": [[3, 2, 9, 2, 9, 6, 3, 6]],
            "iscrowd": 0,
            "area": 24,
            "bbox": [3, 2, 6, 4],
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 9,
            "segmentation": rle,
            "iscrowd": 0,
            "area": 10,
            "bbox": [20, 10, 1, 10],
        },
        {
            "id": 3,
            "image_id": 1,
            "category_id": 5,
            "segmentation": rle,
            "iscrowd": 1,
            "area": 10,
            "bbox": [20, 10, 1, 10],
        },
    ]
    images = [
        {"id": 1, "file_name": "a.png", "height": 24, "width": 32},
        {"id": 2, "file_name": "b.png", "height": 24, "width": 32},
    ]
    ds = CocoInstances(coco_file(tmp_path, images, annotations))
    assert ds.categories == [5, 9]
    assert ds.ids == ["1", "2"]
    image, target = ds[0]
    check_target(target, 2, (24, 32))
    assert target["labels"].tolist() == [1, 2]  # category 5 -> 1, 9 -> 2; the crowd annotation is skipped
    assert target["boxes"][1].tolist() == EXPECTED_BOXES[1]
    x0, y0, x1, y1 = target["boxes"][0].tolist()  # a polygon's rasterisation is pycocotools' business
    assert (x0, y0) == (3, 2)
    assert 8 <= x1 <= 10
    assert 5 <= y1 <= 7
    check_target(ds[1][1], 0, (24, 32))


def test_empty_or_broken_coco_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lists no images") as info:
        CocoInstances(coco_file(tmp_path, [], []))
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a readable COCO JSON"):
        CocoInstances(bad)
    with pytest.raises(DataError, match="not found"):
        CocoInstances(coco_file(tmp_path, [{"id": 1, "file_name": "missing.png", "height": 2, "width": 2}], []))


def test_augmentation_keeps_boxes_and_masks_aligned() -> None:
    masks = torch.from_numpy(np.stack([label_map() == k for k in (1, 2, 3)]).astype(np.uint8))
    image = torch.stack([torch.from_numpy(label_map().astype(np.float32)), torch.zeros(24, 32)])  # channel 0 = ids
    target = make_target(masks)
    aug = InstanceAugment(crop=20)
    seen_shapes = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out = aug(image, target)
        seen_shapes.add(tuple(out_image.shape[1:]))
        check_target(out, out["masks"].shape[0], tuple(out_image.shape[1:]))
        assert out["boxes"].tolist() == boxes_from_masks(out["masks"].bool()).tolist()
        for m in out["masks"]:  # every mask still covers the pixels of one object of the image, and all of it there
            ids = out_image[0][m.bool()].unique()
            assert len(ids) == 1
            assert ids.item() > 0
            assert torch.equal(m.bool(), out_image[0] == ids.item())
    assert seen_shapes == {(20, 20)}


def test_collate_keeps_lists() -> None:
    a = (torch.zeros(1, 4, 4), make_target(np.zeros((0, 4, 4))))
    b = (torch.zeros(1, 6, 5), make_target(np.ones((1, 6, 5))))
    images, targets = collate_instances([a, b])
    assert [i.shape for i in images] == [(1, 4, 4), (1, 6, 5)]
    assert len(targets) == 2
