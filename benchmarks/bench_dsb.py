"""U-Net vs UNet++ on a ResNet-34 encoder from scratch, DSB 2018 nuclei (paper Table V's comparison).

Both train with the same wall-clock budget on a fixed split of `stage1_train` (every 10th image,
by sorted id, held out for testing; no model selection on it: the last checkpoint is scored),
grey input, random encoder weights. IoU of the nuclei (the semantic union of the instance masks)
per test image, per head and for the ensemble; several seeds. Results are appended to a JSON file
after every run.

    .venv/bin/python benchmarks/bench_dsb.py --data ../shared/data/dsb2018/stage1_train --minutes 4 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_em import collect, summary, train_last  # same folder: run as a script

from unetpp.data import DSB2018
from unetpp.evaluate import evaluate

MODELS = {
    "U-Net (resnet34)": ["model.name=unet"],
    "UNet++ (resnet34, DS)": ["model.name=unet++", "model.deep_supervision=true"],
}


def split_ids(root: str) -> tuple[list[str], list[str]]:
    ids = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    return [i for k, i in enumerate(ids) if k % 10], ids[::10]


def run_one(root: str, model: str, seed: int, minutes: float, precision: str, run_dir: Path) -> list[dict]:
    train_ids, test_ids = split_ids(root)
    overrides = [
        f"data.root={root}",
        "data.layout=dsb2018",
        "data.channels=grey",
        f"data.ids={json.dumps(train_ids)}",
        "data.patches_per_image=1",
        "model.encoder=resnet34",
        "model.depth=4",
        *MODELS[model],
    ]
    net = train_last(overrides, minutes, precision, seed, run_dir)
    test = DSB2018(root, ids=test_ids, channels="grey")
    return [{"model": model, "seed": seed, **r.__dict__} for r in evaluate(net, test, with_hd95=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/dsb2018/stage1_train")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_dsb.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = collect(
        args.out,
        list(MODELS),
        args.seeds,
        lambda model, seed, run_dir: run_one(args.data, model, seed, args.minutes, args.precision, run_dir),
    )
    print(f"{args.minutes:g} min per run, precision {args.precision}, seeds {args.seeds}")
    print(summary(rows))


if __name__ == "__main__":
    main()
