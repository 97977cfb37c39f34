"""The command line: return codes, one-line errors, and an example in every --help."""

from __future__ import annotations

import pytest

from unetpp import build_model, save
from unetpp.cli import build_parser, main
from unetpp.data import write_synthetic_dataset

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "Example:" in capsys.readouterr().out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("unetpp: error: ")
    return err[0]


def test_train_on_a_missing_folder(tmp_path, capsys) -> None:
    code = main(["train", "--data", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "run")])
    assert code == 2
    assert "nowhere: no such folder" in one_line_error(capsys)


def test_train_with_an_unknown_model(tmp_path, capsys) -> None:
    code = main(["train", "--data", str(tmp_path), "--model", "unet+++", "--run-dir", str(tmp_path / "run")])
    assert code == 2
    assert "unknown model 'unet+++'" in one_line_error(capsys)


def test_train_with_a_bad_override(tmp_path, capsys) -> None:
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--set", "train.nonsense=1"]) == 2
    assert "cannot apply 'train.nonsense=1'" in one_line_error(capsys)


def test_evaluate_a_saved_model(tmp_path, capsys) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_images=2, size=32)
    ckpt = save(build_model("unet++", depth=2, widths=(4, 8, 16)), tmp_path / "model.pt")
    out = tmp_path / "scores.csv"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| model.pt | ensemble |" in printed
    assert len(out.read_text().splitlines()) == 1 + 2 * 3  # header + 2 images x (2 heads + ensemble)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]) == 2
    assert "file exists; pass --overwrite" in one_line_error(capsys)


def test_evaluate_with_a_corrupt_checkpoint(tmp_path, capsys) -> None:
    (tmp_path / "bad.ckpt").write_bytes(b"\x00" * 10)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "bad.ckpt"), "--data", str(tmp_path)]) == 2
    assert "bad.ckpt: not a readable checkpoint" in one_line_error(capsys)


def test_demo_refuses_a_used_folder(tmp_path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "folder is not empty" in one_line_error(capsys)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_a_failed_start_writes_nothing(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--run-dir", str(run)]) == 2
    capsys.readouterr()
    assert not run.exists()
