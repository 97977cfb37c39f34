"""A trained run shared and reused (issue 21): its model card, and Hub ids in every --checkpoint, offline."""

from __future__ import annotations

import json

import pytest
import torch

import unetpp
from unetpp.cli import main
from unetpp.data import write_synthetic_dataset

from .hub_cache import go_offline, put_in_cache
from .test_cli_train import TINY

pytest.importorskip("huggingface_hub")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A tiny CLI run, scored on held-out images, pruned by --auto, and both written as pretrained folders."""
    root = tmp_path_factory.mktemp("hub")
    run, held_out = root / "run", write_synthetic_dataset(root / "test", n_images=2, size=32, seed=7)
    assert main(["train", *TINY, "--epochs", "1", "--run-dir", str(run)]) == 0
    best = run / "checkpoints" / "best.ckpt"
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(held_out), "--no-hd95"]) == 0
    pruned = root / "pruned.pt"
    prune = ["prune", "--checkpoint", str(best), "--data", str(held_out), "--auto", "--shape", "1x1x32x32"]
    assert main([*prune, "--reps", "1", "--out", str(pruned)]) == 0
    assert main(["push", "--checkpoint", str(best), "--out", str(root / "full"), "--license", "mit"]) == 0
    assert main(["push", "--checkpoint", str(pruned), "--out", str(root / "small")]) == 0
    return {"root": root, "run": run, "best": best, "test": held_out, "full": root / "full", "small": root / "small"}


def test_the_card_holds_the_data_plan_scores_and_command(shared) -> None:
    card = (shared["full"] / "README.md").read_text()
    assert "license: mit" in card
    assert '- "deep-supervision"' in card
    assert "- **Data**: synthetic (layout `synthetic`)" in card
    assert "- **Command**: `unetpp train --layout synthetic --depth 2" in card
    assert "- **Reproduce** (with the run's `config.yaml`): `unetpp train --config config.yaml --no-plan" in card
    assert "Held-out images (2, `evaluation.csv` of unetpp evaluate)" in card
    for mode in ("ensemble", "chosen", "head1", "head2"):
        assert f"| {mode} | " in card
    assert "Validation IoU at the saved epoch" in card
    assert "| normalize | zscore |" in card  # the preprocessing prediction repeats
    assert "| setting | value | why |" in card  # the plan
    info = json.loads((shared["full"] / "config.json").read_text())
    assert info["preprocessing"]["normalize"] == "zscore"
    assert set(info["record"]["scores"]["held_out"]["modes"]) == {"ensemble", "chosen", "head1", "head2"}


def test_the_pruned_models_card_has_the_pruning_table_and_keeps_the_record(shared) -> None:
    card = (shared["small"] / "README.md").read_text()
    assert "## Pruning" in card
    assert "by `unetpp prune --auto (tolerance 0.003 IoU)`" in card
    assert "(kept) |" in card
    assert "| ensemble |" in card
    assert "- **Data**: synthetic" in card  # carried over from best.ckpt's run folder
    assert '- "pruned"' in card
    info = json.loads((shared["small"] / "config.json").read_text())
    assert info["preprocessing"]["normalize"] == "zscore"


def test_every_checkpoint_option_takes_a_hub_id_offline(shared, tmp_path, monkeypatch, capsys) -> None:
    cache = go_offline(tmp_path / "hub", monkeypatch)
    put_in_cache(cache, "lab/tiny", shared["full"])
    put_in_cache(cache, "lab/tiny-l1", shared["small"])
    test = str(shared["test"])
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--checkpoint", "lab/tiny", "--inputs", f"{test}/images", "--out", "masks"]) == 0
    assert main(["predict", "--checkpoint", "hf://lab/tiny", "--inputs", f"{test}/images", "--out", "m2"]) == 0
    want = unetpp.load(shared["best"]).eval()
    for a, b in zip(sorted((tmp_path / "masks").iterdir()), sorted((tmp_path / "m2").iterdir()), strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert main(["evaluate", "--checkpoint", "hf://lab/tiny", "--data", test, "--no-hd95"]) == 0
    assert (tmp_path / "evaluation.csv").is_file()  # a Hub model has no run folder: outputs go here
    assert main(["prune", "--checkpoint", "lab/tiny", "--depth", "1", "--shape", "1x1x32x32", "--out", "p.pt"]) == 0
    assert main(["export", "--checkpoint", "lab/tiny-l1", "--format", "safetensors", "--out", "e.safetensors"]) == 0
    assert main(["bench", "--checkpoint", "hf://lab/tiny", "--shapes", "1x1x32x32", "--reps", "1"]) == 0
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(unetpp.load("p.pt").eval()(x)[0], want(x, head=1)[0])
        assert torch.equal(unetpp.load("e.safetensors").eval()(x)[0], want(x, head=1)[0])
    capsys.readouterr()
    assert main(["predict", "--checkpoint", "lab/missing", "--inputs", test, "--out", "m3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unetpp: error: lab/missing: no such local file or folder, and not in the Hugging Face")
    assert err.count("\n") == 1
    assert not (tmp_path / "m3").exists()
