"""The plugin's work without Qt (unetpp.napari.core, .sample): the same masks as `unetpp predict`, bit for bit.

Every comparison runs the CLI in this process on a file and the plugin on the array napari holds for that
file, and compares the stored mask (and the probabilities) exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetpp
from unetpp.cli import main
from unetpp.napari import compare, core, sample

from .conftest import MANIFEST, as_stored, cli_predict, em_image

ROOT = Path(__file__).resolve().parents[2]


def test_import_unetpp_imports_neither_napari_nor_qt() -> None:
    code = (
        "import json, sys, unetpp, unetpp.inference, unetpp.napari, unetpp.napari.core, unetpp.napari.compare\n"
        "import unetpp.napari.sample, unetpp.napari.guard\n"
        "gui = {'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy', 'magicgui', 'superqt', 'npe2'}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & gui)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_manifest_names_importable_contributions_and_is_shipped() -> None:
    npe2 = pytest.importorskip("npe2", reason="npe2 comes with the napari extra")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()
    assert manifest.name == "unetpp"
    assert [w.display_name for w in manifest.contributions.widgets] == ["unetpp: segment"]
    assert [s.key for s in manifest.contributions.sample_data] == ["synthetic_em"]
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads TOML")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"] == {"unetpp": "unetpp.napari:napari.yaml"}
    assert "napari/napari.yaml" in project["tool"]["setuptools"]["package-data"]["unetpp"]
    assert any(r.startswith("napari") for r in project["project"]["optional-dependencies"]["napari"])


@pytest.mark.parametrize("depth", [None, 1, 2])
def test_a_2d_image_gives_the_cli_mask_and_probabilities(run_ckpt, tmp_path, depth) -> None:
    image, _ = em_image(64)
    np.save(tmp_path / "em.npy", image)
    extra = ["--probabilities"] + ([] if depth is None else ["--depth", str(depth)])
    mask, prob = cli_predict(run_ckpt, tmp_path / "em.npy", tmp_path / "out", *extra)
    opened = core.open_model(run_ckpt)
    assert opened.prep["channels"] == "grey"  # the run's preprocessing, repeated
    mode = "ensemble" if depth is None else f"select:{depth}"
    got = core.segment(opened, core.Source(image), mode, runtime="torch", probabilities=True)
    assert got.labels.dtype == mask.dtype
    assert np.array_equal(got.labels, mask)
    assert np.array_equal(got.probabilities, prob)
    assert got.mode == ("ensemble" if depth is None else f"L{depth}")
    assert 0 < got.labels.mean() < 1  # a mask with both classes: the comparison means something


def test_an_rgb_png_is_converted_as_the_checkpoint_records(run_ckpt, tmp_path) -> None:
    image, _ = em_image(48)
    rgb = np.stack([image, image // 2, 255 - image], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "em.png")
    mask, _ = cli_predict(run_ckpt, tmp_path / "em.png", tmp_path / "out", "--depth", "2")
    layer_data = np.asarray(Image.open(tmp_path / "em.png"))  # what napari holds: (H, W, 3), rgb=True
    got = core.segment(core.open_model(run_ckpt), core.Source(layer_data, rgb=True), "select:2", runtime="torch")
    assert np.array_equal(as_stored(got.labels, ".png"), mask)


def test_small_components_go_as_the_cli_removes_them(run_ckpt, tmp_path) -> None:
    import torch
    from scipy import ndimage

    image, _ = em_image(64)
    np.save(tmp_path / "em.npy", image)
    full = core.segment(core.open_model(run_ckpt), core.Source(image), runtime="torch", postprocess=False).labels
    sizes = np.bincount(ndimage.label(full, np.ones((3, 3)))[0].ravel())[1:]
    assert len(sizes) > 1  # some components are smaller than others: a size between them removes some
    recorded = tmp_path / "best.ckpt"
    ckpt = torch.load(run_ckpt, weights_only=True)
    ckpt["unetpp"]["postprocess"] = {"min_size": [int(np.median(sizes)) + 1]}
    torch.save(ckpt, recorded)
    mask, _ = cli_predict(recorded, tmp_path / "em.npy", tmp_path / "out")
    got = core.segment(core.open_model(recorded), core.Source(image), runtime="torch")
    assert np.array_equal(got.labels, mask)
    assert 0 < got.labels.sum() < full.sum()
    kept = core.segment(core.open_model(recorded), core.Source(image), runtime="torch", postprocess=False).labels
    assert np.array_equal(kept, full)


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_a_volume_gives_the_cli_mask_with_tta(volume_model, tmp_path, suffix) -> None:
    volume = (np.random.default_rng(0).random((18, 20, 13)) * 1000).astype(np.uint16)
    path = tmp_path / f"vol{suffix}"
    if suffix == ".npy":
        np.save(path, volume)
    else:
        __import__("tifffile").imwrite(path, volume)
    mask, _ = cli_predict(volume_model, path, tmp_path / "out", "--tta")
    got = core.segment(core.open_model(volume_model), core.Source(volume), tta=True, runtime="torch")
    assert got.labels.shape == volume.shape
    assert np.array_equal(as_stored(got.labels, suffix), mask)
    assert 0 < got.labels.mean() < 1


def test_a_stack_with_a_2d_model_is_segmented_plane_by_plane(run_ckpt, tmp_path) -> None:
    stack = np.stack([em_image(48, k)[0] for k in range(3)])
    opened = core.open_model(run_ckpt)
    got = core.segment(opened, core.Source(stack), runtime="torch")
    assert got.labels.shape == stack.shape
    for k, plane in enumerate(stack):
        np.save(tmp_path / f"p{k}.npy", plane)
        mask, _ = cli_predict(run_ckpt, tmp_path / f"p{k}.npy", tmp_path / "out")
        assert np.array_equal(got.labels[k], mask)


def test_an_onnx_file_gives_the_cli_mask(run_ckpt, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "em.onnx"
    assert main(["export", "--checkpoint", str(run_ckpt), "--format", "onnx", "--out", str(onnx)]) == 0
    image, _ = em_image(64)
    np.save(tmp_path / "em.npy", image)
    mask, _ = cli_predict(onnx, tmp_path / "em.npy", tmp_path / "out", "--depth", "1")
    opened = core.open_model(onnx)
    assert not opened.is_torch
    got = core.segment(opened, core.Source(image), "select:1", runtime="auto")  # an ONNX file runs as it is
    assert np.array_equal(got.labels, mask)
    assert got.runtime == "onnxruntime"


def test_several_classes_give_the_cli_label_map(multiclass_model, tmp_path) -> None:
    image = (np.random.default_rng(1).random((40, 36)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", image)
    mask, prob = cli_predict(multiclass_model, tmp_path / "x.npy", tmp_path / "out", "--probabilities")
    got = core.segment(core.open_model(multiclass_model), core.Source(image), runtime="torch", probabilities=True)
    assert np.array_equal(got.labels, mask)
    assert np.array_equal(got.probabilities, prob)
    assert got.probabilities.shape == (3, 40, 36)
    assert len(np.unique(got.labels)) > 1


def test_a_detector_gives_the_cli_instance_label_map(detector_file, tmp_path) -> None:
    image = np.full((64, 64), 30, np.uint8)
    image[8:28, 10:30], image[36:58, 34:60] = 220, 180
    Image.fromarray(image).save(tmp_path / "cells.png")
    mask, _ = cli_predict(detector_file, tmp_path / "cells.png", tmp_path / "out")
    opened = core.open_model(detector_file)
    assert opened.kind == "instance"
    got = core.segment(opened, core.Source(np.asarray(Image.open(tmp_path / "cells.png"))))
    assert got.labels.dtype == mask.dtype == np.uint16
    assert np.array_equal(got.labels, mask)
    assert got.labels.max() >= 2  # several instances
    with pytest.raises(unetpp.ConfigError, match="not a detector"):
        compare.compare_depths(opened, core.Source(image))


def _cli_error(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_errors_are_the_cli_lines(run_ckpt, tmp_path, capsys) -> None:
    image = tmp_path / "em.npy"
    np.save(image, em_image(32)[0])
    out = str(tmp_path / "out")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "not_a_model.png")
    line = _cli_error(
        capsys, "predict", "--checkpoint", str(tmp_path / "not_a_model.png"), "--inputs", str(image), "--out", out
    )
    with pytest.raises(unetpp.UnetppError) as e:
        core.open_model(tmp_path / "not_a_model.png")
    assert f"unetpp: error: {e.value}" == line

    two = unetpp.save(unetpp.build_model("unet++", depth=2, widths=(4, 8, 16), in_channels=2), tmp_path / "two.pt")
    line = _cli_error(capsys, "predict", "--checkpoint", str(two), "--inputs", str(image), "--out", out)
    with pytest.raises(unetpp.DataError) as e:
        core.segment(core.open_model(two), core.Source(np.load(image), name=str(image)), runtime="torch")
    assert f"unetpp: error: {e.value}" == line
    assert "channel" in line

    with pytest.raises(unetpp.DataError, match="is 1-D"):
        core.segment(core.open_model(run_ckpt), core.Source(np.zeros(5), name="line"))
    with pytest.raises(unetpp.ConfigError, match="threshold"):
        core.segment(core.open_model(run_ckpt), core.Source(np.zeros((8, 8))), threshold=1.5)


def test_compare_depths_gives_every_mode_with_parameters_and_scores(run_ckpt) -> None:
    image, truth = em_image(64)
    opened = core.open_model(run_ckpt)
    rows = compare.compare_depths(opened, core.Source(image), runtime="torch", truth=truth)
    assert [r.result.mode for r in rows] == ["ensemble", "L1", "L2"]
    params = [r.parameters for r in rows]
    assert params[0] == sum(p.numel() for p in opened.model.parameters())
    assert params[1:] == [sum(p.numel() for p in unetpp.prune(opened.model, d).parameters()) for d in (1, 2)]
    assert params[1] < params[2] < params[0]
    single = core.segment(opened, core.Source(image), "select:2", runtime="torch")
    assert np.array_equal(rows[2].result.labels, single.labels)
    for row in rows:
        assert row.result.seconds > 0
        assert (row.iou, row.dice) == pytest.approx(compare.scores(row.result.labels, truth, 1))
        assert 0 <= row.iou <= row.dice <= 1
    assert compare.scores(truth, truth, 1) == (1.0, 1.0)
    with pytest.raises(unetpp.DataError, match="shape"):
        compare.scores(truth, truth[:10], 1, "truth")


def test_scores_of_several_classes_leave_the_background_out() -> None:
    truth = np.array([[0, 1], [2, 2]])
    assert compare.scores(truth, truth, 3) == (1.0, 1.0)
    iou, dice = compare.scores(np.array([[0, 1], [2, 0]]), truth, 3)
    assert iou == pytest.approx((1 + 0.5) / 2)
    assert dice == pytest.approx((1 + 2 / 3) / 2)


def test_cancelling_stops_between_two_forward_passes(run_ckpt) -> None:
    stack = np.zeros((6, 32, 32), np.uint8)
    cancel, seen = threading.Event(), []

    def progress(done: int, total: int, what: str) -> None:
        seen.append((done, total))
        cancel.set()  # cancelled after the first pass

    with pytest.raises(core.Cancelled):
        core.segment(core.open_model(run_ckpt), core.Source(stack), runtime="torch", progress=progress, cancel=cancel)
    assert seen == [(1, 6)]  # one pass per plane counted, then stopped at the second


def test_the_sample_model_is_trained_once_then_cached(monkeypatch) -> None:
    monkeypatch.setattr(sample, "STEPS", 2)
    path = sample.sample_model_path()
    assert path == Path(os.environ["XDG_CACHE_HOME"]) / "unetpp" / "napari" / "v1" / "em-sample.pt"
    path.unlink(missing_ok=True)
    seen = []
    assert sample.ensure_sample_model(lambda done, total, what: seen.append((done, total, what))) == path
    assert seen[-1] == (2, 2, "training the sample model")
    stamp = path.stat().st_mtime_ns
    assert sample.ensure_sample_model() == path
    assert path.stat().st_mtime_ns == stamp  # not trained again
    opened = core.open_model(path)
    assert opened.heads == (1, 2, 3, 4)
    (image, image_meta, kind), (truth, truth_meta, truth_kind) = sample.synthetic_em()
    assert (kind, truth_kind, image.shape, image.dtype) == ("image", "labels", (256, 256), np.uint8)
    assert image_meta["metadata"]["unetpp"] == {"model": str(path), "truth": truth_meta["name"]}
    assert set(np.unique(truth)) == {0, 1}


def test_a_cancelled_sample_training_writes_nothing(tmp_path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(core.Cancelled):
        sample.train_sample_model(tmp_path / "m.pt", 3, cancel=cancel)
    assert not (tmp_path / "m.pt").exists()


def test_the_sample_model_learns_the_sample(tmp_path) -> None:
    """A short training (30 steps, 32² crops) already beats chance clearly on the held-out sample image."""
    path = sample.train_sample_model(tmp_path / "m.pt", 30, widths=(4, 8, 16), size=32)
    image, truth = sample.sample_image()
    got = core.segment(core.open_model(path), core.Source(image), runtime="torch")
    iou, _ = compare.scores(got.labels, truth, 1)
    assert iou > 0.8  # all-foreground would score the interior fraction, about 0.75


def test_runtime_auto_runs_the_fastest_runtime_that_matches_eager(run_ckpt) -> None:
    image, _ = em_image(64)
    opened = core.open_model(run_ckpt)
    eager = core.segment(opened, core.Source(image), runtime="torch", probabilities=True)
    auto = core.segment(opened, core.Source(image), runtime="auto", probabilities=True)
    assert auto.runtime in ("torch", "onnxruntime", "openvino")
    assert np.abs(auto.probabilities - eager.probabilities).max() <= 1e-4  # what auto accepts


def test_flips_chosen_on_validation_are_the_default_as_in_the_cli(run_ckpt, tmp_path) -> None:
    import torch

    ckpt = torch.load(run_ckpt, weights_only=True)
    trained = (ckpt["unetpp"].get("tta") or {}).get("use", False)  # what the fixture's training chose
    ckpt["unetpp"]["tta"] = {"use": True, "iou": 0.8, "iou_tta": 0.81, "images": 4, "seconds": 1.0}
    chosen = tmp_path / "flips.ckpt"
    torch.save(ckpt, chosen)
    image, _ = em_image(64)
    np.save(tmp_path / "em.npy", image)
    mask, prob = cli_predict(chosen, tmp_path / "em.npy", tmp_path / "out", "--probabilities")
    opened = core.open_model(chosen)
    assert opened.tta is True  # the widget's box starts checked
    assert core.open_model(run_ckpt).tta is trained
    got = core.segment(opened, core.Source(image), runtime="torch", probabilities=True)
    assert np.array_equal(got.labels, mask)
    assert np.array_equal(got.probabilities, prob)
    single = core.segment(opened, core.Source(image), tta=False, runtime="torch", probabilities=True)
    assert not np.array_equal(single.probabilities, prob)  # the flips made a difference that the default kept
