"""The command line: return codes, one-line errors, and an example in every --help."""

from __future__ import annotations

import pytest

from unetpp import save
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
    assert "model.name: got 'unet+++'; expected one of unet, wide_unet" in one_line_error(capsys)


def test_train_with_a_bad_override(tmp_path, capsys) -> None:
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--set", "train.nonsense=1"]) == 2
    assert "cannot apply 'train.nonsense=1'" in one_line_error(capsys)


def test_evaluate_a_saved_model(tmp_path, capsys, tiny_model) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_images=2, size=32)
    ckpt = save(tiny_model(), tmp_path / "model.pt")
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


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    return lambda **kw: _checkpoint(tmp_path, tiny_model(**kw))


def _checkpoint(tmp_path, model):
    return save(model, tmp_path / "model.pt")


def test_predict_writes_masks_and_refuses_to_overwrite(tmp_path, capsys, tiny_checkpoint) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_images=2, size=32)
    ckpt, out = tiny_checkpoint(), tmp_path / "out"
    args = ["predict", "--checkpoint", str(ckpt), "--inputs", str(data / "images"), "--out", str(out)]
    assert main(args) == 0
    assert len(list(out.glob("*.png"))) >= 2
    capsys.readouterr()
    assert main([*args, "--depth", "1"]) == 2
    assert "output exists (for input 000.png); pass --overwrite to replace it" in one_line_error(capsys)
    assert main([*args, "--depth", "3", "--overwrite"]) == 2
    assert "head" in one_line_error(capsys)
    assert main([*args, "--head", "1", "--overwrite"]) == 0  # the old name of --depth, with a one-line note
    note = capsys.readouterr().err.strip().splitlines()[0]  # a progress bar may follow
    assert note == "unetpp: note: --head is now spelled --depth (as in prune and export)"


def test_prune_auto_needs_deep_supervision(tmp_path, capsys, tiny_checkpoint) -> None:
    ckpt = tiny_checkpoint(deep_supervision=False)
    args = ["prune", "--checkpoint", str(ckpt), "--auto", "--out", str(tmp_path / "p.pt"), "--shape", "1x1x16x16"]
    assert main(args) == 2
    assert "--auto needs deep supervision" in one_line_error(capsys)


def test_prune_auto_scores_every_depth(tmp_path, capsys, tiny_checkpoint) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_images=2, size=32)
    ckpt, out = tiny_checkpoint(), tmp_path / "pruned.pt"
    args = ["prune", "--checkpoint", str(ckpt), "--data", str(data), "--auto", "--out", str(out)]
    assert main([*args, "--shape", "1x1x32x32", "--reps", "1", "--table", str(tmp_path / "t.csv")]) == 0
    printed = capsys.readouterr().out
    assert "pruned to depth" in printed
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 3  # L1, L2, ensemble
    pruned = __import__("unetpp").load(out)
    assert len(pruned.spec.heads) == 1


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_export(tmp_path, capsys, fmt, tiny_checkpoint) -> None:
    pytest.importorskip("onnxruntime")
    ckpt = tiny_checkpoint()
    out = tmp_path / f"m.{fmt}"
    args = ["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(out), "--depth", "1"]
    if fmt == "onnx":  # also a statically quantized copy, calibrated on two images
        args += ["--calibration", str(write_synthetic_dataset(tmp_path / "data", n_images=2, size=32) / "images")]
    assert main(args) == 0
    assert out.is_file()
    assert (tmp_path / "m.int8.onnx").is_file() == (fmt == "onnx")
    assert main(["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(out)]) == 2
    capsys.readouterr()


def test_bench_fresh_model(tmp_path, capsys, tiny_checkpoint) -> None:
    ckpt = tiny_checkpoint()
    out = tmp_path / "b.json"
    assert main(["bench", "--checkpoint", str(ckpt), "--shapes", "1x1x16x16", "--reps", "1", "--json", str(out)]) == 0
    assert "L1" in capsys.readouterr().out
    assert out.is_file()


def test_predict_into_an_unwritable_folder(tmp_path, capsys, tiny_checkpoint) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_images=1, size=32)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = ["predict", "--checkpoint", str(tiny_checkpoint()), "--inputs", str(data / "images")]
    assert main([*args, "--out", str(blocker / "sub")]) == 2
    one_line_error(capsys)


def test_evaluate_with_tta_scores_the_flip_averaged_prediction(tmp_path, capsys, tiny_model) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_images=2, size=32)
    ckpt = save(tiny_model(), tmp_path / "model.pt")
    plain, flipped = tmp_path / "plain.csv", tmp_path / "tta.csv"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(plain), "--no-hd95"]) == 0
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(flipped), "--no-hd95", "--tta"]
    assert main(argv) == 0
    rows = [f.read_text().splitlines() for f in (plain, flipped)]
    assert [r.split(",")[:2] for r in rows[0]] == [r.split(",")[:2] for r in rows[1]]  # same images and modes
