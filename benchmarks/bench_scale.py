"""Issue 13: 1 vs 2 processes on this CPU for training and prediction, and DDP's all-reduce cost per step.

    PYTHONPATH=src python benchmarks/bench_scale.py --out /tmp/bench_scale

Runs the CLI (wall time of whole commands, start-up included and reported separately by a 0-work
run) and times gloo's all-reduce of one gradient's worth of floats in 2 processes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TRAIN = [
    "--layout",
    "synthetic",
    "--widths",
    "8,16,32,64,128",
    "--epochs",
    "3",
    "--set",
    "train.progress=false",
    "data.synthetic_images=16",
    "data.synthetic_size=96",
    "data.patch_size=[64,64]",
    "data.num_workers=0",
    "data.batch_size=4",
    "data.patches_per_image=4",
]


def run(args: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "unetpp", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def _allreduce(rank: int, numel: int, reps: int, out: Path) -> None:
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29533", rank=rank, world_size=2)
    torch.set_num_threads(1)
    grad = torch.randn(numel)
    for _ in range(3):
        dist.all_reduce(grad)
    t0 = time.perf_counter()
    for _ in range(reps):
        dist.all_reduce(grad)
    if rank == 0:
        out.write_text(str((time.perf_counter() - t0) / reps))
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    ddp = ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"]
    one = ["--devices", "1", "--accelerator", "cpu"]
    rows = {
        "train 1 process x 2 threads": run(["train", *TRAIN, *one, "--run-dir", a.out / "t1"], 2),
        "train 1 process x 1 thread": run(["train", *TRAIN, *one, "--run-dir", a.out / "t0"], 1),
        "train 2 processes x 1 thread (DDP)": run(["train", *TRAIN, *ddp, "--run-dir", a.out / "t2"], 1),
    }
    ckpt = a.out / "t1" / "checkpoints" / "last.ckpt"
    images = a.out / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    from PIL import Image

    for k in range(24):
        Image.fromarray((rng.random((256, 256)) * 255).astype("uint8")).save(images / f"c{k:02d}.png")
    pred = ["predict", "--checkpoint", str(ckpt), "--inputs", str(images), "--no-overlay"]
    rows["predict 24 images, 1 process x 2 threads"] = run([*pred, "--out", str(a.out / "p1")], 2)
    rows["predict 24 images, 1 process x 1 thread"] = run([*pred, "--out", str(a.out / "p0")], 1)
    rows["predict 24 images, 2 processes x 1 thread"] = run(
        [*pred, "--out", str(a.out / "p2"), "--devices", "2", "--accelerator", "cpu"], 1
    )
    numel = sum(v.numel() for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items() if "running" not in k)
    mp.spawn(_allreduce, args=(numel, 50, a.out / "allreduce.txt"), nprocs=2)
    rows[f"gloo all-reduce of {numel} gradients (per step)"] = float((a.out / "allreduce.txt").read_text())
    for k, v in rows.items():
        print(f"{k:55s} {v:8.3f} s")


if __name__ == "__main__":
    main()
