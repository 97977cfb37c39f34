"""Training step in float32 against bf16 autocast, and what the plan picks on this CPU.

The plan trains in bf16 where the CPU computes it natively (AVX512-BF16 or AMX) and keeps float32
elsewhere (:func:`unetpp.utils.precision.training_precision`). This measures both precisions on the same
models, interleaved in one process, so the ratio holds whatever else the machine is doing. Run it
as is, and under a oneDNN/ATen ISA cap to see an AVX2-only CPU on the same machine:

    PYTHONPATH=src python benchmarks/bench_precision.py
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 PYTHONPATH=src python benchmarks/bench_precision.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import unetpp
from unetpp.deploy.backends import machine
from unetpp.profiling import interleaved_seconds, train_step
from unetpp.utils.precision import training_precision

CASES = {  # name -> build_model keywords, input shape
    "U-Net 2D": ({"name": "unet"}, (16, 1, 96, 96)),
    "UNet++ 2D": ({"name": "unet++"}, (16, 1, 96, 96)),
    "U-Net 3D": ({"name": "unet", "spatial_dims": 3, "depth": 3, "classes": 3}, (4, 1, 32, 32, 32)),
    "UNet++ 3D": ({"name": "unet++", "spatial_dims": 3, "depth": 3, "classes": 3}, (4, 1, 32, 32, 32)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen, why = training_precision("cpu")
    print(f"Machine: {machine()}\nThe plan picks: {chosen} ({why})\n")
    print("| model | batch | float32 step | bf16 step | bf16 speed-up |")
    print("|---|---|---:|---:|---:|")
    rows = []
    for name, (kwargs, shape) in CASES.items():
        torch.manual_seed(0)
        model = unetpp.build_model(**kwargs)
        x = torch.randn(shape)
        seconds = interleaved_seconds({p: train_step(model, x, p) for p in ("32", "bf16")}, args.reps)
        rows.append({"model": name, "shape": list(shape), **{f"{p}_s": s for p, s in seconds.items()}})
        print(
            f"| {name} | {'×'.join(map(str, shape))} | {seconds['32'] * 1e3:.0f} ms | {seconds['bf16'] * 1e3:.0f} ms "
            f"| {seconds['32'] / seconds['bf16']:.2f}× |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "plan": chosen, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
