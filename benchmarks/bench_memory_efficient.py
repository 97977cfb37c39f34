"""Memory-efficient training (recomputed concatenations and norm + ReLU) against normal training.

Peak resident memory of two training steps (fresh subprocess per case, weights and Adam state
included) and step time, interleaved in one process (normal, efficient, normal, ...), so that machine
load hits both alike; read the ratios. Usage:

    PYTHONPATH=src python benchmarks/bench_memory_efficient.py --shape 16x1x96x96 --reps 3
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import unetpp
from unetpp.profiling import interleaved_seconds, peak_memory_mib, train_step
from unetpp.utils.precision import bf16_supported, cpu_flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="16x1x96x96")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split("x"))
    models = {}
    for name, eff in (("normal", False), ("memory-efficient", True)):
        torch.manual_seed(0)
        models[name] = unetpp.build_model("unet++", spatial_dims=len(shape) - 2, memory_efficient=eff)
    memory = {k: peak_memory_mib(m, shape, training=True, with_weights=True) for k, m in models.items()}
    steps = {k: train_step(m, torch.randn(shape)) for k, m in models.items()}
    seconds = interleaved_seconds(steps, args.reps)
    rows = [
        {
            "model": k,
            "shape": args.shape,
            "step_s": seconds[k],
            "images_per_s": shape[0] / seconds[k],
            "peak_mib": memory[k],
            "time_vs_normal": seconds[k] / seconds["normal"],
            "memory_vs_normal": memory[k] / memory["normal"] if memory[k] and memory["normal"] else None,
        }
        for k in models
    ]
    flags = ", ".join(cpu_flags()) or platform.machine()
    print(f"CPU: {flags}; bf16 native: {bf16_supported()}; threads {args.threads}; torch {torch.__version__}")
    print("| training | step | images/s | peak memory | time vs normal | memory vs normal |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['step_s'] * 1e3:.0f} ms | {r['images_per_s']:.1f} | {r['peak_mib']:.0f} MiB | "
            f"{r['time_vs_normal']:.2f}× | {r['memory_vs_normal']:.2f}× |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
