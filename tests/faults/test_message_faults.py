"""Messages that named the wrong cause, the wrong file or an internal name (issue 23, item 10)."""

from __future__ import annotations

import importlib
import shutil

import numpy as np
import pytest
from PIL import Image

from unetpp.cli import main

pytestmark = pytest.mark.bad_input

TINY_MODEL = ["--set", "model.depth=2", "model.widths=[4,8,16]", "data.patches_per_image=1", "train.progress=false"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_too_many_workers_are_named_as_the_cause(data, tmp_path, fails) -> None:
    line = fails(["train", "--data", data, "--run-dir", tmp_path / "run", "--workers", "48", "--memory-gb", "4"])
    assert "is data loading (worker processes, cached images): lower --workers" in line
    assert "patch_size" not in line
    assert "widths=" not in line
    assert not (tmp_path / "run").exists()


def test_bench_of_an_onnx_file_does_not_claim_bench_runs_it(tmp_path, fails) -> None:
    (tmp_path / "m.onnx").write_bytes(b"whatever")
    line = fails(["bench", "--checkpoint", tmp_path / "m.onnx", "--shapes", "1x1x32x32"])
    assert "predict runs .onnx files" in line
    assert "bench run" not in line


def test_the_soft_mask_note_names_the_noisy_mask_not_the_clean_ones(data, tmp_path, capsys) -> None:
    clean = tmp_path / "clean"
    shutil.copytree(data, clean)
    noisy = data / "masks" / "002.png"
    m = np.array(Image.open(noisy)).astype(np.int32)
    noise = np.random.default_rng(0).integers(0, 9, m.shape)
    Image.fromarray(np.where(m > 0, 255 - noise, noise).astype(np.uint8)).save(noisy)  # JPEG-like noise
    assert main(["plan", "--data", str(clean)]) == 0
    want = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("labels")).split("classes")[1]
    assert main(["plan", "--data", str(data)]) == 0
    got = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("labels"))
    assert got.startswith("labels     noisy-binary")
    assert got.split("classes")[1] == want  # the clean 0/255 masks keep their foreground under the threshold
    run = ["train", "--data", str(data), "--run-dir", str(tmp_path / "run"), "--epochs", "1", *TINY_MODEL]
    assert main([*run, "data.num_workers=0"]) == 0
    (note,) = capsys.readouterr().err.strip().splitlines()  # one line for the data set
    assert note.startswith("masks thresholded at 127.5")
    assert f"in 1 mask file(s) ({noisy})" in note


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["predict", "--overlap", "2"], "--overlap: got 2.0; expected a fraction in [0, 1)"),
        (["bench", "--reps", "0"], "--reps: got 0; expected an integer >= 1"),
        (["train", "--epochs", "1"], "1 image(s) cannot be split into training and validation"),
    ],
    ids=["overlap", "reps", "one image"],
)
def test_messages_name_options_not_internal_arguments(args, said, model_file, data, tmp_path, fails) -> None:
    for name in ("001.png", "002.png"):
        for sub in ("images", "masks"):
            (data / sub / name).unlink()
    where = {
        "predict": ["--checkpoint", model_file, "--inputs", data / "images", "--out", tmp_path / "out"],
        "bench": ["--checkpoint", model_file, "--shapes", "1x1x32x32"],
        "train": ["--data", data, "--run-dir", tmp_path / "run", *TINY_MODEL],
    }[args[0]]
    line = fails([*args, *where])
    assert said in line
    assert " n must" not in line
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["predict", "plan"])
def test_ctrl_c_outside_training_does_not_speak_of_resuming_a_run(
    command, model_file, data, tmp_path, fails, monkeypatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if command == "predict":
        from unetpp.inference import Predictor

        monkeypatch.setattr(Predictor, "predict_files", interrupted)
        args = ["predict", "--checkpoint", model_file, "--inputs", data / "images", "--out", tmp_path / "out"]
    else:
        module = importlib.import_module("unetpp.plan.fingerprint")  # the package exports a function of that name
        monkeypatch.setattr(module, "fingerprint", interrupted)
        args = ["plan", "--data", data]
    line = fails(args, code=130)
    assert "--resume" not in line
    assert "interrupted" in line
