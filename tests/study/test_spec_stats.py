"""Model and study specs, the statistics (Welch, paired, size groups), presets and the CLI functions."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch

from unetpp.cli.study import add_compare, add_reproduce
from unetpp.errors import ConfigError
from unetpp.study import PRESETS, ModelSpec, StudySpec, list_presets, load_preset, stats
from unetpp.study.runner import RunResult

# ------------------------------------------------------------------ model specs


@pytest.mark.parametrize(
    ("text", "canonical", "slug", "overrides"),
    [
        ("unet:depth=2", "unet:depth=2", "unet_depth-2", ["model.name=unet", "model.depth=2"]),
        ("wide_unet", "wide_unet", "wide_unet", ["model.name=wide_unet"]),
        ("unet+", "unet+", "unetp", ["model.name=unet+"]),
        ("unet+:ds=false", "unet+:ds=false", "unetp_ds-false", ["model.name=unet+", "model.deep_supervision=false"]),
        ("unet++:ds=no,depth=3", "unet++:depth=3,ds=false", "unetpp_depth-3_ds-false", None),
        ("unet++:encoder=resnet34", "unet++:encoder=resnet34", "unetpp_encoder-resnet34", None),
        ("unet++:widths=4-8-16:depth=2", "unet++:depth=2,widths=4-8-16", "unetpp_depth-2_widths-4-8-16", None),
    ],
)
def test_model_specs(text, canonical, slug, overrides) -> None:
    spec = ModelSpec.parse(text)
    assert str(spec) == canonical
    assert spec.slug == slug
    assert ModelSpec.parse(str(spec)) == spec
    if overrides is not None:
        assert spec.overrides() == overrides


def test_model_spec_builds_its_config() -> None:
    from unetpp.config import RunConfig

    cfg = RunConfig().override(ModelSpec.parse("unet++:depth=2,ds=false,widths=4-8-16").overrides())
    assert (cfg.model.name, cfg.model.depth, cfg.model.deep_supervision, cfg.model.widths) == (
        "unet++",
        2,
        False,
        (4, 8, 16),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "unet+++",
            r"unknown model 'unet\+\+\+' in 'unet\+\+\+'; models are unet, wide_unet, unet_e, unet\+, unet\+\+",
        ),
        ("unet++:dropout=0.1", r"unknown option 'dropout=0.1' in model 'unet\+\+:dropout=0.1'; options are depth, ds"),
        ("unet++:ds", r"unknown option 'ds'"),
        ("unet:depth=0", r"bad value depth='0'; depth must be an integer >= 1"),
        ("unet++:ds=maybe", r"ds must be true or false"),
        ("unet:norm=group", r"norm must be batch, instance or none"),
    ],
)
def test_bad_model_specs_are_one_line(text, message) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        ModelSpec.parse(text)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ study specs

BASE = {"layout": "synthetic", "models": ("unet", "unet++"), "epochs": 1, "test_fraction": 0.25}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": ("unet", "unett")}, r"unknown model 'unett'"),
        ({"models": ()}, r"at least one model"),
        ({"models": ("unet++:ds=false", "unet++:ds=no")}, r"name a model twice"),
        ({"test_fraction": None}, r"exactly one held-out test set"),
        ({"test_ids": ("1",)}, r"exactly one held-out test set: .* \(got 2\)"),
        ({"test_fraction": 1.5}, r"test fraction must be in \(0, 1\)"),
        ({"epochs": None}, r"needs a budget"),
        ({"seeds": (0, 0)}, r"seeds must be distinct"),
        ({"reference": "unet+"}, r"reference 'unet\+' is not one of the models"),
        ({"overrides": ("train.lrate=1",)}, r"cannot apply 'train.lrate=1'"),
        ({"layout": "folders"}, r"needs --data"),
        ({"embedded_vs_isolated": True, "models": ("unet",)}, r"needs a deeply supervised unet\+\+"),
    ],
)
def test_bad_study_specs_are_one_line(change, message) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        StudySpec(**{**BASE, **change}).model_specs()
    assert "\n" not in str(e.value)


def test_study_spec_round_trips_and_names_clashes(tmp_path) -> None:
    spec = StudySpec(**BASE, seeds=(0, 1), overrides=("data.batch_size=2",))
    spec.save(tmp_path)
    again = StudySpec.load(tmp_path)
    assert again == spec
    assert spec.clash(again) is None
    same = {**BASE, "overrides": ("data.batch_size=2",)}
    assert StudySpec(**{**same, "epochs": 3}).clash(again) == "epochs is 1 in the saved study but 3 now"
    assert StudySpec(**{**same, "models": ("unet",)}, seeds=(0, 1, 2)).clash(again) is None  # seeds/models may change


@pytest.mark.parametrize("native", [True, False])
def test_a_new_study_fixes_the_machines_precision_once(monkeypatch, native) -> None:
    from unetpp.utils import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = StudySpec(**BASE, overrides=("data.batch_size=2",))
    chosen = "bf16" if native else "32"
    new = spec.with_precision(None)
    assert new.overrides == ("data.batch_size=2", f"train.precision={chosen}")
    assert new.run_config(ModelSpec.parse("unet"), 0, None).train.precision == chosen
    saved = StudySpec(**BASE, overrides=("data.batch_size=2", "train.precision=bf16"))
    assert spec.with_precision(saved).clash(saved) is None  # resumed on any machine: as it started
    old = StudySpec(**BASE, overrides=("data.batch_size=2",))  # saved before studies chose: float32
    assert spec.with_precision(old) == spec
    mine = StudySpec(**BASE, overrides=("train.precision=32",))
    assert mine.with_precision(None) == mine


def test_run_config_keeps_the_test_images_out() -> None:
    spec = StudySpec(**BASE, overrides=("data.batch_size=2",))
    cfg = spec.run_config(ModelSpec.parse("unet:depth=2"), 3, ["0", "1"])
    assert cfg.data.ids == ("0", "1")
    assert (cfg.train.seed, cfg.train.max_epochs, cfg.model.depth, cfg.data.batch_size) == (3, 1, 2, 2)


def test_embedded_vs_isolated_adds_each_depth_alone() -> None:
    spec = StudySpec(**{**BASE, "models": ("unet++:depth=3",), "embedded_vs_isolated": True})
    assert [str(m) for m in spec.model_specs()] == [
        "unet++:depth=3",
        "unet++:depth=1,ds=false",
        "unet++:depth=2,ds=false",
        "unet++:depth=3,ds=false",
    ]


# ------------------------------------------------------------------ statistics


def test_welch_matches_scipy_and_a_hand_computation() -> None:
    from scipy.stats import t as t_dist
    from scipy.stats import ttest_ind

    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    t, p = stats.welch(a, b)
    ref = ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue)
    # by hand: variances 5/3 and 10, n 4 and 5; t = -3.5 / sqrt(5/12 + 2); Welch-Satterthwaite df
    va, vb = (5 / 3) / 4, 10 / 5
    t_hand = (2.5 - 6.0) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    assert t == pytest.approx(t_hand, abs=1e-12)
    assert t_hand == pytest.approx(-2.2514, abs=1e-4)
    assert p == pytest.approx(2 * t_dist.sf(abs(t_hand), df), rel=1e-9)
    assert math.isnan(stats.welch([1.0], [2.0, 3.0])[1])


def test_format_p_marks_significance() -> None:
    assert stats.format_p(0.012) == "0.012 *"
    assert stats.format_p(0.31) == "0.310"
    assert stats.format_p(float("nan")) == "–"


def _result(model: str, seed: int, ious: dict[str, float], objects: list[dict] | None = None) -> RunResult:
    scores = [{"image": i, "mode": "head1", "iou": v, "dice": v, "hd95": 1.0} for i, v in ious.items()]
    info = {"main_mode": "head1", "epochs": 1, "seconds": 1.0}
    return RunResult(model, seed, Path("."), info, scores, objects or [])


def test_model_table_tests_against_the_reference() -> None:
    from scipy.stats import ttest_ind, ttest_rel

    results = [
        _result("a", 0, {"x": 0.5, "y": 0.6, "z": 0.7}),
        _result("a", 1, {"x": 0.55, "y": 0.6, "z": 0.65}),
        _result("b", 0, {"x": 0.7, "y": 0.9, "z": 0.8}),
        _result("b", 1, {"x": 0.8, "y": 0.8, "z": 0.9}),
    ]
    rows = {r["model"]: r for r in stats.model_table(results, "a")}
    assert rows["a"]["iou"] == pytest.approx(0.6)
    assert math.isnan(rows["a"]["p_welch"])
    assert rows["b"]["iou_per_seed"] == pytest.approx([0.8, 0.8333333])
    assert rows["b"]["p_welch"] == pytest.approx(
        ttest_ind([0.8, 0.8333333], [0.6, 0.6], equal_var=False).pvalue, rel=1e-5
    )
    assert rows["b"]["p_paired"] == pytest.approx(ttest_rel([0.75, 0.85, 0.85], [0.525, 0.6, 0.675]).pvalue)
    assert rows["b"]["delta_iou"] == pytest.approx(0.8166667 - 0.6)


def test_per_class_rows_are_their_own_table_for_the_main_mode_only() -> None:
    run = _result("m", 0, {"x": 0.5, "y": 0.7})  # main mode head1; add head2 and classes of both heads
    run.scores += [{"image": "x", "mode": "head2", "iou": 0.1, "dice": 0.2, "hd95": 1.0}]
    for mode in ("head1", "head2"):
        for c, value in ((1, 0.4), (2, 0.8)):
            run.scores += [{"image": "x", "mode": f"{mode} class {c}", "iou": value, "dice": value, "hd95": 1.0}]
    second = _result("m", 1, {"x": 0.5, "y": 0.7})
    second.scores += [{"image": "x", "mode": f"head1 class {c}", "iou": 0.6, "dice": 0.6, "hd95": 1.0} for c in (1, 2)]
    heads = stats.head_table([run, second])
    assert [h["mode"] for h in heads] == ["head1", "head2"]
    classes = stats.head_table([run, second], per_class=True)
    assert [(r["mode"], r["class"]) for r in classes] == [("head1 class 1", 1), ("head1 class 2", 2)]
    assert classes[0]["dice"] == pytest.approx((0.4 + 0.6) / 2)  # mean over seeds of each run's mean
    assert classes[1]["dice"] == pytest.approx((0.8 + 0.6) / 2)
    assert stats.head_table([_result("b", 0, {"x": 0.5})], per_class=True) == []  # binary: no class rows


def test_size_groups_on_a_constructed_mask() -> None:
    from unetpp.metrics import object_scores

    truth = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    truth[0, 0, 1:3, 1:3] = True  # 4 px
    truth[0, 0, 10:14, 10:14] = True  # 16 px
    truth[0, 0, 20:28, 20:28] = True  # 64 px
    perfect = truth.clone()
    partial = truth.clone()
    partial[0, 0, 1:3, 1:3] = False  # misses the small object
    partial[0, 0, 24:28, 20:28] = False  # half of the large one

    def objects(pred: torch.Tensor) -> list[dict]:
        s = object_scores(pred, truth)
        return [
            {"image": "i", "mode": "head1", "object": k, "size": float(z), "iou": float(v), "dice": 0.0}
            for k, (z, v) in enumerate(zip(s.size, s.iou, strict=True))
        ]

    results = [
        _result("ref", 0, {"i": 1.0}, objects(perfect)),
        _result("other", 0, {"i": 0.5}, objects(partial)),
        _result("other", 1, {"i": 0.5}, objects(partial)),
    ]
    out = stats.size_groups(results, "ref", [0, 10, 30, 100])
    assert [g["count"] for g in out["groups"]] == [1, 1, 1]
    assert [g["models"]["ref"]["iou"] for g in out["groups"]] == [1.0, 1.0, 1.0]
    assert [g["models"]["other"]["iou"] for g in out["groups"]] == pytest.approx([0.0, 1.0, 0.5])
    assert stats.default_bins([4.0, 16.0, 64.0, 100.0], groups=2) == [0.0, 40.0, math.inf]


# ------------------------------------------------------------------ presets and CLI


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("budget", ["smoke", "cpu", "paper"])
def test_every_preset_builds_a_valid_spec(name, budget) -> None:
    spec = load_preset(name, budget, data="/data/copy")
    assert spec.data == "/data/copy"
    assert spec.models
    assert spec.epochs
    for m in spec.model_specs():
        spec.run_config(m, spec.seeds[0], None)  # every override applies
    if budget == "paper":
        assert len(spec.seeds) == 20


def test_preset_list_and_errors() -> None:
    text = list_presets()
    assert all(name in text for name in PRESETS)
    assert "unet++ 89.33" in text
    with pytest.raises(ConfigError, match="unknown preset 'table9'"):
        load_preset("table9")
    with pytest.raises(ConfigError, match="unknown budget 'gpu'; budgets are smoke, cpu, paper"):
        load_preset("fig5", "gpu")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetpp")
    sub = parser.add_subparsers(dest="command", required=True)
    add_compare(sub)
    add_reproduce(sub)
    return parser


@pytest.mark.parametrize("command", ["compare", "reproduce"])
def test_cli_help_has_an_example(command, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        _parser().parse_args([command, "--help"])
    assert e.value.code == 0
    assert "Example" in capsys.readouterr().out


def test_cli_bad_spec_is_a_config_error(tmp_path) -> None:
    args = _parser().parse_args(
        [
            "compare",
            "--layout",
            "synthetic",
            "--models",
            "unet",
            "unet+++",
            "--epochs",
            "1",
            "--test-fraction",
            "0.2",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    with pytest.raises(ConfigError, match="unknown model 'unet\\+\\+\\+'"):
        args.handler(args)
    args = _parser().parse_args(
        ["compare", "--layout", "synthetic", "--models", "unet", "--epochs", "1", "--out", str(tmp_path / "s")]
    )
    with pytest.raises(ConfigError, match="exactly one held-out test set"):
        args.handler(args)
    assert not (tmp_path / "s").exists()  # nothing written on a bad spec


def test_cli_reproduce_list(capsys) -> None:
    args = _parser().parse_args(["reproduce", "--list"])
    assert args.handler(args) == 0
    assert "table4-em" in capsys.readouterr().out


def test_embedded_vs_isolated_plot(tmp_path) -> None:
    from unetpp.study.plots import embedded_plot

    rows = [
        {"depth": d, "embedded": 0.8 + d / 100, "embedded_sd": 0.02, "isolated": 0.78 + d / 90, "isolated_sd": 0.03}
        for d in (1, 2, 3)
    ]
    path = embedded_plot(rows, tmp_path / "fig6.png")
    assert path is not None
    assert path.stat().st_size > 1000
    assert embedded_plot([], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
