"""What removing small components buys on held-out images, measured on finished runs (issue 19).

For each run folder (``bench_time_to_accuracy.py``'s, or any ``unetpp train`` run): a copy of its best
checkpoint goes through the end-of-training check again (``unetpp.engine.tta.choose_prediction``, on the run's
own validation images, within ``--seconds`` or on all of them), which records the flips and the minimum
component size per class; then ``unetpp evaluate`` scores the copy on the held-out part with every component
kept (``--no-postprocess``) and as ``predict`` runs it, and a paired t-test over the held-out images compares
the two in the prediction's mode (the chosen heads).

    .venv/bin/python benchmarks/bench_postprocess.py --out /tmp/pp --layout dsb2018 \\
        --test studies/tta/dsb/split/test studies/tta/dsb/6_min/unet++/seed*

The runs are left as they were; the copies, their evaluations and ``table.md`` go under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from unetpp.cli import main as unetpp
from unetpp.config import RunConfig
from unetpp.engine.datamodule import SegmentationDataModule
from unetpp.engine.tta import choose_prediction
from unetpp.study.stats import format_p, paired


def per_image(path: Path, mode: str) -> dict[str, tuple[float, float]]:
    """IoU and Dice of each held-out image in `mode`, from an ``evaluate`` CSV."""
    with path.open(newline="") as f:
        return {r["image"]: (float(r["iou"]), float(r["dice"])) for r in csv.DictReader(f) if r["mode"] == mode}


def recheck(run: Path, out: Path, seconds: float | None) -> tuple[Path, dict, float]:
    """A copy of the run's best checkpoint with the check made again; returns it, the record and the check's time."""
    copy = out / "best.ckpt"
    if not copy.is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "checkpoints" / "best.ckpt", out / "copy.tmp")
        cfg = RunConfig.load(run / "config.yaml")
        data = SegmentationDataModule.from_config(cfg)
        data.setup("fit")
        t0 = time.monotonic()
        choose_prediction(out / "copy.tmp", data.val_set, seconds=seconds, bf16=cfg.train.precision == "bf16")
        (out / "check_seconds.txt").write_text(f"{time.monotonic() - t0:.1f}\n")
        (out / "copy.tmp").rename(copy)
    header = torch.load(copy, map_location="cpu", weights_only=True, mmap=True)["unetpp"]
    return copy, header, float((out / "check_seconds.txt").read_text())


def evaluate(ckpt: Path, test: Path, layout: str, out: Path, options: list[str]) -> None:
    if out.is_file():
        return
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(test), "--layout", layout, "--no-hd95"]
    if unetpp([*argv, *options, "--out", str(out)]) != 0:
        raise SystemExit(f"unetpp evaluate failed for {ckpt}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (config.yaml, checkpoints/best.ckpt)")
    p.add_argument("--test", type=Path, required=True, help="the held-out images")
    p.add_argument("--layout", default="folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seconds", type=float, help="the check's time (as a budget keeps it); default: every image")
    args = p.parse_args()
    lines = [
        "| run | check: images, s | flips | min size per class | val. IoU % kept → removed "
        "| test IoU % kept → removed | Dice % kept → removed | images better / worse | paired p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in args.runs:
        name = "/".join(run.parts[-4:])
        out = args.out / name.replace("/", "_")
        copy, header, seconds = recheck(run, out, args.seconds)
        tta, pp = header.get("tta") or {}, header.get("postprocess")
        flips = ["--tta"] if tta.get("use") else ["--no-tta"]
        evaluate(copy, args.test, args.layout, out / "kept.csv", [*flips, "--no-postprocess"])
        evaluate(copy, args.test, args.layout, out / "removed.csv", flips)
        mode = "chosen" if per_image(out / "kept.csv", "chosen") else "ensemble"
        kept, removed = per_image(out / "kept.csv", mode), per_image(out / "removed.csv", mode)
        ids = sorted(kept)
        before, after = (np.array([scores[i] for i in ids]) for scores in (kept, removed))
        better, worse = int((after[:, 0] > before[:, 0]).sum()), int((after[:, 0] < before[:, 0]).sum())
        changed = better + worse > 0
        p_value = format_p(paired(list(after[:, 0]), list(before[:, 0]))) if changed else "-"
        val = f"{100 * pp['iou']:.2f} → {100 * pp['iou_after']:.2f}" if pp else "-"
        lines.append(
            f"| {name} | {tta.get('images', '-')}, {seconds:.0f} | {'yes' if tta.get('use') else 'no'} "
            f"| {pp['min_size'] if pp else '-'} | {val} "
            f"| {100 * before[:, 0].mean():.2f} → {100 * after[:, 0].mean():.2f} "
            f"| {100 * before[:, 1].mean():.2f} → {100 * after[:, 1].mean():.2f} | {better} / {worse} | {p_value} |"
        )
    write_table(args.out, lines)


def write_table(folder: Path, lines: list[str]) -> None:
    """The Markdown table into `folder`/table.md, and on the terminal."""
    text = "\n".join(lines)
    (folder / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
