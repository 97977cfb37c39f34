"""Refusals and kills that left files behind, and predictions into their own input folder (issue 23, items 8, 9)."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
import torch

from unetpp.cli import main
from unetpp.data.download import extract
from unetpp.errors import DataError

from .conftest import TINY_TRAIN, cli, snapshot

pytestmark = pytest.mark.bad_input


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_predict_refuses_its_own_input_folder_unless_asked(how, model_file, data, fails) -> None:
    images = data / "images"
    before = snapshot(images)
    inputs = images if how == "folder" else f"{images}/*.png"
    line = fails(["predict", "--checkpoint", model_file, "--inputs", inputs, "--out", images])
    assert "holds the inputs (e.g. 000.png)" in line
    assert "--allow-input-folder" in line
    assert snapshot(images) == before


def test_predict_into_its_input_folder_knows_its_outputs_by_the_manifest(model_file, data) -> None:
    images = data / "images"
    shutil.copy(images / "000.png", images / "scan_mask.png")  # the user's image, whatever its name
    args = ["predict", "--checkpoint", str(model_file), "--out", str(images), "--allow-input-folder"]
    assert main([*args, "--inputs", f"{images}/*.png"]) == 0
    first = snapshot(images)
    assert "scan_mask_mask.png" in first  # predicted like any other input
    assert main([*args, "--inputs", f"{images}/*.png"]) == 0  # a rerun: its own masks are not inputs
    assert main([*args, "--inputs", str(images)]) == 0
    assert snapshot(images) == first
    assert not any("_mask_mask" in n and not n.startswith("scan") for n in first)


def test_predict_leaves_nothing_when_the_first_input_does_not_fit(model_file, tmp_path, fails) -> None:
    np.save(tmp_path / "five.npy", np.zeros((5, 32, 32), np.float32))  # 5 channels, the model takes 1
    line = fails(["predict", "--checkpoint", model_file, "--inputs", tmp_path / "five.npy", "--out", tmp_path / "o/p"])
    assert "five.npy: image has 5 channel(s)" in line
    assert not (tmp_path / "o").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / ".unetpp-predict.json").write_text('{"settings": null, "outputs": ["x_mask.png"]}')
    before = snapshot(tmp_path / "kept")
    fails(["predict", "--checkpoint", model_file, "--inputs", tmp_path / "five.npy", "--out", tmp_path / "kept"])
    assert snapshot(tmp_path / "kept") == before


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--size-bins", "500", "10"], "--size-bins 500 10: expected two or more increasing"),
        (["--models", "unet:depth=2,widths=4-8"], "model 'unet:depth=2,widths=4-8': widths must be 3"),
    ],
    ids=["size bins", "model spec"],
)
def test_a_study_refused_leaves_no_folder(args, said, data, tmp_path, fails) -> None:
    base = ["compare", "--out", tmp_path / "study", "--data", data, "--epochs", "1", "--test-fraction", "0.34"]
    if "--models" not in args:
        base += ["--models", "unet:depth=2,widths=4-8-16"]
    assert said in fails([*base, *args])
    assert not (tmp_path / "study").exists()


def test_demo_with_zero_epochs_writes_no_data(tmp_path, fails) -> None:
    assert "--epochs: got 0; expected an integer >= 1" in fails(["demo", "--out", tmp_path / "demo", "--epochs", "0"])
    assert not (tmp_path / "demo").exists()


def test_a_rerun_removes_what_a_killed_predict_left(model_file, data, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", model_file, "--inputs", data / "images", "--out", out, "--no-overlay"]
    assert cli(args, fault="kill-replace:001_mask.png:1").returncode == -9
    assert [p.name for p in out.glob(".001_mask.png.*.tmp*")]  # killed between its write and its rename
    done = cli(args)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        ".unetpp-predict.json",
        "000_mask.png",
        "001_mask.png",
        "002_mask.png",
    ]


def test_a_rerun_removes_what_a_killed_export_left(model_file, tmp_path) -> None:
    pytest.importorskip("onnx")
    args = ["export", "--checkpoint", model_file, "--format", "onnx", "--out", tmp_path / "m.onnx"]
    assert cli(args, fault="kill-replace:m.onnx:1").returncode == -9
    assert list(tmp_path.glob(".m.onnx.*.tmp*"))
    done = cli(args)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob(".m.*"))


def test_a_killed_resume_leaves_no_empty_log_part(trained_run, tmp_path) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    resume = ["train", "--run-dir", run, "--resume", "--epochs", "3", *TINY_TRAIN]
    assert cli(resume, fault=f"kill-step:{step + 1}").returncode == -9
    assert [p.name for p in (run / "logs").glob("part-*") if not (p / "metrics.csv").is_file()]  # the killed one
    assert main([str(a) for a in resume]) == 0
    parts = sorted((run / "logs").glob("part-*"))
    assert all((p / "metrics.csv").is_file() for p in parts)
    assert [p.name for p in parts] == [f"part-{k:03d}" for k in range(len(parts))]


def test_a_corrupt_archive_leaves_nothing_extracted(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("d/one.txt", "A" * 1000)
        z.writestr("d/two.txt", "B" * 1000)
    raw = bytearray((tmp_path / "a.zip").read_bytes())
    at = raw.find(b"B" * 100)
    raw[at + 10 : at + 20] = b"X" * 10  # the second member's CRC no longer matches
    (tmp_path / "a.zip").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="a.zip: not a readable archive"):
        extract(tmp_path / "a.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
