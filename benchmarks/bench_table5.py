"""Paper Table V on DSB 2018 nuclei: U-Net, UNet++, Mask R-CNN and Mask R-CNN++ at an equal time budget.

All four train through the project's engine (``unetpp.engine.train.fit``, what ``unetpp train``
runs) and are scored by ``unetpp.evaluation.instances`` (what ``unetpp evaluate`` prints). Split by
image id: every 10th sorted id of ``stage1_train`` is a test image, never trained on; no validation
split, the last checkpoint is scored (no selection on the test set). Grey input, the same timm
backbone with random weights for all four, fp32. U-Net and UNet++ train on 96x96 patches with the
hybrid loss and are scored on the connected components of their thresholded (ensemble) output;
the detectors train on random 256x256 crops (rot90/flip, batch 2, Adam) at native scale and are
scored on their instances with score >= 0.5 (higher score wins overlaps). Columns: semantic IoU
and Dice of the nuclei, the DSB score, AP@0.5 (TP/(TP+FP+FN) at IoU 0.5), means over test
images. Rows are appended to a JSON file after every run (resumable).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_table5.py --minutes 5 --encoder resnet50
    PYTHONPATH=src .venv/bin/python benchmarks/bench_table5.py --minutes 0.05 --max-test 3 --out /tmp/t5.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from unetpp.config import RunConfig
from unetpp.data.instances import DSB2018Instances
from unetpp.engine.train import fit
from unetpp.evaluation.instances import evaluate_instances
from unetpp.metrics.instances import mean_scores
from unetpp.models import load

SEMANTIC = {"U-Net": ["model.name=unet"], "UNet++": ["model.name=unet++", "model.deep_supervision=true"]}
DETECTORS = {"Mask R-CNN": "maskrcnn", "Mask R-CNN++": "maskrcnn++"}
PAPER = {  # Table V of Zhou et al. 2019 (ResNet-101 detectors): IoU %, Dice %, score
    "U-Net": (91.03, 75.73, 0.244),
    "UNet++": (92.55, 89.74, 0.327),
    "Mask R-CNN": (93.28, 87.91, 0.401),
    "Mask R-CNN++": (95.10, 91.36, 0.414),
}


def split_ids(root: str) -> tuple[list[str], list[str]]:
    """Train and test ids: every 10th sorted id of the folder is a test image."""
    ids = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    return [i for k, i in enumerate(ids) if k % 10], ids[::10]


def train_last(overrides: list[str], minutes: float, precision: str, seed: int, run_dir: Path) -> torch.nn.Module:
    """Train with a wall-clock budget on all the given images (no validation split); the last model.

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
        for model in [m for m in models if (m, seed) not in done]:
            with tempfile.TemporaryDirectory() as tmp:
                rows += run(model, seed, Path(tmp) / "run")
            out.write_text(json.dumps(rows, indent=1))
            print(summary(rows), flush=True)
    return rows


def run_model(args: argparse.Namespace, model: str, seed: int, run_dir: Path) -> list[dict]:
    train_ids, test_ids = split_ids(args.data)
    overrides = [
        f"data.root={args.data}",
        "data.layout=dsb2018",
        "data.channels=grey",
        f"data.ids={json.dumps(train_ids)}",
        "data.patches_per_image=1",
        f"model.encoder={args.encoder}",
        "model.encoder_weights=null",
    ]
    if model in DETECTORS:
        overrides += [
            "model.task=instance",
            f"model.name={DETECTORS[model]}",
            f"model.pyramid_width={args.width}",
            f"data.patch_size=[{args.crop},{args.crop}]",
            "data.batch_size=2",
        ]
    else:
        overrides += SEMANTIC[model]
    start = time.monotonic()
    net = train_last(overrides, args.minutes, args.precision, seed, run_dir).eval()
    trained = time.monotonic() - start
    steps = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    test = DSB2018Instances(args.data, ids=test_ids[: args.max_test], channels="grey")
    start = time.monotonic()
    rows = evaluate_instances(net, test)
    print(f"{model} seed {seed}: {steps} steps, {trained:.0f} s training, {time.monotonic() - start:.0f} s scoring")
    return [score_row(model, seed, r, steps) for r in rows]


def score_row(model: str, seed: int, row: dict, steps: int) -> dict:
    mode = "components" if model in SEMANTIC else "instances"  # how the model's instances were found
    return {"model": model, "mode": mode, "seed": seed, "steps": steps, **row}


def summary(rows: list[dict]) -> str:
    lines = [
        "| model | IoU % | Dice % | DSB score | AP@0.5 | precision | recall | steps | seeds | paper IoU/Dice/score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    steps = {(r["model"], r["seed"]): r["steps"] for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        seeds = sorted({r["seed"] for r in rows if r["model"] == model})
        per_seed = [mean_scores([_scores(r) for r in rows if (r["model"], r["seed"]) == (model, s)]) for s in seeds]

        def cell(field: str, scale: float, digits: int, per_seed=per_seed) -> str:  # noqa: ANN001
            v = [scale * getattr(p, field) for p in per_seed]
            sd = f" ± {statistics.stdev(v):.{digits}f}" if len(v) > 1 else ""
            return f"{statistics.mean(v):.{digits}f}{sd}"

        paper = " / ".join(map(str, PAPER[model]))
        lines.append(
            f"| {model} | {cell('iou', 100, 2)} | {cell('dice', 100, 2)} | {cell('dsb_score', 1, 3)} | "
            f"{cell('ap50', 1, 3)} | {cell('precision', 1, 3)} | {cell('recall', 1, 3)} | "
            f"{'/'.join(str(steps[model, s]) for s in seeds)} | "
            f"{len(seeds)} | {paper} |"
        )
    return "\n".join(lines)


def _scores(row: dict):  # noqa: ANN202
    from unetpp.metrics.instances import InstanceScores

    return InstanceScores(**{k: row[k] for k in InstanceScores.__dataclass_fields__})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/dsb2018/stage1_train")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--encoder", default="resnet50", help="timm backbone of all four models")
    parser.add_argument("--width", type=int, default=256, help="pyramid (and head) width of the detectors")
    parser.add_argument("--crop", type=int, default=256, help="detectors' training crop")
    parser.add_argument("--precision", default="32", help="training precision of all four")
    parser.add_argument("--max-test", type=int, default=None, help="score only the first N test images (smoke runs)")
    parser.add_argument("--models", nargs="+", default=[*SEMANTIC, *DETECTORS])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_table5.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    rows = collect(
        args.out, args.models, args.seeds, lambda model, seed, run_dir: run_model(args, model, seed, run_dir)
    )
    print(f"\n{args.minutes:g} min per run, encoder {args.encoder} (random weights), seeds {args.seeds}")
    print(summary(rows))


if __name__ == "__main__":
    main()
