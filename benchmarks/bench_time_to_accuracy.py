"""What a user's minutes buy (issue 19): held-out accuracy with defaults only, per data set and budget.

Every run is ``unetpp compare`` with nothing but the data, its layout, the held-out split and
``--minutes`` (the plan picks the rest), so the table is what a new user gets on this machine:

- ISBI 2012 EM: train on slices 00-19, test on 20-23;
- DSB 2018 ``stage1_train``: test on the last 20% of the sorted ids (grey, as the README trains it);
- MSD hippocampus (3D, 3 classes): test on a seeded 20% of the volumes (``random.Random(0)``).

Per run the table gives the held-out IoU and Dice (mean over test images: U-Net's output; UNet++'s
plain mean of the heads and the validation-chosen heads), the optimizer steps done, and the shares of
the budget spent training and validating (the budget's own account, stored in the last checkpoint).

    .venv/bin/python benchmarks/bench_time_to_accuracy.py --out studies/tta --minutes 6 15
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --out studies/tta --data-sets isbi --models unet++
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --smoke --out /tmp/tta-smoke   # plumbing only

Each data set and budget is one study folder (``<out>/<data set>/<minutes>min``): rerunning resumes it
and trains only the missing runs. The table is printed and written to ``<out>/table.md``. Run it alone:
a second training on the same cores halves both runs' steps. nnU-Net at the same wall clock is not
driven by this script (see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from unetpp.cli import main
from unetpp.models.provenance import summarize_csv
from unetpp.study.spec import ModelSpec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class DataSet:
    folder: Path
    layout: str
    split: list[str]  # compare's held-out test option
    extra: list[str]  # anything else the data needs (3D, classes, channels)
    settings: tuple[str, ...] = ()  # compare's --set values


def hippocampus_test_ids(folder: Path, fraction: float = 0.2) -> list[str]:
    """A seeded `fraction` of the volumes, as ids (the file names without ``.nii.gz``)."""
    ids = sorted(p.name.removesuffix(".nii.gz") for p in (folder / "imagesTr").glob("*.nii.gz"))
    return sorted(random.Random(0).sample(ids, round(fraction * len(ids))))


def data_sets(shared: Path) -> dict[str, DataSet]:
    hippocampus = shared / "msd-hippocampus"
    return {
        "isbi": DataSet(shared / "isbi2012-em", "isbi2012", ["--test-ids", "20", "21", "22", "23"], []),
        "dsb": DataSet(
            shared / "dsb2018" / "stage1_train",
            "dsb2018",
            ["--test-fraction", "0.2"],
            ["--in-channels", "1"],
            ("data.channels=grey",),
        ),
        "hippocampus": DataSet(
            hippocampus, "decathlon", ["--test-ids", *hippocampus_test_ids(hippocampus)], ["--3d", "--classes", "3"]
        ),
    }


def run_study(out: Path, data: DataSet, models: list[str], minutes: float, seeds: list[int], smoke: bool) -> None:
    """One ``unetpp compare`` study (resumable)."""
    budget = ["--epochs", "1"] if smoke else ["--minutes", f"{minutes:g}"]
    argv = ["compare", "--data", str(data.folder), "--layout", data.layout, "--models", *models]
    argv += ["--seeds", *map(str, seeds), *budget, *data.split, "--no-hd95", "--out", str(out), *data.extra]
    settings = list(data.settings)
    if smoke:  # one epoch of two steps: checks the plumbing only
        settings += ["train.progress=false", "train.steps_per_epoch=2", "data.batch_size=1"]
    if settings:
        argv += ["--set", *settings]
    code = main(argv)
    if code != 0:
        raise SystemExit(f"unetpp compare exited {code} for {out}")


def budget_account(run: Path) -> dict:
    """The optimizer steps and the wall-clock budget's account, from the run's last checkpoint."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    account = ckpt.get("callbacks", {}).get("WallClockBudget", {})
    return {"steps": ckpt["global_step"], **account}


def rows(study: Path, name: str, budget: str, models: list[str]) -> list[str]:
    lines = []
    for spec in models:
        for run in sorted((study / "runs" / ModelSpec.parse(spec).slug).glob("seed*")):
            if not (run / "scores.csv").exists():
                continue
            modes = summarize_csv(run / "scores.csv", "compare")["modes"]
            account = budget_account(run)
            shares = [account.get("training_share"), account.get("validating_share")]
            train_pct, val_pct = (f"{100 * s:.1f}" if s is not None else "-" for s in shares)
            for mode in ("ensemble", "chosen"):
                if mode not in modes:
                    continue
                iou, dice = (100 * modes[mode][metric][0] for metric in ("iou", "dice"))
                label = spec if spec == "unet" else f"{spec} ({'plain mean' if mode == 'ensemble' else 'chosen heads'})"
                lines.append(
                    f"| {name} | {budget} | {label} | {run.name} | {iou:.2f} | {dice:.2f} | {account['steps']} "
                    f"| {train_pct} | {val_pct} | {account.get('validations', '-')} |"
                )
    return lines


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--data-sets", nargs="+", default=["isbi", "dsb", "hippocampus"], choices=["isbi", "dsb", "hippocampus"]
    )
    p.add_argument("--models", nargs="+", default=["unet", "unet++"])
    p.add_argument("--minutes", nargs="+", type=float, default=[6.0, 15.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    p.add_argument("--smoke", action="store_true", help="one epoch per run: checks the plumbing only")
    args = p.parse_args()
    sets = data_sets(args.shared)
    header = [
        "| data set | budget | model | seed | test IoU % | Dice % | steps | training % | validating % | validations |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines = []
    for name in args.data_sets:
        for minutes in args.minutes:
            study = args.out / name / (f"{minutes:g}min" if not args.smoke else "smoke")
            run_study(study, sets[name], args.models, minutes, args.seeds, args.smoke)
            lines += rows(study, name, "1 epoch of 2 steps" if args.smoke else f"{minutes:g} min", args.models)
            if args.smoke:
                break
    text = "\n".join(header + lines)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    cli()
