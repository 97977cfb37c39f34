"""Flips at prediction are measured on validation at the end of training and recorded; prediction follows the record
unless told (``--tta`` / ``--no-tta``), and the record travels with exported and shared models (issue 19).
"""

from __future__ import annotations

import pytest
import torch

import unetpp
from unetpp.cli import main
from unetpp.config import RunConfig
from unetpp.data.synthetic import write_synthetic_dataset
from unetpp.engine.train import fit
from unetpp.engine.tta import MIN_IMAGES, TTA_MARGIN, check_image, choose_prediction, measure_prediction
from unetpp.evaluation.semantic import evaluate
from unetpp.inference import PredictOptions, Predictor
from unetpp.models.provenance import recorded_tta

from ..conftest import TINY_RUN


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    run = tmp_path_factory.mktemp("tta") / "run"
    fit(RunConfig().override([*TINY_RUN, "train.max_epochs=2"]), run)
    return run / "checkpoints" / "best.ckpt"


def _with_tta(best, tmp_path, use: bool):
    """A copy of `best` whose record says validation chose flips (`use`) or not."""
    ckpt = torch.load(best, weights_only=True)
    ckpt["unetpp"]["ensemble_heads"] = [1, 2]  # measured on both heads
    ckpt["unetpp"]["tta"] = {"use": use, "iou": 0.8, "iou_tta": 0.81 if use else 0.8, "images": 4, "seconds": 1.0}
    path = tmp_path / f"tta_{use}.ckpt"
    torch.save(ckpt, path)
    return path


def test_training_records_the_flips_it_measured_on_validation(best) -> None:
    choice = torch.load(best, weights_only=True)["unetpp"]["tta"]
    assert choice["images"] >= MIN_IMAGES  # no time limit: every validation image of the tiny run
    assert 0.0 <= choice["iou"] <= 1.0
    assert 0.0 <= choice["iou_tta"] <= 1.0
    assert choice["use"] is (choice["iou_tta"] - choice["iou"] >= TTA_MARGIN)
    assert recorded_tta(best) is choice["use"]


def test_the_check_scores_as_evaluate_does(best) -> None:
    model = unetpp.load(best)
    sample = {"image": torch.randn(1, 48, 40), "mask": (torch.rand(1, 48, 40) > 0.5).long(), "id": "x"}
    one, flipped = check_image(model, sample, [1, 2]).iou
    rows = {
        t: {r.mode: r.iou for r in evaluate(model, [sample], with_hd95=False, ensemble_heads=[1, 2], tta=t)}
        for t in (False, True)
    }
    assert one == pytest.approx(rows[False]["chosen"], abs=1e-6)
    assert flipped == pytest.approx(rows[True]["chosen"], abs=1e-6)


def test_no_time_for_the_check_records_nothing(best, tmp_path) -> None:
    samples = [{"image": torch.randn(1, 64, 64), "mask": torch.zeros(1, 64, 64, dtype=torch.long), "id": "a"}] * 3
    assert measure_prediction(unetpp.load(best), samples, None, seconds=0.0) is None
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(best.read_bytes())
    ckpt = torch.load(copy, weights_only=True)
    del ckpt["unetpp"]["tta"]
    ckpt["unetpp"].pop("postprocess", None)
    torch.save(ckpt, copy)
    assert choose_prediction(copy, samples, seconds=0.0, bf16=False) is None
    assert recorded_tta(copy) is None
    assert "postprocess" not in torch.load(copy, weights_only=True)["unetpp"]


def test_prediction_follows_the_record_unless_told(best, tmp_path) -> None:
    image = torch.randn(1, 64, 64)
    on, off = _with_tta(best, tmp_path, True), _with_tta(best, tmp_path, False)
    flipped = Predictor(off, PredictOptions(tta=True))(image)
    single = Predictor(on, PredictOptions(tta=False))(image)
    assert (flipped - single).abs().max() > 1e-4  # the tiny model is not flip-invariant: the choice shows
    torch.testing.assert_close(Predictor(on)(image), flipped)
    torch.testing.assert_close(Predictor(off)(image), single)
    assert Predictor(on).settings()["tta"] is True
    assert Predictor(on, PredictOptions(head=2)).tta is False  # measured on the ensemble, not on one head
    assert Predictor(unetpp.load(on)).tta is False  # a model in memory records nothing: one pass


def test_evaluate_scores_as_predict_runs(best, tmp_path, capsys) -> None:
    on = _with_tta(best, tmp_path, True)
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_images=2, size=64, seed=3)
    rows = {}
    for flag in ([], ["--tta"], ["--no-tta"]):
        out = tmp_path / f"evaluation{''.join(flag)}.csv"
        argv = ["evaluate", "--checkpoint", str(on), "--data", str(data), "--out", str(out), "--no-hd95", *flag]
        assert main(argv) == 0
        rows[tuple(flag)] = out.read_text()
        printed = capsys.readouterr().out
        assert ("as training chose on validation" in printed) is (not flag)
    assert rows[()] == rows[("--tta",)]
    assert rows[()] != rows[("--no-tta",)]


@pytest.mark.parametrize("suffix", [".onnx", ".safetensors"])
def test_exported_and_shared_models_carry_the_choice(best, tmp_path, suffix) -> None:
    on = _with_tta(best, tmp_path, True)
    out = tmp_path / f"model{suffix}"
    assert main(["export", "--checkpoint", str(on), "--format", suffix[1:], "--out", str(out)]) == 0
    assert recorded_tta(out) is True
    pruned = tmp_path / f"l1{suffix}"
    argv = ["export", "--checkpoint", str(on), "--depth", "1", "--format", suffix[1:], "--out", str(pruned)]
    assert main(argv) == 0
    assert recorded_tta(pruned) is None  # measured on heads the pruned model no longer has
    folder = unetpp.save_pretrained(on, tmp_path / f"shared{suffix}")
    assert recorded_tta(folder) is True
    assert "flips at prediction | on by default" in (folder / "README.md").read_text()
