"""`unetpp train --data ... --run-dir ...` plans by itself on data the tests write, and predict repeats the plan.

Tiny runs (widths 4-8-16, 48x64 images, one epoch, one patch per image) through the CLI: noisy JPEG masks are
thresholded with one warning, RGBA with grey content trains on one channel, RGB on three, anisotropic
volumes are resampled for training and predicted back on their own grid and affine, the user's options
win over the plan, and a budget too small stops with one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from unetpp.cli import main
from unetpp.config import RunConfig
from unetpp.data import read_with_meta, write_image, write_mask
from unetpp.data.io import ImageMeta
from unetpp.data.layouts import open_dataset

from .test_fingerprint import _blobs, write_set

TINY = ["--epochs", "1", "--workers", "0", "--set", "model.widths=[4,8,16]", "data.patches_per_image=1"]
TINY += ["train.progress=false"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # fingerprints stay out of the user's home


def _train(data, run, *extra: str) -> int:
    return main(["train", "--data", str(data), "--run-dir", str(run), *TINY, *extra])


def _header(run) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["unetpp"]


def test_noisy_jpeg_masks_train_with_one_threshold_warning(tmp_path, capsys, caplog) -> None:
    write_set(tmp_path / "d", "noisy-rgb-jpeg")
    with caplog.at_level("WARNING", logger="unetpp"):
        assert _train(tmp_path / "d", tmp_path / "run") == 0
    warned = [r.getMessage() for r in caplog.records if "thresholded at 127.5" in r.getMessage()]
    assert len(warned) == 1
    assert "4 mask file(s)" in warned[0]
    cfg = RunConfig.load(tmp_path / "run" / "config.yaml")
    assert (cfg.data.mask_threshold, cfg.model.classes, cfg.model.in_channels, cfg.data.channels) == (
        127.5,
        1,
        3,
        "rgb",
    )
    assert yaml.safe_load((tmp_path / "run" / "plan.yaml").read_text())["mask_threshold"] == 127.5
    assert _header(tmp_path / "run")["preprocessing"]["mask_threshold"] == 127.5
    out = capsys.readouterr()
    assert "patch_size" in out.err + out.out  # the plan is printed
    assert "litlogger" not in out.err + out.out  # Lightning's tips are not


def test_rgba_grey_set_plans_one_channel_and_predicts_rgba_inputs(tmp_path) -> None:
    write_set(tmp_path / "d", "rgba-grey")
    assert _train(tmp_path / "d", tmp_path / "run") == 0
    cfg = RunConfig.load(tmp_path / "run" / "config.yaml")
    assert (cfg.model.in_channels, cfg.data.channels) == (1, "grey")
    assert _header(tmp_path / "run")["preprocessing"]["channels"] == "grey"
    args = ["predict", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.ckpt")]
    assert main([*args, "--inputs", str(tmp_path / "d" / "images" / "0.png"), "--out", str(tmp_path / "p")]) == 0
    mask, _ = read_with_meta(tmp_path / "p" / "0_mask.png")
    assert mask.shape == (1, 48, 64)


def test_rgb_set_plans_three_channels(tmp_path) -> None:
    write_set(tmp_path / "d", "rgb")
    assert _train(tmp_path / "d", tmp_path / "run") == 0
    assert RunConfig.load(tmp_path / "run" / "config.yaml").model.in_channels == 3


def test_user_options_win_over_the_plan(tmp_path) -> None:
    write_set(tmp_path / "d", "rgb")
    extra = ["--channels", "grey", "--batch-size", "3", "--set", "data.patch_size=[32,32]", "data.normalize=none"]
    assert _train(tmp_path / "d", tmp_path / "run", *extra) == 0
    cfg = RunConfig.load(tmp_path / "run" / "config.yaml")
    assert (cfg.data.channels, cfg.model.in_channels) == ("grey", 1)  # in_channels follows the user's channels
    assert (cfg.data.batch_size, cfg.data.patch_size, cfg.data.normalize) == (3, (32, 32), "none")
    plan = yaml.safe_load((tmp_path / "run" / "plan.yaml").read_text())
    assert plan["reasons"]["batch_size"] == "set by you"


def test_no_plan_keeps_the_defaults(tmp_path) -> None:
    write_set(tmp_path / "d", "rgb")
    assert (
        _train(tmp_path / "d", tmp_path / "run", "--no-plan", "--channels", "rgb", "--in-channels", "3", "--depth", "2")
        == 0
    )
    assert not (tmp_path / "run" / "plan.yaml").exists()
    assert RunConfig.load(tmp_path / "run" / "config.yaml").data.patch_size is None


def test_a_saved_plan_is_used(tmp_path) -> None:
    write_set(tmp_path / "d", "rgb")
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--data", str(tmp_path / "d"), "--out", str(out), "--set", "batch_size=3"]) == 0
    assert _train(tmp_path / "d", tmp_path / "run", "--plan", str(out)) == 0
    assert RunConfig.load(tmp_path / "run" / "config.yaml").data.batch_size == 3


def test_a_budget_too_small_stops_with_one_line(tmp_path, capsys) -> None:
    write_set(tmp_path / "d", "rgb")
    assert _train(tmp_path / "d", tmp_path / "run", "--memory-gb", "0.01") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "over the memory budget of 0.01 GB" in err[0]
    assert "--memory-gb" in err[0]
    assert not (tmp_path / "run").exists()


def test_a_batch_the_user_fixed_over_the_budget_stops_naming_what_fits(tmp_path, capsys) -> None:
    write_set(tmp_path / "d", "rgb")
    assert _train(tmp_path / "d", tmp_path / "run", "--memory-gb", "0.27", "--batch-size", "64") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "batch_size=64" in err[0]
    assert "fits" in err[0]


def _write_volumes(root, n: int = 3, shape=(24, 20, 8), spacing=(1.0, 1.0, 3.0)) -> np.ndarray:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (10.0, -5.0, 2.0)
    for i in range(n):
        mask = _blobs(shape, i)
        image = (np.random.default_rng(i).normal(100, 10, shape) + 50 * mask).astype(np.float32)
        meta = ImageMeta(root / "x.nii.gz", 3, spacing, affine)
        write_image(root / "images" / f"{i}.nii.gz", image[None], meta=meta)
        write_mask(root / "masks" / f"{i}.nii.gz", mask, meta=meta)
    return affine


def test_anisotropic_volumes_are_resampled_for_training_and_predicted_on_their_own_grid(tmp_path) -> None:
    affine = _write_volumes(tmp_path / "d")
    assert _train(tmp_path / "d", tmp_path / "run") == 0
    cfg = RunConfig.load(tmp_path / "run" / "config.yaml")
    assert cfg.model.spatial_dims == 3
    assert cfg.data.target_spacing == (1.0, 1.0, 1.0)
    image, mask = open_dataset(cfg.data, 3, cfg.model.classes).load(0)
    assert image.shape == (1, 24, 20, 24)
    assert mask.shape == (24, 20, 24)  # 8 slices of 3 mm -> 24 of 1 mm
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    images, out_dir = str(tmp_path / "d" / "images"), str(tmp_path / "p")
    assert main(["predict", "--checkpoint", ckpt, "--inputs", images, "--out", out_dir, "--probabilities"]) == 0
    for i in range(3):
        out, meta = read_with_meta(tmp_path / "p" / f"{i}_mask.nii.gz")
        assert out.shape == (1, 24, 20, 8)
        np.testing.assert_allclose(meta.affine, affine, atol=1e-5)
        assert meta.spacing == pytest.approx((1.0, 1.0, 3.0))
