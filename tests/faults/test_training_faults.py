"""Training under faults: bad options, busy or damaged run folders, full disks, signals, moved runs, budgets."""

from __future__ import annotations

import os
import shutil
import stat
import time

import pytest
import torch

from unetpp.cli import main
from unetpp.engine.runlock import run_lock

from .conftest import TINY_TRAIN, cli, one_line, snapshot

pytestmark = pytest.mark.bad_input


def best_score(run) -> float:
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    (state,) = [v for k, v in ckpt["callbacks"].items() if "best_model_score" in v and "val/iou" in k]
    return float(state["best_model_score"])


def copy(run, tmp_path, name="copy"):
    return shutil.copytree(run, tmp_path / name)


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "train.lr=abc"],
        ["--set", "train.max_epochs=ten"],
        ["--batch-size", "0"],
        ["--lr", "-1"],
        ["--precision", "foo"],
        ["--epochs", "-5"],
        ["--minutes", "-1"],
        ["--set", "data.patch_size=[7]"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_bad_option_is_one_line_and_creates_no_run_folder(args, tmp_path, fails) -> None:
    quick = ["--set", "data.layout=synthetic", "data.synthetic_images=2", "data.synthetic_size=32"]
    line = fails(["train", "--run-dir", tmp_path / "run", *quick, *args])
    assert "expected" in line or "must" in line or "cannot" in line
    assert not (tmp_path / "run").exists()


def test_a_config_file_that_is_not_a_mapping(tmp_path, fails) -> None:
    (tmp_path / "c.yaml").write_text("just a string\n")
    assert "c.yaml" in fails(["train", "--run-dir", tmp_path / "run", "--config", tmp_path / "c.yaml"])
    assert not (tmp_path / "run").exists()


def test_a_run_dir_that_is_a_file(tmp_path, fails) -> None:
    (tmp_path / "run").write_text("mine")
    assert "run: is a file, not a folder" in fails(["train", "--run-dir", tmp_path / "run", *TINY_TRAIN])
    assert (tmp_path / "run").read_text() == "mine"
    assert "run: is a file" in fails(["train", "--run-dir", tmp_path / "run" / "deeper", *TINY_TRAIN])


def test_a_second_training_on_a_busy_run_folder_is_refused(tmp_path, fails) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with run_lock(run):  # as a training in another process holds it
        line = fails(["train", "--run-dir", run, *TINY_TRAIN])
    assert f"another training (pid {os.getpid()}" in line
    assert sorted(p.name for p in run.iterdir()) == []  # the lock went with its holder


def test_a_stale_lock_of_a_dead_process_is_taken_over(trained_run, tmp_path) -> None:
    run = copy(trained_run, tmp_path)
    (run / ".lock").write_text("pid 999999999 on elsewhere\n")  # its process died without cleaning up
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3", *TINY_TRAIN]) == 0
    assert not (run / ".lock").exists()


def test_a_run_that_died_before_its_first_checkpoint_can_start_over(tmp_path, fails) -> None:
    run = tmp_path / "run"
    assert cli(["train", "--run-dir", run, "--epochs", "1", *TINY_TRAIN], fault="kill-step:1").returncode == -9
    assert (run / "config.yaml").is_file()
    assert not (run / "checkpoints" / "last.ckpt").exists()
    assert "the run never saved a checkpoint); start it over without --resume" in fails(
        ["train", "--run-dir", run, "--resume", *TINY_TRAIN]
    )
    assert main(["train", "--run-dir", str(run), "--epochs", "1", *TINY_TRAIN]) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("damage", ["truncated", "empty", "malicious", "foreign"])
def test_resuming_from_a_damaged_last_checkpoint(damage, trained_run, tmp_path, fails) -> None:
    run = copy(trained_run, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    marker = tmp_path / "pwned"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "malicious":

        class Evil:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        torch.save({"state_dict": Evil()}, last)
    else:
        torch.save([1, 2, 3], last)
    before = snapshot(run)
    line = fails(["train", "--run-dir", run, "--resume", "--epochs", "3", *TINY_TRAIN])
    assert "last.ckpt: " in line
    assert "copy best.ckpt over it" in line
    assert snapshot(run) == before  # no empty logs/part-NNN, nothing else either
    assert not marker.exists()


def test_a_full_disk_during_a_checkpoint_write_keeps_the_old_files(trained_run, tmp_path) -> None:
    run = copy(trained_run, tmp_path)
    ckpts = snapshot(run / "checkpoints")
    limit = (run / "checkpoints" / "last.ckpt").stat().st_size // 2  # no checkpoint fits any more
    done = cli(["train", "--run-dir", run, "--resume", "--epochs", "3", *TINY_TRAIN], fault=f"fsize:{limit}")
    assert done.returncode == 2, done.stderr
    assert "could not be written" in one_line(done.stderr)
    assert "nothing was changed" in done.stderr
    assert snapshot(run / "checkpoints") == ckpts  # the data stays safe, and no temporary file is left


def test_a_temporary_file_left_by_a_kill_is_removed_on_resume(trained_run, tmp_path) -> None:
    run = copy(trained_run, tmp_path)
    left = run / "checkpoints" / ".best.ckpt.k1ll3d_x.tmp.ckpt"
    left.write_bytes(b"")
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3", *TINY_TRAIN]) == 0
    assert not left.exists()


@pytest.mark.parametrize(("fault", "code"), [("term-step:3", 143), ("int-step:3", 130)])
def test_a_signal_saves_last_and_exits_non_zero(fault, code, tmp_path) -> None:
    run = tmp_path / "run"
    done = cli(["train", "--run-dir", run, "--epochs", "50", *TINY_TRAIN], fault=fault)
    assert done.returncode == code, done.stderr
    line = one_line(done.stderr)
    assert "saved" in line
    assert "--resume" in line
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert not (run / ".lock").exists()


def test_resuming_a_moved_run_never_replaces_best_with_a_worse_model(trained_run, tmp_path) -> None:
    run = copy(trained_run, tmp_path, "moved")
    best = best_score(run)
    # a learning rate so large that the later models are worse: Lightning alone would still replace best.ckpt
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "4", *TINY_TRAIN, "train.lr=50"]) == 0
    assert best_score(run) >= best
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3


def test_checkpoints_get_the_umask_permissions(trained_run) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for name in ("best.ckpt", "last.ckpt"):
        assert stat.S_IMODE((trained_run / "checkpoints" / name).stat().st_mode) == 0o666 & ~mask


def test_the_minutes_budget_is_the_wall_clock(tmp_path) -> None:
    budget_s = 20.0
    t0 = time.monotonic()
    done = cli(["train", "--run-dir", tmp_path / "run", "--epochs", "1000", "--minutes", budget_s / 60, *TINY_TRAIN])
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    # imports, data, validation and the last checkpoint included (the slack: one training batch on a busy CPU)
    assert took < budget_s + 4.0
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] < 999  # the budget stopped it, and it still saved


def test_repeated_set_flags_all_apply() -> None:
    from unetpp.cli import build_parser
    from unetpp.cli.train import _train_overrides

    args = build_parser().parse_args(["train", "--run-dir", "r", "--set", "train.lr=0.1", "--set", "train.seed=3"])
    assert _train_overrides(args)[-2:] == ["train.lr=0.1", "train.seed=3"]


def test_a_log_file_gets_the_plan_and_one_line_per_epoch_not_progress_bar_redraws(tmp_path) -> None:
    # stdout and stderr are pipes here, as in a batch job's log: the bar (asked for) stays off
    done = cli(["train", "--run-dir", tmp_path / "run", "--epochs", "2", *TINY_TRAIN, "train.progress=true"])
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "\r" not in log
    assert "epoch 1/2" in log
    assert "epoch 2/2" in log
    assert "patch_size" in log  # the plan's table


def test_a_loss_that_becomes_non_finite_stops_in_one_line_and_keeps_the_last_finite_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    done = cli(["train", "--run-dir", run, "--epochs", "5", *TINY_TRAIN, "train.lr=1e30"])
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("unetpp: error:")]
    assert len(lines) == 1
    assert "non-finite" in lines[0] or "became nan" in lines[0] or "became inf" in lines[0]
    assert "lower --lr" in lines[0]
    assert "Traceback" not in done.stderr
    for name in ("best.ckpt", "last.ckpt"):  # whatever was saved holds finite weights only
        path = run / "checkpoints" / name
        if path.exists():
            state = torch.load(path, weights_only=True)["state_dict"]
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
