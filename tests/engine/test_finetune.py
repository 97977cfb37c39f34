"""`unetpp train --init` (issue 21): start from a trained model's architecture and weights."""

from __future__ import annotations

import pytest
import torch

import unetpp
from unetpp.cli import main
from unetpp.config import RunConfig
from unetpp.data import write_synthetic_dataset
from unetpp.engine.finetune import init_config
from unetpp.engine.train import fit
from unetpp.errors import InitError
from unetpp.models.transfer import start_from
from unetpp.utils.run_metrics import read_run_metrics

from ..conftest import TINY_RUN
from ..hub_cache import go_offline, put_in_cache

OTHER_DATA = [  # the new data set: other synthetic images, in folders, planned as a user's would be
    "--batch-size",
    "4",
    "--workers",
    "0",
    "--epochs",
    "1",
    "--seed",
    "0",
    "--set",
    "data.patch_size=[32,32]",
    "data.patches_per_image=2",
    "data.val_fraction=0.34",
    "train.progress=false",
    "train.steps_per_epoch=null",  # a few steps: what the loaded weights are worth before training catches up
    "train.schedule=paper",  # at a constant 3e-4, as this comparison was made
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny UNet++ (depth 2, widths 4-8-16) trained for a few epochs on the synthetic cells."""
    root = tmp_path_factory.mktemp("finetune")
    best = fit(
        RunConfig().override([*TINY_RUN, "train.max_epochs=8", "train.lr=3e-3", "train.schedule=paper"]),
        root / "pretrained",
    )
    # the last epoch: every head trained (the best checkpoint may be an early one where the chosen head alone led)
    last = best.with_name("last.ckpt")
    return {"root": root, "best": last, "data": write_synthetic_dataset(root / "other", 6, size=64, seed=11)}


def first_val_iou(run) -> float:
    """The plain mean of every head: the whole network's start, not only its best head's."""
    return read_run_metrics(run)["val/iou_ensemble"][0][1]


def test_a_fine_tuned_model_starts_from_the_loaded_weights(trained, tmp_path, monkeypatch, caplog) -> None:
    """Through the Hub's offline cache, as `train --init org/name`: the first validation beats a random start's."""
    cache = go_offline(tmp_path / "hub", monkeypatch)
    put_in_cache(cache, "lab/cells", unetpp.save_pretrained(trained["best"], tmp_path / "cells"))
    data = ["--data", str(trained["data"]), *OTHER_DATA]
    caplog.set_level("INFO", logger="unetpp")
    assert main(["train", "--init", "hf://lab/cells", *data, "--run-dir", str(tmp_path / "tuned")]) == 0
    assert "--init hf://lab/cells: all 82 weight tensors loaded" in caplog.text  # nothing left at random
    scratch = ["--depth", "2", "--widths", "4,8,16"]
    assert main(["train", *scratch, *data, "--run-dir", str(tmp_path / "scratch")]) == 0
    tuned, random = first_val_iou(tmp_path / "tuned"), first_val_iou(tmp_path / "scratch")
    assert tuned > random + 0.2, (tuned, random)
    cfg = RunConfig.load(tmp_path / "tuned" / "config.yaml")
    assert (cfg.model.depth, cfg.model.widths, cfg.data.channels, cfg.train.init) == (
        2,
        (4, 8, 16),
        "grey",
        "hf://lab/cells",
    )


def test_other_classes_get_new_heads_and_the_rest_is_kept(trained, caplog) -> None:
    cfg, user = init_config(RunConfig().override([f"train.init={trained['best']}", "model.classes=3"]), None)
    assert (cfg.model.name, cfg.model.depth, cfg.model.classes, "model.depth" in user) == ("unet++", 2, 3, True)
    model = unetpp.build_model(**cfg.model.build_kwargs())
    caplog.set_level("INFO", logger="unetpp")
    line = start_from(model, trained["best"])
    assert "3 classes here, 1 in the model: new class heads (4 tensors, e.g. heads.x_0_1.conv.weight)" in line
    old = unetpp.load(trained["best"])
    torch.testing.assert_close(model.nodes.x_0_2.conv1.weight, old.nodes.x_0_2.conv1.weight)
    assert model.heads.x_0_1.conv.weight.shape[0] == 3


def test_a_channel_mismatch_is_one_line_and_exit_2(trained, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--init", str(trained["best"]), "--data", str(trained["data"]), "--channels", "rgb"]
    assert main([*args, *OTHER_DATA, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"unetpp: error: --init {trained['best']}: the model takes 1 input channel(s) but the data")
    assert err.count("\n") == 1
    assert not run.exists()


def test_options_that_contradict_the_model_are_refused(trained) -> None:
    with pytest.raises(InitError, match=r"holds a model with depth=2 but model\.depth=3 was given"):
        init_config(RunConfig().override([f"train.init={trained['best']}", "model.depth=3"]), None)
    with pytest.raises(InitError, match="both give the encoder's weights"):
        init_config(RunConfig().override([f"train.init={trained['best']}", "model.encoder_weights=w.pth"]), None)


@pytest.mark.parametrize("kind", ["pruned", "3d"])
def test_pruned_and_3d_models_are_rebuilt_and_loaded(kind, trained, tmp_path) -> None:
    if kind == "pruned":
        source = unetpp.prune(unetpp.load(trained["best"]), 1)
        x = torch.randn(1, 1, 32, 32)
    else:
        source = unetpp.build_model("unet+", depth=2, widths=(4, 8, 16), spatial_dims=3, in_channels=2)
        x = torch.randn(1, 2, 16, 16, 16)
    path = unetpp.save(source, tmp_path / "m.pt")
    channels = [f"model.in_channels={x.shape[1]}"]  # what the plan reads from the data (2 channels: kept)
    cfg, _ = init_config(RunConfig().override([f"train.init={path}", *channels]), None)
    model = unetpp.build_model(**cfg.model.build_kwargs())
    start_from(model, path)
    assert model.spec == source.spec
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[0], source.eval()(x)[0])


def test_mask_rcnn_plus_plus_is_rebuilt_with_new_predictors_for_other_classes(tmp_path) -> None:
    pytest.importorskip("torchvision")
    from unetpp.detection import build_detector
    from unetpp.engine.instance import detector_kwargs

    tiny = {"encoder": "test_resnet", "encoder_weights": None, "pyramid_width": 8, "head_width": 8}
    source = build_detector("maskrcnn++", **tiny, min_size=None, anchor_sizes=(8, 16, 32, 64, 128))
    path = unetpp.save(source, tmp_path / "det.pt")
    for classes, new in ((None, 0), (3, 6)):
        extra = [] if classes is None else [f"model.classes={classes}"]
        cfg, _ = init_config(RunConfig().override([f"train.init={path}", *extra]), None)
        assert (cfg.model.task, cfg.model.name, cfg.model.pyramid_width) == ("instance", "maskrcnn++", 8)
        kwargs = detector_kwargs(cfg.model)
        model = unetpp.build_model(kwargs.pop("name"), **kwargs)
        line = start_from(model, path)
        assert (f"new class heads ({new} tensors" in line) == bool(new), line
        torch.testing.assert_close(model.backbone.fpn.state_dict(), source.backbone.fpn.state_dict())
