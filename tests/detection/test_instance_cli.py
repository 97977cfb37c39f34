"""Instances through the engine and the CLI: train --task instance, resume, evaluate, predict; bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import unetpp
from unetpp.cli import main
from unetpp.config import RunConfig
from unetpp.detection import Detector
from unetpp.inference.instances import predict_instance_files
from unetpp.utils.run_metrics import read_run_metrics

TINY = [
    "--task",
    "instance",
    "--model",
    "maskrcnn++",
    "--layout",
    "dsb2018",
    "--encoder",
    "test_resnet",
    "--channels",
    "grey",
    "--batch-size",
    "2",
    "--workers",
    "0",
    "--set",
    "model.encoder_weights=null",
    "model.pyramid_width=16",
    "data.patch_size=[48,48]",
    "data.patches_per_image=1",
    "data.val_fraction=0.25",
    "train.progress=false",
]


def square_labels(seed: int, size: int = 64) -> np.ndarray:
    """A label map with 2 or 3 non-touching squares (nuclei), placed by `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.uint16)
    for k, (y, x) in enumerate([(4, 4), (36, 8), (20, 40)][: 2 + seed % 2], start=1):
        dy, dx = rng.integers(0, 8, 2)
        labels[y + dy : y + dy + 12, x + dx : x + dx + 12] = k
    return labels


def write_dsb(root: Path, labels: np.ndarray, name: str) -> None:
    """One sample in Kaggle's DSB layout: an RGBA image and one mask PNG per nucleus."""
    (root / name / "images").mkdir(parents=True)
    (root / name / "masks").mkdir()
    image = np.full((*labels.shape, 4), 255, np.uint8)
    image[..., :3] = 30 + 170 * (labels > 0)[..., None]
    Image.fromarray(image).save(root / name / "images" / f"{name}.png")
    for k in range(1, int(labels.max()) + 1):
        Image.fromarray(((labels == k) * 255).astype(np.uint8)).save(root / name / "masks" / f"m{k}.png")


@pytest.fixture(scope="module")
def dsb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dsb")
    for i in range(6):
        write_dsb(root, square_labels(i), name=f"img{i}")
    return root


@pytest.fixture(scope="module")
def run(dsb, tmp_path_factory) -> Path:
    """One tiny instance run (2 epochs) shared by the tests below."""
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", *TINY, "--data", str(dsb), "--epochs", "2", "--run-dir", str(folder)]) == 0
    return folder


def test_train_writes_an_instance_run(run) -> None:
    cfg = RunConfig.load(run / "config.yaml")
    assert (cfg.model.task, cfg.model.name, cfg.model.pyramid_width) == ("instance", "maskrcnn++", 16)
    metrics = read_run_metrics(run)
    assert [e for e, _ in metrics["val/score"]] == [0, 1]  # validated every epoch, with the Table V columns
    for key in ("val/ap50", "val/iou", "val/dice", "train/loss_mask", "train/loss_objectness"):
        assert key in metrics
    total = dict(metrics["train/loss"])[0]
    parts = sum(dict(metrics[f"train/{k}"])[0] for k in ("loss_classifier", "loss_box_reg", "loss_mask"))
    parts += sum(dict(metrics[f"train/{k}"])[0] for k in ("loss_objectness", "loss_rpn_box_reg"))
    assert total == pytest.approx(parts, rel=1e-4)  # the step sums torchvision's losses
    model = unetpp.load(run / "checkpoints" / "best.ckpt")  # the header rebuilds the detector
    assert isinstance(model, Detector)
    assert model.config["min_size"] is None
    assert model.config["in_channels"] == 1
    assert model.config["classes"] == 2
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["unetpp"]["config"]["name"] == "maskrcnn++"


def test_resume_continues_the_instance_run(dsb, tmp_path) -> None:
    folder = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(dsb), "--epochs", "1", "--run-dir", str(folder)]) == 0
    step = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert main(["train", "--run-dir", str(folder), "--resume", "--epochs", "2"]) == 0
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * step
    assert [e for e, _ in read_run_metrics(folder)["val/score"]] == [0, 1]


def test_evaluate_and_predict_agree(run, dsb, tmp_path, capsys) -> None:
    out = tmp_path / "scores.csv"
    ckpt = str(run / "checkpoints" / "best.ckpt")
    assert main(["evaluate", "--checkpoint", ckpt, "--data", str(dsb), "--layout", "dsb2018", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for column in ("IoU %", "Dice %", "DSB score", "AP@0.5", "precision", "recall"):
        assert column in printed
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == [f"img{i}" for i in range(6)] + ["mean"]
    assert [int(r["n_true"]) for r in rows[:6]] == [2 + i % 2 for i in range(6)]
    inputs = [str(dsb / f"img{i}" / "images" / f"img{i}.png") for i in range(6)]
    assert main(["predict", "--checkpoint", ckpt, "--inputs", *inputs, "--out", str(tmp_path / "pred")]) == 0
    for i, row in enumerate(rows[:6]):
        labels = np.asarray(Image.open(tmp_path / "pred" / f"img{i}_mask.png"))
        assert labels.dtype == np.uint16
        assert labels.shape == (64, 64)
        assert len(np.unique(labels[labels > 0])) == int(row["n_pred"])  # the instances evaluate scored
        assert np.asarray(Image.open(tmp_path / "pred" / f"img{i}_overlay.png")).shape == (64, 64, 3)


class FixedDetector(nn.Module):
    """Stands in for a trained detector: always the same three instances (one below the 0.5 score)."""

    config = {"name": "maskrcnn++", "in_channels": 1}

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.roi_heads = type("Heads", (), {"score_thresh": 0.05})()

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        h, w = images[0].shape[-2:]
        masks = torch.zeros(3, 1, h, w)
        masks[0, 0, 2:10, 2:10], masks[1, 0, 8:20, 8:20], masks[2, 0, 30:40, 30:40] = 0.9, 0.8, 0.9
        scores = torch.tensor([0.9, 0.7, 0.3])
        keep = scores >= self.roi_heads.score_thresh
        return [{"boxes": torch.zeros(int(keep.sum()), 4), "scores": scores[keep], "masks": masks[keep]}]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_predict_writes_16_bit_label_maps_in_the_input_format(tmp_path, suffix) -> None:
    image = tmp_path / f"cells{suffix}"
    Image.fromarray(np.full((48, 48), 100, np.uint8)).save(image)
    done = predict_instance_files(FixedDetector(), [image], tmp_path / "out")
    assert done[0].mask.name == f"cells_mask{suffix}"
    labels = np.asarray(Image.open(done[0].mask)) if suffix == ".png" else __import__("tifffile").imread(done[0].mask)
    assert labels.dtype == np.uint16
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]  # the 0.3-score instance is dropped
    assert labels[9, 9] == 1  # overlap goes to the higher score
    overlay = np.asarray(Image.open(done[0].overlay))
    assert not np.array_equal(overlay[5, 5], overlay[15, 15])  # one colour per instance
    with pytest.raises(unetpp.DataError, match="output exists"):
        predict_instance_files(FixedDetector(), [image], tmp_path / "out")


def test_semantic_models_get_the_instance_columns(dsb, tmp_path, capsys, tiny_model) -> None:
    path = unetpp.save(tiny_model(), tmp_path / "unetpp.pt")
    out = tmp_path / "scores.csv"
    args = ["evaluate", "--checkpoint", str(path), "--data", str(dsb), "--layout", "dsb2018", "--instances"]
    assert main([*args, "--out", str(out)]) == 0
    assert "DSB score" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 7
    assert all(0 <= float(r["dsb_score"]) <= 1 for r in rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "maskrcnn++"], "set model.task=instance"),
        (["--task", "instance", "--model", "maskrcnn++", "--layout", "isbi2012"], "has no instance labels"),
        (["--task", "instance", "--model", "unet++"], "expected one of maskrcnn, maskrcnn++"),
    ],
)
def test_bad_instance_options_are_one_line(dsb, tmp_path, capsys, extra, message) -> None:
    args = ["train", "--data", str(dsb), "--run-dir", str(tmp_path / "r"), "--encoder", "test_resnet", *extra]
    args += ["--set", "model.encoder_weights=null"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0], err
    assert not (tmp_path / "r").exists()


def test_a_label_map_with_a_gap_is_one_line_in_evaluate(run, tmp_path, capsys) -> None:
    labels = np.zeros((32, 32), np.uint16)
    labels[2:6, 2:6], labels[10:14, 10:14] = 1, 3  # id 2 missing
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(np.full((32, 32), 50, np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(labels).save(tmp_path / "labels" / "a.png")
    ckpt = str(run / "checkpoints" / "best.ckpt")
    args = ["evaluate", "--checkpoint", ckpt, "--data", str(tmp_path), "--out", str(tmp_path / "s.csv")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "without gaps" in err[0], err
