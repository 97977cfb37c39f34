"""The accurate mode averages the heads training chose on validation; the paper's plain mean stays by name (issue 19).

One tiny training run; its best checkpoint records the chosen heads and the validation IoU of every mode.
Prediction, evaluation, ``prune --auto`` and a pretrained folder read them from the file.
"""

from __future__ import annotations

import csv

import pytest
import torch

import unetpp
from unetpp.cli import main
from unetpp.config import RunConfig
from unetpp.data.synthetic import write_synthetic_dataset
from unetpp.engine.train import fit
from unetpp.inference import PredictOptions, Predictor
from unetpp.models.provenance import recorded_ensemble_heads, recorded_preprocessing, recorded_validation_iou

from ..conftest import TINY_RUN


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    run = tmp_path_factory.mktemp("chosen") / "run"
    fit(RunConfig().override([*TINY_RUN, "train.max_epochs=2"]), run)
    return run / "checkpoints" / "best.ckpt"


def _with_heads(best, tmp_path, heads: list[int]):
    """A copy of `best` whose record says validation chose `heads`."""
    ckpt = torch.load(best, weights_only=True)
    ckpt["unetpp"]["ensemble_heads"] = heads
    path = tmp_path / "chosen.ckpt"
    torch.save(ckpt, path)
    return path


def test_the_best_checkpoint_records_the_chosen_heads_and_the_scores_that_judged_it(best) -> None:
    heads = recorded_ensemble_heads(best)
    scores = recorded_validation_iou(best)
    assert heads is not None
    assert set(heads) <= {1, 2}
    assert set(scores) == {"head1", "head2", "ensemble", "chosen"}
    assert scores["chosen"] >= scores["ensemble"] - 1e-12  # the plain mean is one of the subsets chosen among
    # the best checkpoint is judged by the mode prediction runs: the chosen heads
    ckpt = torch.load(best, weights_only=True)
    monitored = next(v for k, v in ckpt["callbacks"].items() if "val/iou" in k)["best_model_score"]
    assert float(monitored) == pytest.approx(scores["chosen"])


def test_prediction_averages_the_chosen_heads_and_mean_averages_all(best, tmp_path) -> None:
    path = _with_heads(best, tmp_path, [2])
    image = torch.randn(1, 64, 64)
    model = unetpp.load(best)
    chosen = Predictor(path)(image)
    plain = Predictor(path, PredictOptions(ensemble="mean"))(image)
    head2 = Predictor(model, PredictOptions(head=2))(image)
    every = Predictor(model)(image)  # a model in memory records nothing: every head
    torch.testing.assert_close(chosen, head2, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, every, atol=1e-5, rtol=0)
    assert (chosen - plain).abs().max() > 1e-4  # the two modes differ: the choice is applied
    assert Predictor(path).settings()["ensemble_heads"] == [2]


def test_evaluate_and_a_pretrained_folder_carry_the_choice(best, tmp_path, capsys) -> None:
    path = _with_heads(best, tmp_path, [2])
    folder = unetpp.save_pretrained(path, tmp_path / "shared")
    assert recorded_ensemble_heads(folder) == (2,)
    assert "the mean of heads 2 (chosen on validation" in (folder / "README.md").read_text()
    image = torch.randn(1, 64, 64)
    torch.testing.assert_close(Predictor(folder)(image), Predictor(path)(image))
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_images=2, size=64, seed=3)
    out = tmp_path / "evaluation.csv"
    code = main(["evaluate", "--checkpoint", str(path), "--data", str(data), "--out", str(out), "--no-hd95"])
    assert code == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    chosen = {r["image"]: float(r["iou"]) for r in rows if r["mode"] == "chosen"}
    head2 = {r["image"]: float(r["iou"]) for r in rows if r["mode"] == "head2"}
    assert chosen
    assert chosen == pytest.approx(head2)


def test_prune_auto_uses_the_recorded_validation_scores_without_data(best, tmp_path, capsys) -> None:
    out = tmp_path / "pruned.pt"
    assert main(["prune", "--checkpoint", str(best), "--auto", "--shape", "1x1x64x64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "validation scores recorded" in text
    scores = recorded_validation_iou(best)
    best_head = max((1, 2), key=lambda d: (scores[f"head{d}"], -d))
    assert unetpp.load(out).spec.heads[-1] <= best_head  # the shallowest within tolerance of the best


@pytest.mark.parametrize("suffix", [".onnx", ".safetensors"])
def test_an_exported_model_predicts_as_its_checkpoint_does(best, tmp_path, suffix) -> None:
    path = _with_heads(best, tmp_path, [2])
    out = tmp_path / f"model{suffix}"
    fmt = suffix.removeprefix(".")
    assert main(["export", "--checkpoint", str(path), "--format", fmt, "--out", str(out)]) == 0
    assert recorded_ensemble_heads(out) == (2,)
    assert recorded_preprocessing(out) == recorded_preprocessing(path) is not None
    image = torch.randn(1, 64, 64)
    torch.testing.assert_close(Predictor(out)(image), Predictor(path)(image), atol=1e-4, rtol=0)


def test_an_export_pruned_below_the_chosen_heads_averages_what_it_has(best, tmp_path) -> None:
    path = _with_heads(best, tmp_path, [2])
    out = tmp_path / "l1.safetensors"
    argv = ["export", "--checkpoint", str(path), "--depth", "1", "--format", "safetensors", "--out", str(out)]
    assert main(argv) == 0
    assert recorded_ensemble_heads(out) is None  # head 2 is gone: nothing chosen survives the pruning
    assert recorded_preprocessing(out) == recorded_preprocessing(path)
