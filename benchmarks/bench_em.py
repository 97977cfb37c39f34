"""Accuracy on ISBI 2012 EM (paper Table: U-Net 88.30 vs UNet++ with deep supervision 89.33 IoU).

U-Net (L4) and UNet++ (deep supervision) train on sections 00-19 with the same wall-clock budget
and the same pipeline (96x96 patches, augmentation, hybrid loss, Adam 3e-4), for several seeds;
the last checkpoint of each run (no model selection on the test sections) is scored on sections
20-23: IoU of the label's 255 class (cell interior), per head and for the ensemble. Results are
appended to a JSON file after every run, so an interrupted benchmark keeps what it finished.

    .venv/bin/python benchmarks/bench_em.py --data ../shared/data/isbi2012-em --minutes 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from unetpp.config import RunConfig
from unetpp.data import ISBI2012
from unetpp.engine.train import fit
from unetpp.evaluate import evaluate, paired_t_test
from unetpp.models import NestedUNet, load

MODELS = {"U-Net (L4)": ["model.name=unet"], "UNet++ (DS)": ["model.name=unet++", "model.deep_supervision=true"]}
TRAIN_IDS = [f"{k:02d}" for k in range(20)]
TEST_IDS = [f"{k:02d}" for k in range(20, 24)]


def train_last(overrides: list[str], minutes: float, precision: str, seed: int, run_dir: Path) -> NestedUNet:
    """Train with a wall-clock budget on all the given images (no validation split) and return the last model.

    Scoring the last checkpoint keeps the test images out of model selection.
    """
    budget = [
        "data.val_fraction=0",
        "data.num_workers=1",
        "train.max_epochs=100000",
        f"train.max_minutes={minutes}",
        f"train.precision={precision}",
        f"train.seed={seed}",
        "train.progress=false",
    ]
    fit(RunConfig().override([*overrides, *budget]), run_dir)
    return load(run_dir / "checkpoints" / "last.ckpt")


def collect(out: Path, models: list[str], seeds: list[int], run: Callable[[str, int, Path], list[dict]]) -> list[dict]:
    """Every (model, seed) run not yet in `out`, appending rows to it after each run (resumable)."""
    rows: list[dict] = json.loads(out.read_text()) if out.exists() else []
    done = {(r["model"], r["seed"]) for r in rows}
    for seed in seeds:
        for model in models:
            if (model, seed) not in done:
                with tempfile.TemporaryDirectory() as tmp:
                    rows += run(model, seed, Path(tmp) / "run")
                out.write_text(json.dumps(rows, indent=1))
                print(summary(rows), flush=True)
    return rows


def run_one(data: str, model: str, seed: int, minutes: float, precision: str, run_dir: Path) -> list[dict]:
    overrides = [
        f"data.root={data}",
        "data.layout=isbi2012",
        f"data.ids={json.dumps(TRAIN_IDS)}",
        "data.patches_per_image=16",
        *MODELS[model],
    ]
    net = train_last(overrides, minutes, precision, seed, run_dir)
    test = ISBI2012(data)
    samples = (test[k] for k, i in enumerate(test.ids) if i in TEST_IDS)
    return [{"model": model, "seed": seed, **r.__dict__} for r in evaluate(net, samples, with_hd95=False)]


def summary(rows: list[dict]) -> str:
    """Mean ± s.d. over seeds of each seed's mean IoU, per model and mode; the last model's ensemble vs the first."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = ["| model | mode | IoU % (mean ± s.d. over seeds) | per seed |", "|---|---|---:|---|"]
    for model in models:
        seeds = sorted({r["seed"] for r in rows if r["model"] == model})
        for mode in dict.fromkeys(r["mode"] for r in rows if r["model"] == model):
            per_seed = [
                statistics.mean(r["iou"] for r in rows if (r["model"], r["mode"], r["seed"]) == (model, mode, s))
                for s in seeds
            ]
            sd = statistics.stdev(per_seed) if len(per_seed) > 1 else float("nan")
            listed = ", ".join(f"{100 * v:.2f}" for v in per_seed)
            lines.append(f"| {model} | {mode} | {100 * statistics.mean(per_seed):.2f} ± {100 * sd:.2f} | {listed} |")
    if len(models) > 1:
        first, last = models[0], models[-1]
        base = {(r["seed"], r["image"]): r["iou"] for r in rows if r["model"] == first}
        ens = {(r["seed"], r["image"]): r["iou"] for r in rows if (r["model"], r["mode"]) == (last, "ensemble")}
        common = sorted(set(base) & set(ens))
        if len(common) > 1:
            p = paired_t_test([ens[k] for k in common], [base[k] for k in common])
            lines.append(
                f"\n{last} ensemble vs {first}, paired t-test over {len(common)} (seed, image) pairs: p = {p:.3g}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/isbi2012-em")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_em.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = collect(
        args.out,
        list(MODELS),
        args.seeds,
        lambda model, seed, run_dir: run_one(args.data, model, seed, args.minutes, args.precision, run_dir),
    )
    print(f"\n{args.minutes:g} min per run on {torch.get_num_threads()} CPU threads, precision {args.precision}")
    print(summary(rows))


if __name__ == "__main__":
    main()
