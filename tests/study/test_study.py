"""A whole study on tiny synthetic data: parts, resume, report files, and the HTML in a real browser."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import pytest

from unetpp.errors import ConfigError, DataError
from unetpp.study import StudySpec, compare, runner
from unetpp.study.report import write_report

from ..conftest import TINY_MODEL

TINY = (
    *TINY_MODEL,
    "data.synthetic_images=4",
    "data.synthetic_size=32",
    "data.patch_size=[32, 32]",
    "data.patches_per_image=2",
    "data.batch_size=2",
    "data.num_workers=0",
)


def tiny_spec(**kw) -> StudySpec:
    values = {
        "layout": "synthetic",
        "models": ("unet", "unet++"),
        "seeds": (0, 1),
        "epochs": 1,
        "test_ids": ("3",),
        "overrides": TINY,
        "hd95": False,
        **kw,
    }
    return StudySpec(**values)


class CountingFit:
    """Wraps the engine's fit: records every call (run folder, resume flag)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from unetpp.engine import train

        self.real, self.calls = train.fit, []
        monkeypatch.setattr(train, "fit", self)

    def __call__(self, cfg, run_dir, *, resume=False):
        self.calls.append((str(run_dir), resume))
        return self.real(cfg, run_dir, resume=resume)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 2 models x 2 seeds x 1 epoch study, trained as two parts (1/2 then 2/2), then reported."""
    mp = pytest.MonkeyPatch()
    fit = CountingFit(mp)
    out = tmp_path_factory.mktemp("study")
    spec = tiny_spec()
    parts = {}
    for k in (1, 2):
        runner.run_study(spec, out, part=(k, 2))
        parts[k] = list(fit.calls)
        fit.calls.clear()
    table = compare(spec, out, command="unetpp compare --out x")  # everything trained: trains nothing
    again = list(fit.calls)
    mp.undo()
    return {"out": out, "spec": spec, "parts": parts, "again": again, "table": table}


def test_parts_train_each_run_exactly_once(study) -> None:
    first, second = ({d for d, _ in study["parts"][k]} for k in (1, 2))
    assert len(first) == len(second) == 2
    assert not first & second
    assert first | second == {str(r.folder(study["out"])) for r in runner.runs_of(study["spec"])}
    assert study["again"] == []  # a finished study trains nothing


def test_parts_are_a_partition() -> None:
    from unetpp.utils.sharding import parse_part, take_part

    runs = list(range(7))
    parts = [take_part(runs, (k, 3)) for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == runs
    assert take_part(runs, parse_part("2/3")) == [1, 4]
    for bad in ("3/2", "0/2", "1", "a/b"):
        with pytest.raises(ConfigError, match="--part must be k/n"):
            parse_part(bad)


def test_runs_go_seed_by_seed_so_a_stopped_study_compares_every_model() -> None:
    runs = runner.runs_of(tiny_spec(models=("unet", "unet++"), seeds=(1, 0)))
    assert [(str(r.model), r.seed) for r in runs] == [("unet", 0), ("unet++", 0), ("unet", 1), ("unet++", 1)]


def test_the_study_writes_table_files_and_figures(study) -> None:
    out, table = study["out"], study["table"]
    assert "| unet (reference) | head2 |" in table
    assert re.search(r"\| unet\+\+ \| ensemble \| \d+\.\d\d ± \d+\.\d\d", table)
    for name in ("report.md", "report.html", "results.csv", "results.json", "study.yaml"):
        assert (out / name).is_file(), name
    for fig in ("learning_curves", "box_iou", "size_groups"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    # unet: 1 mode; unet++ (2 heads): head1, head2, ensemble, chosen; per seed
    assert len(rows) == 2 * 1 + 2 * 4
    assert {r["mode"] for r in rows if r["model"] == "unet++"} == {"head1", "head2", "ensemble", "chosen"}
    data = json.loads((out / "results.json").read_text())
    assert {r["model"] for r in data["table"]} == {"unet", "unet++"}
    assert data["pruning"][0]["model"] == "unet++"
    assert data["pruning"][0]["auto_depth"] in (1, 2)
    md = (out / "report.md").read_text()
    assert "unetpp compare --out x" in md
    assert '"torch"' in md
    precision = [o for o in data["study"]["overrides"] if o.startswith("train.precision=")]
    assert len(precision) == 1  # chosen for this machine when the study began, saved with it
    assert precision[0] in (o for o in StudySpec.load(out).overrides)
    info = json.loads((out / "runs" / "unetpp" / "seed0" / "run.json").read_text())
    assert info["epochs"] == 1
    assert info["seconds"] > 0
    assert info["seconds_per_epoch"] > 0
    assert info["ensemble_heads"]
    assert set(info["ensemble_heads"]) <= {1, 2}
    assert "chosen (seed 0:" in md


def test_a_clashing_study_is_one_line(study, tmp_path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(study["out"], out)
    with pytest.raises(ConfigError, match=r"epochs is 1 in the saved study but 2 now") as e:
        runner.run_study(tiny_spec(epochs=2), out)
    assert "\n" not in str(e.value)
    # same study settings but a finished run's config edited to another seed: named with its file
    cfg = out / "runs" / "unet" / "seed1" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("seed: 1", "seed: 5"))
    with pytest.raises(ConfigError, match=r"seed1/config.yaml: train\.seed is 5 in the run but 1 in this study"):
        runner.run_study(tiny_spec(), out)


def test_a_study_with_missing_data_saves_nothing(tmp_path) -> None:
    """A mistyped --data fails before study.yaml is written, so the corrected command can use the same --out."""
    out = tmp_path / "study"
    with pytest.raises(DataError, match="no such folder"):
        runner.run_study(tiny_spec(layout="isbi2012", data=str(tmp_path / "typo"), test_ids=("20",)), out)
    assert not (out / "study.yaml").exists()


def test_an_interrupted_study_resumes_without_retraining(tmp_path, monkeypatch) -> None:
    """Seed 0 finishes; seed 1 is killed after its first of 2 epochs; the rerun trains only seed 1's rest."""
    import yaml

    from unetpp.engine import train

    spec = tiny_spec(models=("unet",), epochs=2)
    real = train.fit
    calls = []

    def interrupted(cfg, run_dir, *, resume=False):
        calls.append((run_dir.name, resume))
        if run_dir.name == "seed1" and not resume:
            # what a kill at the end of epoch 1 leaves: the run's config and last.ckpt after 1 epoch
            real(cfg.override(["train.max_epochs=1"]), run_dir)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            raise KeyboardInterrupt
        return real(cfg, run_dir, resume=resume)

    monkeypatch.setattr(train, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(spec, tmp_path)
    seed0 = tmp_path / "runs" / "unet" / "seed0" / "scores.csv"
    stamp = seed0.stat().st_mtime_ns
    assert not (tmp_path / "runs" / "unet" / "seed1" / "scores.csv").exists()
    calls.clear()
    runner.run_study(spec, tmp_path)
    assert calls == [("seed1", True)]
    assert seed0.stat().st_mtime_ns == stamp
    info = json.loads((tmp_path / "runs" / "unet" / "seed1" / "run.json").read_text())
    assert info["epochs"] == 2
    assert info["sessions"] == 2
    assert "unet (reference)" in write_report(spec, tmp_path, with_pruning=False)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="needs chromium (Debian: apt-get install chromium)")
def test_the_html_renders_in_headless_chromium(study, tmp_path) -> None:
    page = study["out"] / "report.html"
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    total = len(re.findall(r"<img ", dom))
    assert total >= 5  # curves, boxes, size groups, one overlay per model
    assert f'data-images-loaded="{total}"' in dom  # every image decoded (naturalWidth > 0)
    assert dom.count("<table>") >= 3
    assert "unet++" in dom
    assert "ensemble" in dom


def test_a_multi_class_study_reports_each_class(tmp_path) -> None:
    from ..plan.test_fingerprint import write_set

    write_set(tmp_path / "data", "labels", n=5, shape=(32, 32))  # label maps {0, 1, 2}
    spec = tiny_spec(
        layout="folders",
        data=str(tmp_path / "data"),
        models=("unet",),
        seeds=(0,),
        classes=3,
        test_ids=("4",),
        overrides=(*TINY[:2], "data.patch_size=[32, 32]", "data.batch_size=2", "data.num_workers=0"),
    )
    compare(spec, tmp_path / "study")
    report = (tmp_path / "study" / "report.md").read_text()
    section = report.split("## Each class (main mode)")[1].split("##")[0]
    assert re.search(r"\| unet \| head2 \| 1 \| [\d.]+ \|", section)
    assert re.search(r"\| unet \| head2 \| 2 \| [\d.]+ \|", section)
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    assert [c["class"] for c in results["classes"]] == [1, 2]
