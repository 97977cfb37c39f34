"""Paper Table V on DSB 2018 nuclei: U-Net, UNet++, Mask R-CNN and Mask R-CNN++ at an equal time budget.

Split by image id (every 10th sorted id of ``stage1_train`` is a test image, never trained on;
the last model is scored, no selection on the test set). Grey input, the same timm backbone with
random weights for all four. U-Net and UNet++ train through the project's engine (96x96
patches, hybrid loss) and are scored on connected components of their thresholded ensemble;
the detectors train with Adam on random 256x256 crops (rot90/flip) and are scored on their
instances with score >= 0.5, pasted into a label map (higher score wins overlaps), at each test
image's native scale. Columns: semantic IoU and Dice of the nuclei, the DSB score, AP@0.5
(TP/(TP+FP+FN) at IoU 0.5), means over test images. Rows are appended to a JSON file per run.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_table5.py --minutes 20 --seeds 0 1
    PYTHONPATH=src .venv/bin/python benchmarks/bench_table5.py --minutes 0.05 --max-test 3 --out /tmp/t5.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_dsb import split_ids  # same folder: run as a script
from bench_em import collect, train_last
from torch.utils.data import DataLoader

from unetpp.data import DSB2018
from unetpp.data.instances import DSB2018Instances, InstanceAugment, collate_instances
from unetpp.detection import build_detector
from unetpp.metrics.instances import instance_scores, label_components, masks_to_label_map, mean_scores
from unetpp.predict import predict

SEMANTIC = {"U-Net": ["model.name=unet"], "UNet++": ["model.name=unet++", "model.deep_supervision=true"]}
DETECTORS = {"Mask R-CNN": "maskrcnn", "Mask R-CNN++": "maskrcnn++"}
PAPER = {  # Table V of Zhou et al. 2019 (ResNet-101 detectors): IoU %, Dice %, score
    "U-Net": (91.03, 75.73, 0.244),
    "UNet++": (92.55, 89.74, 0.327),
    "Mask R-CNN": (93.28, 87.91, 0.401),
    "Mask R-CNN++": (95.10, 91.36, 0.414),
}


def run_semantic(args: argparse.Namespace, model: str, seed: int, run_dir: Path) -> list[dict]:
    train_ids, test_ids = split_ids(args.data)
    overrides = [
        f"data.root={args.data}",
        "data.layout=dsb2018",
        "data.channels=grey",
        f"data.ids={json.dumps(train_ids)}",
        "data.patches_per_image=1",
        f"model.encoder={args.encoder}",
        "model.encoder_weights=null",
        *SEMANTIC[model],
    ]
    net = train_last(overrides, args.minutes, args.precision, seed, run_dir).eval()
    test = DSB2018(args.data, ids=test_ids[: args.max_test], channels="grey")
    rows = []
    for k in range(len(test)):
        probs = predict(net, test[k]["image"])
        labels = label_components(probs[0, -1] if probs.ndim == 4 else probs[-1])
        rows.append(score_row(model, seed, test.ids[k], labels, test.instances(k)))
    return rows


def run_detector(args: argparse.Namespace, model: str, seed: int, run_dir: Path) -> list[dict]:
    torch.manual_seed(seed)
    train_ids, test_ids = split_ids(args.data)
    net = build_detector(
        DETECTORS[model],
        encoder=args.encoder,
        encoder_weights=None,
        in_channels=1,
        min_size=256,
        max_size=2048,
        anchor_sizes=(8, 16, 32, 64, 128),
    )
    train = DSB2018Instances(args.data, ids=train_ids, channels="grey", transform=InstanceAugment(crop=256))
    loader = DataLoader(train, batch_size=2, shuffle=True, collate_fn=collate_instances, num_workers=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    net.train()
    start, steps = time.monotonic(), 0
    while time.monotonic() - start < args.minutes * 60:
        for images, targets in loader:
            loss = sum(net(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.monotonic() - start >= args.minutes * 60:
                break
    print(f"{model} seed {seed}: {steps} steps in {time.monotonic() - start:.0f} s", file=sys.stderr)
    net.eval()
    test = DSB2018Instances(args.data, ids=test_ids[: args.max_test], channels="grey")
    rows = []
    for k in range(len(test)):
        image, _ = test[k]
        net.transform.min_size, net.transform.max_size = (min(image.shape[1:]),), max(image.shape[1:])  # native scale
        with torch.inference_mode():
            det = net([image])[0]
        keep = det["scores"] >= 0.5
        labels = masks_to_label_map(det["masks"][keep], det["scores"][keep])
        rows.append(score_row(model, seed, test.ids[k], labels, test.label_map(k)))
    return rows


def score_row(model: str, seed: int, image: str, pred, truth) -> dict:  # noqa: ANN001
    mode = "components" if model in SEMANTIC else "instances"  # bench_em.collect prints per (model, mode)
    return {"model": model, "mode": mode, "seed": seed, "image": image, **instance_scores(pred, truth).__dict__}


def summary(rows: list[dict]) -> str:
    lines = [
        "| model | IoU % | Dice % | DSB score | AP@0.5 | seeds | paper IoU / Dice / score |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
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
            f"{cell('ap50', 1, 3)} | {len(seeds)} | {paper} |"
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
    parser.add_argument("--encoder", default="resnet34", help="timm backbone of all four models")
    parser.add_argument("--precision", default="bf16-mixed", help="of the semantic models' training")
    parser.add_argument("--max-test", type=int, default=None, help="score only the first N test images (smoke runs)")
    parser.add_argument("--models", nargs="+", default=[*SEMANTIC, *DETECTORS])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_table5.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    def run(model: str, seed: int, run_dir: Path) -> list[dict]:
        return (run_semantic if model in SEMANTIC else run_detector)(args, model, seed, run_dir)

    rows = collect(args.out, args.models, args.seeds, run)
    print(f"\n{args.minutes:g} min per run, encoder {args.encoder} (random weights), seeds {args.seeds}")
    print(summary(rows))


if __name__ == "__main__":
    main()
