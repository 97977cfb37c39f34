"""The command line end to end on tiny runs: train, resume, prune by depth or latency, outputs checked first."""

from __future__ import annotations

import json

import pytest
import torch

import unetpp
from unetpp.cli import main
from unetpp.data import write_synthetic_dataset
from unetpp.utils.run_metrics import read_run_metrics

TINY = [
    "--layout",
    "synthetic",
    "--depth",
    "2",
    "--widths",
    "4,8,16",
    "--batch-size",
    "4",
    "--workers",
    "0",
    "--set",
    "data.synthetic_images=6",
    "data.synthetic_size=64",
    "data.patch_size=[32,32]",
    "--set",  # a second --set adds to the first
    "data.patches_per_image=2",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny CLI training run shared by the tests below (2 epochs)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--run-dir", str(run)]) == 0
    return run


def test_train_writes_a_run_with_every_option_applied(trained, capsys) -> None:
    cfg = unetpp.config.RunConfig.load(trained / "config.yaml")
    assert (cfg.model.depth, cfg.model.widths, cfg.data.patches_per_image) == (2, (4, 8, 16), 2)
    assert (cfg.data.synthetic_images, cfg.train.max_epochs) == (6, 2)
    assert (trained / "checkpoints" / "best.ckpt").is_file()
    assert [e for e, _ in read_run_metrics(trained)["val/iou"]] == [0, 1]


def test_resume_from_the_cli_continues_the_epoch_count(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--precision", "32-true", "--run-dir", str(run)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "precision" in line]
    assert notes == ["unetpp: note: train.precision='32-true' is now spelled '32'"]  # old spelling: one line
    step_after_one = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3"]) == 0
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 * step_after_one
    assert [e for e, _ in read_run_metrics(run)["val/iou"]] == [0, 1, 2]
    assert len(list((run / "logs").glob("part-*"))) == 2  # one log part per session, none overwritten


def test_prune_to_a_depth_writes_that_pruned_model(trained, tmp_path, capsys) -> None:
    out = tmp_path / "l1.pt"
    ckpt = trained / "checkpoints" / "best.ckpt"
    assert (
        main(
            [
                "prune",
                "--checkpoint",
                str(ckpt),
                "--depth",
                "1",
                "--shape",
                "1x1x32x32",
                "--reps",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    small, full = unetpp.load(out), unetpp.load(ckpt).eval()
    assert small.spec.heads == (1,)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x)[0], full(x, head=1)[0])
    assert "pruned to depth 1" in capsys.readouterr().out


def test_prune_under_a_latency_budget_picks_a_depth_that_meets_it(trained, tmp_path, capsys) -> None:
    data = write_synthetic_dataset(tmp_path / "val", n_images=2, size=32)
    table, out = tmp_path / "fig5.csv", tmp_path / "fast.pt"
    args = ["prune", "--checkpoint", str(trained / "checkpoints" / "best.ckpt"), "--data", str(data)]
    code = main(
        [
            *args,
            "--max-latency-ms",
            "10000",
            "--shape",
            "1x1x32x32",
            "--reps",
            "2",
            "--table",
            str(table),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rows = table.read_text().splitlines()
    assert rows[0].startswith("mode,depth,params")
    assert len(rows) == 1 + 3
    assert unetpp.load(out).spec.heads[0] in (1, 2)
    capsys.readouterr()
    # too tight a budget: one line naming the fastest depth, and nothing written
    code = main(
        [
            *args,
            "--max-latency-ms",
            "0.000001",
            "--shape",
            "1x1x32x32",
            "--reps",
            "1",
            "--out",
            str(tmp_path / "none.pt"),
        ]
    )
    assert code == 2
    assert "fastest: depth 1" in capsys.readouterr().err
    assert not (tmp_path / "none.pt").exists()


def test_outputs_are_checked_before_any_measuring(trained, tmp_path, capsys) -> None:
    ckpt = str(trained / "checkpoints" / "best.ckpt")
    taken = tmp_path / "t.csv"
    taken.write_text("mine")
    code = main(["prune", "--checkpoint", ckpt, "--depth", "1", "--table", str(taken), "--out", str(tmp_path / "p.pt")])
    assert code == 2
    assert "t.csv: file exists; pass --overwrite" in capsys.readouterr().err
    assert taken.read_text() == "mine"
    assert not (tmp_path / "p.pt").exists()
    code = main(["prune", "--checkpoint", ckpt, "--depth", "9", "--out", str(tmp_path / "p.pt")])
    assert code == 2
    assert "--depth 9: the model has heads at depths [1, 2]" in capsys.readouterr().err
    report = tmp_path / "b.json"
    report.write_text("{}")
    code = main(["bench", "--checkpoint", ckpt, "--shapes", "1x1x32x32", "--reps", "1", "--json", str(report)])
    assert code == 2
    assert report.read_text() == "{}"
    capsys.readouterr()
    assert (
        main(
            [
                "bench",
                "--checkpoint",
                ckpt,
                "--shapes",
                "1x1x32x32",
                "--reps",
                "1",
                "--json",
                str(report),
                "--overwrite",
            ]
        )
        == 0
    )
    assert [row["mode"] for row in json.loads(report.read_text())["1x1x32x32"]] == ["L1", "L2", "ensemble"]
