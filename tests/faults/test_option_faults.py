"""Options and settings files that once ended in a traceback (issue 23, item 7): one line, nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import SRC, TINY_TRAIN, snapshot

pytestmark = pytest.mark.bad_input


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "batch_size=abc"], "plan.batch_size: got 'abc'; expected an integer"),
        (["--set", "widths=5"], "plan.widths: got 5; expected a list of integers"),
        (["--set", "channels=["], "plan.channels: got '['"),
        (["--set", "batchsize=3"], "did you mean 'batch_size'?"),
        (["--max-items", "0"], "--max-items: got 0"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_plan_options_of_the_wrong_type(args, named, data, tmp_path, fails, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = snapshot(tmp_path)
    line = fails(["plan", "--data", data, "--out", tmp_path / "plan.yaml", *args])
    assert named in line
    assert len(line) < 200
    assert snapshot(tmp_path) == before


def test_a_binary_plan_file(tmp_path, fails) -> None:
    (tmp_path / "plan.yaml").write_bytes(bytes(range(256)) * 4)
    line = fails(["train", "--run-dir", tmp_path / "run", "--plan", tmp_path / "plan.yaml", *TINY_TRAIN])
    assert "plan.yaml: cannot read the plan" in line
    assert not (tmp_path / "run").exists()


def test_an_unknown_set_key_says_what_was_meant_in_a_short_line(tmp_path, fails) -> None:
    line = fails(["train", "--run-dir", tmp_path / "run", *TINY_TRAIN, "data.patchsize=[32,32]"])
    assert "did you mean data.patch_size?" in line
    assert len(line) < 150
    assert not (tmp_path / "run").exists()


def test_an_unknown_strategy_is_refused_before_the_run_folder(tmp_path, fails) -> None:
    line = fails(["train", "--run-dir", tmp_path / "run", "--strategy", "nonsense", *TINY_TRAIN])
    assert "train.strategy: got 'nonsense'" in line
    assert not (tmp_path / "run").exists()


def test_a_run_dir_name_too_long_for_the_file_system(tmp_path, fails) -> None:
    line = fails(["train", "--run-dir", tmp_path / ("a" * 300), *TINY_TRAIN])
    assert "300 bytes, over the 255" in line
    assert len(line) < 250
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"42\n", b"models: unet\nepochs: 2\n"])
def test_a_damaged_study_yaml(content, data, tmp_path, fails) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.yaml").write_bytes(content)
    line = fails(["compare", "--out", out, "--data", data, "--models", "unet", "--epochs", "1"])
    assert "study.yaml: " in line
    assert (out / "study.yaml").read_bytes() == content
    assert [p.name for p in out.iterdir()] == ["study.yaml"]


@pytest.mark.parametrize("command", ["compare", "reproduce"])
def test_a_study_out_that_is_a_file(command, data, tmp_path, fails) -> None:
    (tmp_path / "afile").write_text("mine")
    args = {
        "compare": ["compare", "--data", data, "--models", "unet", "--epochs", "1", "--test-fraction", "0.25"],
        "reproduce": ["reproduce", "fig6", "--budget", "smoke", "--data", data],
    }[command]
    assert "afile: is a file, not a folder" in fails([*args, "--out", tmp_path / "afile"])
    assert (tmp_path / "afile").read_text() == "mine"


def test_resuming_with_fewer_epochs_than_done(trained_run, tmp_path, fails) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")
    before = snapshot(run)
    line = fails(["train", "--run-dir", run, "--resume", "--epochs", "1", *TINY_TRAIN])
    assert "--epochs 1 (train.max_epochs): the run is already in epoch 2; give --epochs 3 or more" in line
    assert snapshot(run) == before


def test_plus_minus_on_an_ascii_terminal(model_file, data, tmp_path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "unetpp",
            "evaluate",
            "--checkpoint",
            model_file,
            "--data",
            data,
            "--out",
            tmp_path / "e",
        ],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "PYTHONIOENCODING": "ascii", "LC_ALL": "C"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode("ascii", "replace")
    assert b"+/-" in done.stdout
    assert b"Traceback" not in done.stderr
