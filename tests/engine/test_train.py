"""The training engine: real learning on one batch, a run folder, resume, and safe refusals."""

from __future__ import annotations

import pytest
import torch

import unetpp
from unetpp.config import RunConfig
from unetpp.engine.module import SegmentationModule
from unetpp.engine.train import fit
from unetpp.errors import CheckpointError, ConfigError
from unetpp.utils.run_metrics import read_run_metrics

from ..conftest import TINY_RUN

TINY = {"name": "unet++", "depth": 2, "widths": [4, 8, 16]}  # TINY_MODEL as build arguments


def tiny_run(*extra: str) -> RunConfig:
    return RunConfig().override([*TINY_RUN, "train.max_epochs=1", *extra])


def test_overfit_one_batch_really_learns() -> None:
    from unetpp.data import make_synthetic_em
    from unetpp.data.transforms import zscore

    images, masks = make_synthetic_em(2, size=32, seed=3)
    batch = {
        "image": torch.stack([torch.as_tensor(zscore(im[None].astype("float32"))) for im in images]),
        "mask": torch.as_tensor(masks[:, None]).long(),
    }
    module = SegmentationModule(TINY, lr=1e-2)
    opt = module.configure_optimizers()
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    module.eval()
    with torch.no_grad():
        probs = unetpp.ensemble(module.model(batch["image"]))
    iou = unetpp.metrics.iou(probs > 0.5, batch["mask"].bool()).mean().item()
    assert loss.item() < 0.5 * first
    assert iou > 0.85


def test_fit_writes_a_run_and_resume_continues(tmp_path) -> None:
    run = tmp_path / "run"
    best = fit(tiny_run(), run)
    assert best == run / "checkpoints" / "best.ckpt"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    config_text = (run / "config.yaml").read_text()
    assert RunConfig.load(run / "config.yaml") == tiny_run()

    model = unetpp.load(best)  # a training checkpoint alone rebuilds the model
    assert model.spec.heads == (1, 2)

    with pytest.raises(ConfigError, match="folder already holds a run; pass --resume"):
        fit(tiny_run(), run)

    fit(tiny_run("train.max_epochs=2"), run, resume=True)
    series = read_run_metrics(run)
    assert [epoch for epoch, _ in series["val/iou"]] == [0, 1]
    assert len(series["train/loss_head1"]) >= 2
    assert (run / "config.yaml").read_text() == config_text
    assert not list(run.rglob("*.tmp"))


def test_resume_refusals(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(tiny_run(), tmp_path / "empty", resume=True)
    fit(tiny_run(), tmp_path / "run")
    with pytest.raises(ConfigError, match="trained with another model"):
        fit(tiny_run("model.name=unet+"), tmp_path / "run", resume=True)


def test_interrupt_saves_last_checkpoint(tmp_path) -> None:
    from lightning.pytorch.callbacks import Callback

    from unetpp.engine import train as train_module

    class Interrupt(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 3:
                raise KeyboardInterrupt

    original = train_module.build_trainer

    def with_interrupt(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.callbacks.append(Interrupt())
        return trainer

    train_module.build_trainer = with_interrupt
    try:
        with pytest.raises(KeyboardInterrupt, match="stopped by Ctrl-C; saved .*last.ckpt; continue with"):
            fit(tiny_run("train.max_epochs=5", "data.patches_per_image=4"), tmp_path / "run")
    finally:
        train_module.build_trainer = original
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    fit(tiny_run("train.max_epochs=2", "data.patches_per_image=4"), tmp_path / "run", resume=True)
    resumed = torch.load(last, weights_only=True)
    # the step count continues from the interrupt (3) through the rest of epoch 0 and all of epoch 1 (4 steps),
    # and last.ckpt is written after every epoch even though validation did not improve
    assert resumed["global_step"] >= 3 + 4
    assert [epoch for epoch, _ in read_run_metrics(tmp_path / "run")["val/iou"]] == [0, 1]


def test_early_stopping_stops_when_validation_stops_improving(tmp_path) -> None:
    # lr so small that the weights do not move: the validation IoU never improves after the first epoch
    run = tmp_path / "run"
    fit(tiny_run("train.max_epochs=10", "train.early_stopping=2", "train.lr=1e-30"), run)
    assert [epoch for epoch, _ in read_run_metrics(run)["val/iou"]] == [0, 1, 2]  # best, then patience 2
    # last.ckpt follows every epoch (2 steps each here), though the best checkpoint stayed at epoch 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["global_step"] == 2


def test_data_ids_keep_a_test_set_out() -> None:
    from unetpp.engine.datamodule import SegmentationDataModule

    cfg = tiny_run("data.ids=['0','1','2','3']", "data.val_ids=['3']").data
    data = SegmentationDataModule(cfg, spatial_dims=2, classes=1, in_channels=1)
    data.setup()
    assert data.train_set.dataset.indices == [0, 1, 2]
    assert data.val_set.indices == [3]
    bad = tiny_run("data.ids=['0','99']").data
    with pytest.raises(ConfigError, match=r"data.ids names images that do not exist: \['99'\]"):
        SegmentationDataModule(bad, spatial_dims=2, classes=1, in_channels=1).setup()


def test_compile_trains_through_dynamo_and_keeps_the_checkpoint_keys(tmp_path, monkeypatch, caplog) -> None:
    # inductor's C++ build takes minutes on CPU; the eager backend still runs every step through dynamo
    original = torch.nn.Module.compile
    compiled: list[torch.nn.Module] = []

    def eager_compile(module: torch.nn.Module, *args, **kwargs) -> None:
        compiled.append(module)
        original(module, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    with caplog.at_level("INFO", logger="unetpp.engine.module"):
        best = fit(tiny_run("train.compile=true"), tmp_path / "compiled")
    assert len(compiled) == 1
    assert compiled[0]._compiled_call_impl is not None
    assert "torch.compile: first step" in caplog.text
    plain = SegmentationModule(TINY)
    keys = torch.load(best, map_location="cpu", weights_only=True)["state_dict"].keys()
    assert set(keys) == set(plain.state_dict().keys())
    assert unetpp.load(best).spec.heads == (1, 2)


def test_ema_checkpoints_hold_the_average_and_resume_from_the_raw_weights(tmp_path) -> None:
    run = tmp_path / "run"
    best = fit(tiny_run("train.ema=0.5", "train.max_epochs=2"), run)
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]  # Lightning's EMAWeightAveraging layout
    convs = [k for k, v in raw.items() if k.endswith("weight") and v.ndim == 4]
    assert convs
    assert all(not torch.equal(averaged[k], raw[k]) for k in convs)  # the average lags the raw weights
    loaded = unetpp.load(last).state_dict()  # a model file gives the average, what validation judged
    assert all(torch.equal(loaded[k.removeprefix("model.")], averaged[k]) for k in convs)
    assert unetpp.load(best) is not None

    fit(tiny_run("train.ema=0.5", "train.max_epochs=3"), run, resume=True)
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] > ckpt["global_step"]
    assert resumed["averaging_state"]["n_averaged"] > ckpt["averaging_state"]["n_averaged"]  # the average went on
