"""The run config: frozen, validated when built, defaults shared with build_model, overrides in order."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import unetpp
from unetpp.config import INSTANCE_FIELDS, DataConfig, ModelConfig, RunConfig, TrainConfig
from unetpp.errors import ConfigError


def test_model_defaults_are_build_models() -> None:
    params = inspect.signature(unetpp.models.registry.build_nested).parameters
    for f in dataclasses.fields(ModelConfig):
        if f.name not in ("name", *INSTANCE_FIELDS):
            assert getattr(ModelConfig(), f.name) == params[f.name].default, f.name
    # and the config builds the model build_model builds by default
    built = unetpp.build_model("unet++")
    from_config = unetpp.build_model(**ModelConfig().build_kwargs())
    assert from_config.config == built.config


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.lr=abc", r"train\.lr: got 'abc'; expected a number"),
        ("train.lr=-1", r"train\.lr: got -1\.0; expected a value > 0"),
        ("train.max_epochs=ten", r"train\.max_epochs: got 'ten'; expected an integer"),
        ("train.max_epochs=-5", r"train\.max_epochs: got -5; expected a value >= 1"),
        ("train.max_epochs=2.5", r"train\.max_epochs: got 2\.5; expected an integer"),
        ("train.max_minutes=-1", r"train\.max_minutes: got -1\.0; expected a value > 0"),
        ("train.precision=foo", r"train\.precision: got 'foo'; expected one of '32', 'bf16', '16'"),
        ("data.batch_size=0", r"data\.batch_size: got 0; expected a value >= 1"),
        ("data.layout=nifti", r"data\.layout: got 'nifti'; expected one of folders, isbi2012, dsb2018"),
        ("data.patch_size=[96, -1]", r"data\.patch_size: got \(96, -1\); expected a value >= 1"),
        ("data.cache=maybe", r"data\.cache: got 'maybe'; expected true or false"),
        ("model.spatial_dims=4", r"model\.spatial_dims: got 4; expected one of 2, 3"),
        ("model.norm=group", r"model\.norm: got 'group'; expected one of 'batch', 'instance' or null"),
        ("model.name=unet+++", r"model\.name: got 'unet\+\+\+'; expected one of unet, .*did you mean 'unet\+\+'"),
        ("train.devices=two", r"train\.devices: got 'two'; expected 'auto', a count"),
        ("train.lr", r"cannot apply 'train\.lr': expected section\.field=value"),
        ("train.learning_rate=1", r"cannot apply 'train\.learning_rate=1'"),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_is_allowed(assignment, message) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig().override([assignment])


def test_override_parses_yaml_applies_in_order_and_returns_a_new_frozen_config() -> None:
    base = RunConfig()
    cfg = base.override(["train.lr=1e-3", "model.widths=[4, 8, 16]", "model.depth=2", "train.lr=2e-3"])
    assert cfg.train.lr == 2e-3  # the later assignment wins
    assert cfg.model.widths == (4, 8, 16)  # lists become tuples: the config is hashable and frozen
    assert base.train.lr is None  # the original is untouched (None: the schedule's own peak)
    assert base.train.peak_lr == 1e-3
    assert cfg.override([]) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]
    assert RunConfig().override(["train.max_minutes=null"]).train.max_minutes is None
    assert RunConfig().override(["train.lr=1"]).train.lr == 1.0
    assert isinstance(cfg.train.lr, float)


def test_old_precision_spellings_still_work_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="'bf16-mixed' is now spelled 'bf16'"):
        cfg = RunConfig().override(["train.precision=bf16-mixed"])
    assert cfg.train.precision == "bf16"
    assert cfg.train.lightning_precision == "bf16-mixed"
    assert TrainConfig(precision=32).precision == "32"  # YAML reads 32 as a number


def test_augmentation_saved_as_default_before_light_became_it_reads_as_full() -> None:
    with pytest.warns(FutureWarning, match="data.augment='default' is now spelled 'full'"):
        assert DataConfig(augment="default").augment == "full"  # type: ignore[arg-type]
    assert DataConfig().augment == "light"


def test_yaml_round_trip_and_refusals(tmp_path) -> None:
    cfg = RunConfig().override(["data.ids=['a', 'b']", "train.head_weights=[0, 0, 1, 0]"])
    path = cfg.save(tmp_path / "config.yaml")
    assert RunConfig.load(path) == cfg
    with pytest.raises(ConfigError, match=r"config\.yaml: file exists; pass --overwrite"):
        cfg.save(path)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match=r"scalar\.yaml: expected a mapping of sections .* got int"):
        RunConfig.load(scalar)
    string_epochs = tmp_path / "ten.yaml"
    string_epochs.write_text("train:\n  max_epochs: ten\n")
    with pytest.raises(ConfigError, match=r"train\.max_epochs: got 'ten'"):
        RunConfig.load(string_epochs)
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the config"):
        RunConfig.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"unknown config section\(s\) \['trian'\]"):
        RunConfig.from_dict({"trian": {}})
    with pytest.raises(ConfigError, match=r"section 'data' must be a mapping"):
        RunConfig.from_dict({"data": [1, 2]})


def test_sections_validate_when_built_directly() -> None:
    with pytest.raises(ConfigError, match=r"data\.fg_prob: got 1\.5; expected a value <= 1"):
        DataConfig(fg_prob=1.5)
    with pytest.raises(ConfigError, match=r"model\.in_channels: got 0"):
        ModelConfig(in_channels=0)
    assert DataConfig(split="auto").split == "auto"
