"""How far the end-of-training flips check can be trusted on the few validation images a budget leaves it (issue 19).

Under ``--minutes`` the check (``unetpp.engine.tta``) often sees only a handful of validation images: on DSB 2018 at 6
minutes, 2 to 5 of 91. For each finished run this measures, with the run's best model:

- the flips' IoU gain on every validation image (one pass against the mean over flips, every component kept), and so
  the choice the check makes on all of them;
- how often the check's rule (a mean gain of at least ``TTA_MARGIN``) chooses flips on `n` validation images drawn at
  random (2000 draws per `n`), as a short budget would;
- what flips buy on the held-out images (``unetpp evaluate --tta`` against ``--no-tta``, ``--no-postprocess``), paired.

    .venv/bin/python benchmarks/bench_flips_check.py --out /tmp/flips --layout dsb2018 \\
        --test studies/tta/dsb/split/test studies/tta/dsb/6_min/unet++/seed*

The runs are left as they are; the per-image numbers and ``table.md`` go under ``--out``.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from bench_postprocess import evaluate, per_image, write_table

from unetpp.config import RunConfig
from unetpp.engine.datamodule import SegmentationDataModule
from unetpp.engine.tta import TTA_MARGIN, check_image
from unetpp.models.checkpoint import load
from unetpp.models.provenance import recorded_ensemble_heads
from unetpp.study.stats import format_p, paired

DRAWS = 2000
SUBSETS = (2, 4, 8, 16)


def validation_gains(run: Path, out: Path) -> np.ndarray:
    """Flips' IoU gain per validation image of `run` (cached in `out`/validation.npz)."""
    cached = out / "validation.npz"
    if cached.is_file():
        return np.load(cached)["gain"]
    best = run / "checkpoints" / "best.ckpt"
    cfg = RunConfig.load(run / "config.yaml")
    data = SegmentationDataModule.from_config(cfg)
    data.setup("fit")
    model, heads = load(best), recorded_ensemble_heads(best)
    bf16 = cfg.train.precision == "bf16"  # as the check runs at the end of training
    start, gains = time.monotonic(), []
    for k in range(len(data.val_set)):
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            one_pass, flipped = check_image(model, data.val_set[k], heads).iou
        gains.append(flipped - one_pass)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(cached, gain=np.array(gains))
    print(f"{run}: {len(gains)} validation images in {time.monotonic() - start:.0f} s")
    return np.array(gains)


def chosen_share(gains: np.ndarray, n: int, rng: np.random.Generator) -> float | None:
    """The share of `n`-image draws on which the check's rule chooses flips; None with fewer images than `n`."""
    if n > len(gains):
        return None
    picks = [gains[rng.choice(len(gains), n, replace=False)].mean() >= TTA_MARGIN for _ in range(DRAWS)]
    return float(np.mean(picks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (config.yaml, checkpoints/best.ckpt)")
    p.add_argument("--test", type=Path, required=True, help="the held-out images")
    p.add_argument("--layout", default="folders")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    draws = " | ".join(f"chose flips on {n}" for n in SUBSETS)
    lines = [
        f"| run | validation images | val. IoU gain, all (chosen) | {draws} | test IoU % one pass → flips "
        "| images better / worse | paired p |",
        "|---|---:|---|" + "---:|" * len(SUBSETS) + "---|---|---|",
    ]
    rng = np.random.default_rng(0)
    for run in args.runs:
        name = "/".join(run.parts[-4:])
        out = args.out / name.replace("/", "_")
        gains = validation_gains(run, out)
        ckpt = run / "checkpoints" / "best.ckpt"
        for flips in ("tta", "no-tta"):
            evaluate(ckpt, args.test, args.layout, out / f"test_{flips}.csv", [f"--{flips}", "--no-postprocess"])
        mode = "chosen" if per_image(out / "test_tta.csv", "chosen") else "ensemble"
        flipped, one_pass = (per_image(out / f"test_{f}.csv", mode) for f in ("tta", "no-tta"))
        ids = sorted(one_pass)
        after, before = (np.array([scores[i][0] for i in ids]) for scores in (flipped, one_pass))
        shares = (chosen_share(gains, n, rng) for n in SUBSETS)
        lines.append(
            f"| {name} | {len(gains)} | {100 * gains.mean():+.2f} ({'yes' if gains.mean() >= TTA_MARGIN else 'no'}) | "
            + " | ".join("-" if s is None else f"{100 * s:.0f} %" for s in shares)
            + f" | {100 * before.mean():.2f} → {100 * after.mean():.2f} | {int((after > before).sum())} / "
            f"{int((after < before).sum())} | {format_p(paired(list(after), list(before)))} |"
        )
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
