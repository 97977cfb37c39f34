"""UNet++ against MONAI's BasicUNetPlusPlus on a GPU: training images/s with AMP, inference latency and
throughput, peak GPU memory; plain and memory-efficient training. Run through ``benchmarks/bench_gpu.sh``.

Everything is interleaved in one process (A, B, A, B, ...; medians, CUDA synchronised around each
call) and reported as ratios against MONAI measured alongside; peak memory is
``torch.cuda.max_memory_allocated`` of two steps of each case, measured one case at a time. Absolute
times are only meaningful on the GPU named in the output. ``--device cpu`` is a dry run of the code
paths (tiny shapes), for machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import unetpp
from unetpp.models.fusion import fuse_batch_norm
from unetpp.profiling import interleaved_seconds, train_step

Shape = tuple[int, ...]


def monai_unetpp(spatial_dims: int) -> nn.Module:
    from monai.networks.nets import BasicUNetPlusPlus

    features = (32, 64, 128, 256, 512, 32)
    return BasicUNetPlusPlus(
        spatial_dims=spatial_dims, in_channels=1, out_channels=1, features=features, deep_supervision=True
    )


def models(spatial_dims: int, training: bool) -> dict[str, Callable[[], nn.Module]]:
    out: dict[str, Callable[[], nn.Module]] = {"monai": lambda: monai_unetpp(spatial_dims)}
    out["unetpp"] = lambda: unetpp.build_model("unet++", spatial_dims=spatial_dims)
    if training:
        out["unetpp, memory-efficient"] = lambda: unetpp.build_model(
            "unet++", spatial_dims=spatial_dims, memory_efficient=True
        )
    else:
        out["unetpp"] = lambda: fuse_batch_norm(unetpp.build_model("unet++", spatial_dims=spatial_dims))
    return out


def synced(run: Callable[[], object], device: torch.device) -> Callable[[], None]:
    def call() -> None:
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return call


def infer_step(model: nn.Module, x: torch.Tensor, amp: torch.dtype | None) -> Callable[[], None]:
    model.eval()

    def run() -> None:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            model(x)

    return run


def amp_train_step(model: nn.Module, x: torch.Tensor, amp: torch.dtype | None) -> Callable[[], None]:
    """unetpp.deploy.bench.train_step (Adam, hybrid deep-supervision loss) under bf16 autocast, or fp32."""
    return train_step(model, x, "bf16" if amp == torch.bfloat16 else "32")


def peak_mib(make: Callable[[], Callable[[], None]], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run = make()
    run()
    run()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def case(kind: str, shape: Shape, device: torch.device, amp: torch.dtype | None, reps: int) -> list[dict[str, object]]:
    training = kind == "train"
    spatial_dims = len(shape) - 2
    factories = models(spatial_dims, training)
    step = amp_train_step if training else infer_step

    def make(name: str) -> Callable[[], None]:
        model = factories[name]().to(device)
        return synced(step(model, torch.randn(shape, device=device), amp), device)

    memory = {name: peak_mib(lambda n=name: make(n), device) for name in factories}
    seconds = interleaved_seconds({name: make(name) for name in factories}, reps, warmup=2)
    base = seconds["monai"]
    return [
        {
            "mode": kind,
            "model": name,
            "shape": "x".join(map(str, shape)),
            "amp": str(amp).removeprefix("torch.") if amp else "fp32",
            "ms": seconds[name] * 1e3,
            "images_per_s": shape[0] / seconds[name],
            "speed_vs_monai": base / seconds[name],
            "peak_mib": memory[name],
        }
        for name in factories
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; pass --device cpu for a dry run of the code paths")
    torch.backends.cudnn.benchmark = True
    dry = device.type == "cpu"
    train_shapes = [(2, 1, 32, 32)] if dry else [(16, 1, 96, 96), (64, 1, 96, 96), (2, 1, 96, 96, 96)]
    infer_shapes = [(1, 1, 64, 64)] if dry else [(1, 1, 512, 512), (16, 1, 96, 96), (1, 1, 128, 128, 128)]
    amps: list[torch.dtype | None] = [None] if dry else [torch.bfloat16, None]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    rows: list[dict[str, object]] = []
    for amp in amps:
        for shape in train_shapes:
            rows += case("train", shape, device, amp, 2 if dry else args.reps)
        for shape in infer_shapes:
            rows += case("infer", shape, device, amp, 2 if dry else args.reps)
    print(f"device: {name}; torch {torch.__version__}; cuDNN {torch.backends.cudnn.version()}")
    print("| mode | model | shape | AMP | time | images/s | vs MONAI | peak memory |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        mem = f"{r['peak_mib']:.0f} MiB" if isinstance(r["peak_mib"], float) else "–"
        print(
            f"| {r['mode']} | {r['model']} | {r['shape']} | {r['amp']} | {r['ms']:.1f} ms | {r['images_per_s']:.1f} | "
            f"{r['speed_vs_monai']:.2f}× | {mem} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"device": name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
