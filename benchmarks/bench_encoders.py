"""Nested decoders on pretrained-style backbones against segmentation_models_pytorch's UnetPlusPlus.

For resnet34 and the paper's three backbones (vgg19, resnet152, densenet201), with random weights
(``encoder_weights=None``; the cost does not depend on them): parameters, forward GFLOPs, CPU
latency, training images/s and peak memory of

- ``smp UNet++``: ``smp.UnetPlusPlus(encoder, encoder_weights=None)`` as shipped (encoder depth 5,
  decoder channels 256-128-64-32-16, NCHW, batch norm in eval mode);
- ``smp UNet++ d4``: the same at our grid's shape (encoder depth 4, decoder 128-64-32-16);
- ``unetpp UNet++``: ``unetpp.build_model("unet++", encoder=...)`` (depth 4, decoder widths
  16-32-64-128, channels-last; inference with one head and batch norm folded, training with deep
  supervision over its four heads);
- ``unetpp UNet++ mem-eff``: the same UNet++ trained with ``memory_efficient=True`` (recomputation;
  its inference is the plain one);
- ``unetpp U-Net``: ``unetpp.build_model("unet", encoder=...)`` on the same backbone.

Every model maps 3 channels to 1 full-resolution map. Times are medians of interleaved runs (A, B,
C, D, A, ...) in one process, so machine load hits all alike; read the ratios against smp. Peak
memory is measured in a fresh subprocess per case (as in bench_models.py). Run in the bench
environment (smp is a peer, never a project dependency):

    .bench-venv/bin/python benchmarks/bench_encoders.py --out benchmarks/results_encoders.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

import unetpp
from unetpp.losses import DeepSupervisionLoss, HybridLoss
from unetpp.models.fusion import fuse_batch_norm
from unetpp.profiling import interleaved_seconds, n_params, rss_kib

Shape = tuple[int, ...]
BACKBONES = ["resnet34", "vgg19", "resnet152", "densenet201"]
BASELINE = "smp UNet++"


def smp_unetpp(encoder: str, matched: bool = False) -> nn.Module:
    import segmentation_models_pytorch as smp

    if matched:
        return smp.UnetPlusPlus(encoder, encoder_weights=None, encoder_depth=4, decoder_channels=(128, 64, 32, 16))
    return smp.UnetPlusPlus(encoder, encoder_weights=None)


def ours(name: str, encoder: str, deploy: bool, memory_efficient: bool = False) -> nn.Module:
    """Training: the default model (deep supervision). Inference: one head, batch norm folded."""
    model = unetpp.build_model(
        name,
        encoder=encoder,
        encoder_weights=None,
        in_channels=3,
        deep_supervision=not deploy,
        memory_efficient=memory_efficient and not deploy,
    )
    return fuse_batch_norm(model.eval()) if deploy else model


CANDIDATES: dict[str, Callable[[str, bool], nn.Module]] = {
    BASELINE: lambda enc, deploy: smp_unetpp(enc),
    "smp UNet++ d4": lambda enc, deploy: smp_unetpp(enc, matched=True),
    "unetpp UNet++": lambda enc, deploy: ours("unet++", enc, deploy),
    "unetpp UNet++ mem-eff": lambda enc, deploy: ours("unet++", enc, deploy, memory_efficient=True),
    "unetpp U-Net": lambda enc, deploy: ours("unet", enc, deploy),
}


def as_list(out: Tensor | list[Tensor]) -> list[Tensor]:
    return out if isinstance(out, list) else [out]


def make_step(mode: str, candidate: str, encoder: str, shape: Shape) -> Callable[[], None]:
    torch.manual_seed(0)
    model = CANDIDATES[candidate](encoder, mode == "infer")
    x = torch.randn(shape)
    if mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(x)

        return infer
    model.train()
    y = (torch.rand(shape[0], 1, *shape[2:]) > 0.5).float()
    heads = len(model.spec.heads) if isinstance(model, unetpp.NestedUNet) else 1
    loss_fn = DeepSupervisionLoss(HybridLoss(), [1.0] * heads)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(as_list(model(x)), y).backward()
        opt.step()

    return train


def probe_memory(step: Callable[[], None], steps: int = 2) -> float:
    """MiB above the built model at the peak of `steps` calls (activations, gradients, optimizer state)."""
    gc.collect()
    base = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    for _ in range(steps):
        step()
    return (rss_kib("VmHWM") - base) / 1024


def peak_memory(mode: str, candidate: str, encoder: str, shape: Shape) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    cmd = [sys.executable, __file__, "--probe", mode, candidate, encoder, "x".join(map(str, shape))]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def forward_gflops(model: nn.Module, size: int) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def measure(encoder: str, infer_shape: Shape, train_shape: Shape, reps: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for k in CANDIDATES:
        model = CANDIDATES[k](encoder, True)
        rows[k] = {"params": n_params(CANDIDATES[k](encoder, False)), "gflops": forward_gflops(model, infer_shape[-1])}
    for mode, shape in (("infer", infer_shape), ("train", train_shape)):
        times = interleaved_seconds({k: make_step(mode, k, encoder, shape) for k in CANDIDATES}, reps)
        gc.collect()
        for k in CANDIDATES:
            rows[k][f"{mode}_seconds"] = times[k]
            rows[k][f"{mode}_peak_mib"] = peak_memory(mode, k, encoder, shape)
    return rows


def markdown(results: dict[str, dict[str, dict[str, float]]], infer_shape: Shape, train_shape: Shape) -> str:
    fmt = "×".join
    lines = [
        f"| backbone | model | params | GFLOPs / image | inference ({fmt(map(str, infer_shape))}) | vs smp | "
        f"training ({fmt(map(str, train_shape))}) | vs smp | peak memory, inference | vs smp | "
        "peak memory, training | vs smp |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for encoder, rows in results.items():
        base = rows[BASELINE]
        for k, r in rows.items():
            lines.append(
                f"| {encoder} | {k} | {r['params'] / 1e6:.1f} M | {r['gflops']:.1f} | "
                f"{r['infer_seconds'] * 1e3:.0f} ms | {base['infer_seconds'] / r['infer_seconds']:.2f}× | "
                f"{train_shape[0] / r['train_seconds']:.2f} img/s | "
                f"{base['train_seconds'] / r['train_seconds']:.2f}× | "
                f"{r['infer_peak_mib']:.0f} MiB | {r['infer_peak_mib'] / base['infer_peak_mib']:.2f}× | "
                f"{r['train_peak_mib']:.0f} MiB | {r['train_peak_mib'] / base['train_peak_mib']:.2f}× |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=BACKBONES)
    parser.add_argument("--models", nargs="+", default=list(CANDIDATES), help="a subset of the candidates")
    parser.add_argument("--infer-shape", default="4x3x256x256")
    parser.add_argument("--train-shape", default="2x3x256x256")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--probe", nargs=4, metavar=("MODE", "CANDIDATE", "ENCODER", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for k in [k for k in CANDIDATES if k not in args.models and k != BASELINE]:
        del CANDIDATES[k]  # the baseline stays: every ratio is against it
    if args.probe:
        mode, candidate, encoder, shape = args.probe
        print(probe_memory(make_step(mode, candidate, encoder, tuple(int(s) for s in shape.split("x")))))
        return
    infer_shape = tuple(int(s) for s in args.infer_shape.split("x"))
    train_shape = tuple(int(s) for s in args.train_shape.split("x"))
    results = {}
    for encoder in args.backbones:
        results[encoder] = measure(encoder, infer_shape, train_shape, args.reps)
        print(f"done {encoder}", file=sys.stderr, flush=True)
    print(markdown(results, infer_shape, train_shape))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
