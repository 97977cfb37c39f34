"""Training throughput of the engine (Lightning, data loading, augmentation, logging) vs the bare step.

The bare step is forward + hybrid deep-supervision loss + backward + Adam on a batch already in
memory; the engine's images/s count the wall time between consecutive training batches, so data
loading, augmentation and logging that the step waits for are included. Both run in this
process: bare, engine, bare (the bare figure is the mean of the two).

    .venv/bin/python benchmarks/bench_engine.py --data ../shared/data/isbi2012-em --layout isbi2012
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning as L
import torch

from unetpp.config import RunConfig
from unetpp.engine import train as train_module
from unetpp.engine.module import SegmentationModule


class BatchClock(L.Callback):
    """Wall time between the starts of consecutive training batches (data waits included)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self.starts.append(time.perf_counter())


def bare_images_per_s(cfg: RunConfig, steps: int) -> float:
    module = SegmentationModule(cfg.model.build_kwargs(), lr=cfg.train.lr)
    opt = module.configure_optimizers()
    patch = cfg.data.patch_size or [96, 96]
    n = cfg.data.batch_size
    batch = {"image": torch.randn(n, cfg.model.in_channels, *patch), "mask": (torch.rand(n, 1, *patch) > 0.3).long()}
    bf16 = cfg.train.precision.startswith("bf16")
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times[1:])


def engine_images_per_s(cfg: RunConfig) -> float:
    clock = BatchClock()
    original = train_module.build_trainer

    def with_clock(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.callbacks.append(clock)
        return trainer

    train_module.build_trainer = with_clock
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            train_module.fit(cfg, f"{run_dir}/run")
    finally:
        train_module.build_trainer = original
    gaps = [b - a for a, b in zip(clock.starts[2:], clock.starts[3:], strict=False)]  # skip warm-up
    return cfg.data.batch_size / statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="")
    parser.add_argument("--layout", default="synthetic")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| data loading workers | precision | bare step (img/s) | engine (img/s) | engine / bare |")
    print("|---|---|---:|---:|---:|")
    for workers in args.workers:
        cfg = RunConfig().override(
            [
                f"data.root={args.data}",
                f"data.layout={args.layout}",
                f"data.num_workers={workers}",
                "data.val_fraction=0.1",
                f"data.patches_per_image={max(1, args.steps * 16 // 20)}",
                "train.max_epochs=1",
                "train.progress=true",
                f"train.precision={args.precision}",
            ]
        )
        before = bare_images_per_s(cfg, args.steps)
        engine = engine_images_per_s(cfg)
        after = bare_images_per_s(cfg, args.steps)
        bare = (before + after) / 2
        print(f"| {workers} | {args.precision} | {bare:.1f} | {engine:.1f} | {engine / bare:.2f} |", flush=True)


if __name__ == "__main__":
    main()
