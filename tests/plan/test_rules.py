"""Plans from fingerprints of data sets the tests write: channels, classes, thresholds, patches, budgets, resampling."""

from __future__ import annotations

import argparse
import dataclasses
import re

import numpy as np
import pytest

from unetpp.config import DataConfig
from unetpp.data import FolderPairs, read_mask, read_with_meta, write_image, write_mask
from unetpp.data.io import ImageMeta
from unetpp.data.resample import resample_probabilities, resampled_meta, to_spacing
from unetpp.data.transforms import normalize_intensity
from unetpp.errors import ConfigError
from unetpp.plan.fingerprint import fingerprint
from unetpp.plan.memory import estimate_peak_bytes
from unetpp.plan.record import Plan, format_plan, load_plan, save_plan
from unetpp.plan.rules import WORKER_BYTES, make_plan

from .test_fingerprint import _blobs, write_set

GB = 1e9


def _plan(tmp_path, kind: str, **kwargs) -> tuple:
    fp = fingerprint(write_set(tmp_path / kind, kind, **kwargs), cache_dir=tmp_path / "cache")
    return fp, make_plan(fp, memory_gb=8)


def test_noisy_jpeg_masks_plan_a_threshold_that_read_mask_applies_with_a_warning(tmp_path, caplog) -> None:
    fp, plan = _plan(tmp_path, "noisy-rgb-jpeg")
    assert (plan.classes, plan.mask_threshold) == (1, 127.5)
    assert "thresholded at the midpoint" in plan.reasons["classes"]
    path = fp.source + "/masks/0.jpg"
    with pytest.raises(Exception, match="not binary"):
        read_mask(path, label_count=2)
    with caplog.at_level("WARNING", logger="unetpp.data.mask_values"):
        mask = read_mask(path, label_count=2, threshold=plan.mask_threshold)
    np.testing.assert_array_equal(mask, _blobs((48, 64), 0))
    assert any("0.jpg: mask thresholded at 127.5" in r.getMessage() for r in caplog.records)


def test_rgb_set_plans_three_channels(tmp_path) -> None:
    _, plan = _plan(tmp_path, "noisy-rgb-jpeg")
    assert (plan.in_channels, plan.channels) == (3, "rgb")


def test_rgba_set_with_grey_content_plans_one_channel(tmp_path) -> None:
    _, plan = _plan(tmp_path, "rgba-grey")
    assert (plan.in_channels, plan.channels) == (1, "grey")
    assert plan.mask_threshold is None
    assert plan.classes == 1


def test_label_map_stays_a_label_map(tmp_path) -> None:
    _, plan = _plan(tmp_path, "labels")
    assert plan.classes == 3
    assert plan.mask_threshold is None


def test_ct_plans_data_set_normalisation(tmp_path) -> None:
    fp, plan = _plan(tmp_path, "ct", shape=(24, 20, 16))
    assert plan.normalize == "ct"
    assert plan.intensity_clip is not None
    image = np.array([[[[-1000.0, 0.0, 3000.0]]]], dtype=np.float32)
    stats = DataConfig(
        normalize="ct",
        intensity_clip=plan.intensity_clip,
        intensity_mean=plan.intensity_mean,
        intensity_std=plan.intensity_std,
    ).intensity_stats  # what training and prediction normalise with
    out = normalize_intensity(image, "ct", stats)
    (lo, hi), mean, std = plan.intensity_clip[0], plan.intensity_mean[0], plan.intensity_std[0]
    np.testing.assert_allclose(out[0, 0, 0], [(lo - mean) / std, (0 - mean) / std, (hi - mean) / std], rtol=1e-5)


@pytest.mark.parametrize(
    "shape",
    [
        (20, 24),
        (40, 200),
        (96, 96),
        (100, 130),
        (512, 512),
        (1040, 1388),
        (6, 8),
        (12, 40, 33),
        (35, 50, 36),
        (200, 90, 64),
    ],
)
def test_patch_is_never_larger_than_the_data_and_fits_the_depth(tmp_path, shape) -> None:
    fp, _ = _plan(tmp_path, "rgba-grey", n=1)
    fp = dataclasses.replace(fp, spatial_dims=len(shape), median_shape=shape, median_spacing=(1.0,) * len(shape))
    plan = make_plan(fp, memory_gb=8)
    assert all(p <= s for p, s in zip(plan.patch_size, shape, strict=True)), (plan.patch_size, shape)
    assert all(p % 2**plan.depth == 0 for p in plan.patch_size)
    assert 1 <= plan.depth <= 4
    assert len(plan.widths) == plan.depth + 1
    if min(shape) >= 64:
        assert plan.depth == 4


def test_batch_follows_the_budget(tmp_path) -> None:
    fp, _ = _plan(tmp_path, "rgba-grey")
    fp = dataclasses.replace(fp, median_shape=(512, 512), n_items=1000)
    small, large = make_plan(fp, memory_gb=1.5), make_plan(fp, memory_gb=20)
    assert 1 <= small.batch_size < large.batch_size
    assert small.estimated_peak_gb <= 1.5
    assert large.estimated_peak_gb <= 20


def test_large_objects_grow_the_patch_on_a_gpu_only_and_small_ones_keep_the_papers_96(tmp_path) -> None:
    fp, _ = _plan(tmp_path, "rgba-grey")
    fp = dataclasses.replace(fp, median_shape=(480, 600), n_items=1000)
    polyp = {"class": 1, "per_image": 1.0, "median": 25000.0, "p05": 5000.0, "p95": 90000.0}
    nucleus = {"class": 1, "per_image": 40.0, "median": 330.0, "p05": 44.0, "p95": 1930.0}
    small = make_plan(dataclasses.replace(fp, objects=(nucleus,)), memory_gb=20)
    assert small.patch_size == (96, 96)
    assert small.batch_size == 16
    assert "median object" not in small.reasons["patch_size"]
    # on a CPU a larger patch at a smaller batch scored lower at equal time: the paper's 96² stays, and says why
    cpu = make_plan(dataclasses.replace(fp, objects=(polyp,)), memory_gb=20)
    assert cpu.patch_size == (96, 96)
    assert cpu.batch_size == 16
    assert "median object about 158 per axis, not grown for it on a CPU" in cpu.reasons["patch_size"]
    # on a GPU the median polyp (about 158 px a side) with as much context around it: 2x158 = 316 -> 304 (by 16)
    gpu = make_plan(dataclasses.replace(fp, objects=(polyp,)), memory_gb=20, device="cuda")
    assert gpu.patch_size == (304, 304)
    assert "median object about 158" in gpu.reasons["patch_size"]
    # the batch keeps a step's pixels about those of 16 patches at the GPU's 256 ceiling: 11 of 304²
    assert gpu.batch_size == 11
    assert gpu.depth == 4
    pinned = make_plan(
        dataclasses.replace(fp, objects=(polyp,)), memory_gb=20, device="cuda", overrides={"patch_size": [256, 256]}
    )
    assert pinned.patch_size == (256, 256)
    assert pinned.batch_size == 16


def test_memory_efficient_training_is_planned_only_when_a_useful_batch_does_not_fit(tmp_path) -> None:
    fp, roomy = _plan(tmp_path, "rgba-grey")
    fp = dataclasses.replace(fp, median_shape=(512, 512), n_items=1000)
    roomy = make_plan(fp, memory_gb=20)
    assert not roomy.memory_efficient
    assert "fits without recomputation" in roomy.reasons["memory_efficient"]
    model = {"name": "unet++", "in_channels": 1, "classes": 1, "depth": roomy.depth, "spatial_dims": 2}
    patch = roomy.patch_size
    normal = estimate_peak_bytes({**model, "memory_efficient": False}, patch, 2)
    efficient = estimate_peak_bytes({**model, "memory_efficient": True}, patch, 2)
    budget = (normal + efficient) / 2 + WORKER_BYTES  # batch 2 fits only with recomputation
    tight = make_plan(fp, memory_gb=budget / GB, overrides={"cache": False})
    assert tight.memory_efficient
    assert tight.patch_size == patch
    assert tight.batch_size >= 2
    assert "recomputed" in tight.reasons["memory_efficient"]
    assert re.search(r"^memory_efficient\s+true\s+batch 2 of 96x96", format_plan(tight), re.M)
    pinned = make_plan(fp, memory_gb=budget / GB, overrides={"cache": False, "memory_efficient": False})
    assert not pinned.memory_efficient  # the user's word wins; the batch or the patch pays
    assert pinned.batch_size < 2 or pinned.patch_size < patch
    assert pinned.reasons["memory_efficient"] == "set by you"


def test_a_plan_saved_before_memory_efficient_existed_still_loads(tmp_path) -> None:
    _, plan = _plan(tmp_path, "rgba-grey")
    old = {k: v for k, v in plan.to_dict().items() if k != "memory_efficient"}
    assert Plan.from_dict(old).memory_efficient is False


@pytest.mark.parametrize("native", [True, False])
def test_precision_is_bf16_only_where_the_cpu_has_it_natively(tmp_path, monkeypatch, native) -> None:
    from unetpp.utils import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda: native)
    monkeypatch.setattr(precision, "cpu_flags", lambda: ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
    fp, _ = _plan(tmp_path, "rgba-grey")
    plan = make_plan(fp, memory_gb=8)
    assert plan.precision == ("bf16" if native else "32")
    reason = plan.reasons["precision"]
    assert ("avx512_bf16+amx_bf16" in reason) if native else ("no native bf16" in reason)
    assert re.search(rf"^precision\s+{plan.precision}\s", format_plan(plan), re.M)
    mine = make_plan(fp, memory_gb=8, precision="32")
    assert (mine.precision, mine.reasons["precision"]) == ("32", "set by you")


@pytest.mark.parametrize(("bf16", "want"), [(True, "bf16"), (False, "16")])
def test_gpus_train_in_bf16_or_else_float16(monkeypatch, bf16, want) -> None:
    import torch

    from unetpp.utils.precision import training_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    chosen, reason = training_precision("cuda")
    assert chosen == want
    assert "GPU" in reason


def test_a_plan_saved_with_lightnings_precision_name_loads_in_the_projects(tmp_path) -> None:
    _, plan = _plan(tmp_path, "rgba-grey")
    assert Plan.from_dict({**plan.to_dict(), "precision": "bf16-mixed"}).precision == "bf16"


def test_budget_too_small_is_one_line_naming_estimate_budget_and_what_fits(tmp_path) -> None:
    fp, _ = _plan(tmp_path, "rgba-grey")
    with pytest.raises(ConfigError) as e:
        make_plan(fp, memory_gb=0.05)
    message = str(e.value)
    assert "\n" not in message
    assert "budget of 0.05 GB" in message
    assert "GB at batch 1" in message
    assert "--memory-gb" in message


def test_overrides_win_and_are_checked(tmp_path) -> None:
    fp, _ = _plan(tmp_path, "rgba-grey")
    plan = make_plan(fp, memory_gb=8, overrides={"depth": 2, "batch_size": 3, "channels": "rgb"})
    assert (plan.depth, plan.batch_size, plan.in_channels, len(plan.widths)) == (2, 3, 3, 3)
    assert plan.reasons["depth"] == "set by you"
    with pytest.raises(ConfigError, match="unknown plan field"):
        make_plan(fp, memory_gb=8, overrides={"batchsize": 3})
    with pytest.raises(ConfigError, match="multiple of 8"):
        make_plan(fp, memory_gb=8, overrides={"patch_size": [36, 36]})
    with pytest.raises(ConfigError, match="batch_size=500 needs about .* GB, over the memory budget"):
        make_plan(fp, memory_gb=1, overrides={"batch_size": 500})


def test_plan_yaml_round_trip_and_no_overwrite(tmp_path) -> None:
    fp, plan = _plan(tmp_path, "labels")
    path = save_plan(plan, tmp_path / "plan.yaml")
    assert load_plan(path) == plan
    with pytest.raises(ConfigError, match="file exists"):
        save_plan(plan, path)
    text = format_plan(plan, fp)
    assert "patch_size" in text
    assert "label-map" in text
    assert len(text.splitlines()) < 25


def test_anisotropic_volumes_are_resampled_and_come_back_on_the_original_grid(tmp_path) -> None:
    root = tmp_path / "vol"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = [-20.0, 4.0, 7.5]
    shape = (40, 36, 12)
    for i in range(3):
        meta = ImageMeta(root / "x", 3, (1.0, 1.0, 3.0), affine)
        image = np.random.default_rng(i).normal(size=(1, *shape)).astype(np.float32)
        write_image(root / "images" / f"{i}.nii.gz", image, meta=meta)
        write_mask(root / "masks" / f"{i}.nii.gz", _blobs(shape, i), meta=meta)
    fp = fingerprint(FolderPairs(root, classes=None, spatial_dims=3), cache_dir=tmp_path / "cache")
    plan = make_plan(fp, memory_gb=8)
    assert plan.target_spacing == (1.0, 1.0, 1.0)
    assert all(p <= s for p, s in zip(plan.patch_size, (40, 36, 36), strict=True))

    image, meta = read_with_meta(root / "images" / "0.nii.gz")
    labels = read_mask(root / "masks" / "0.nii.gz")
    train_image, train_labels, train_meta = to_spacing(image, meta, plan.target_spacing, labels, max(2, plan.classes))
    assert train_image.shape == (1, 40, 36, 36)
    assert train_labels.shape == (40, 36, 36)
    assert train_meta.spacing == pytest.approx((1.0, 1.0, 1.0))
    # a perfect "prediction" on the training grid, as probabilities, goes back to the input's grid
    probs = np.stack([train_labels == 0, train_labels == 1]).astype(np.float32)
    back = resample_probabilities(probs, image.shape[1:]).argmax(0)
    assert back.shape == shape
    assert (back == labels).mean() > 0.97
    back_meta = resampled_meta(train_meta, train_image.shape[1:], image.shape[1:])
    np.testing.assert_allclose(back_meta.affine, meta.affine, atol=1e-9)
    out = write_mask(tmp_path / "pred.nii.gz", back, meta=meta)
    np.testing.assert_allclose(read_with_meta(out)[1].affine, affine)


def test_plan_subcommand_prints_and_writes_the_plan(tmp_path, capsys) -> None:
    from unetpp.cli.plan import add_plan

    ds = write_set(tmp_path / "d", "rgba-grey")
    parser = argparse.ArgumentParser()
    add_plan(parser.add_subparsers())
    out = tmp_path / "plan.yaml"
    args = parser.parse_args(
        ["plan", "--data", str(ds.root), "--memory-gb", "4", "--out", str(out), "--set", "batch_size=2"]
    )
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "batch_size" in printed
    assert "plan written to" in printed
    plan = load_plan(out)
    assert isinstance(plan, Plan)
    assert plan.batch_size == 2
    assert plan.in_channels == 1
    args = parser.parse_args(["plan", "--data", str(ds.root), "--memory-gb", "0.01"])
    with pytest.raises(ConfigError):
        args.handler(args)
