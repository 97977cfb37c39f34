"""On a CUDA machine, one command (`make test-gpu`) says whether training, prediction and export work there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_train_predict_export_on_cuda_with_amp(tmp_path: Path, precision: str, scale) -> None:
    run = tmp_path / "run"
    done = scale.run(
        [
            "train",
            "--run-dir",
            run,
            "--epochs",
            "2",
            "--accelerator",
            "gpu",
            "--devices",
            "1",
            "--precision",
            precision,
            *scale.TINY,
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = run / "checkpoints" / "last.ckpt"
    weights = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())  # the scaler did its job
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray((np.random.default_rng(0).random((64, 80)) * 255).astype("uint8")).save(images / "a.png")
    out = scale.run(
        ["predict", "--checkpoint", ckpt, "--inputs", images, "--out", tmp_path / "gpu", "--accelerator", "gpu"]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    cpu = scale.run(["predict", "--checkpoint", ckpt, "--inputs", images, "--out", tmp_path / "cpu"])
    assert cpu.returncode == 0, cpu.stderr[-3000:]
    a = np.asarray(Image.open(tmp_path / "gpu" / "a_mask.png"), dtype=float)
    b = np.asarray(Image.open(tmp_path / "cpu" / "a_mask.png"), dtype=float)
    assert (a != b).mean() < 0.01  # TF32 kernels on the GPU may flip a few border pixels
    exported = scale.run(["export", "--checkpoint", ckpt, "--format", "onnx", "--out", tmp_path / "m.onnx"])
    assert exported.returncode == 0, exported.stderr[-3000:]


def test_ddp_on_every_gpu(tmp_path: Path, scale) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    run = tmp_path / "run"
    done = scale.run(
        [
            "train",
            "--run-dir",
            run,
            "--epochs",
            "1",
            "--accelerator",
            "gpu",
            "--devices",
            "2",
            "--strategy",
            "ddp",
            *scale.TINY,
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "checkpoints" / "best.ckpt").is_file()
