"""Where a training step's time goes: unetpp's UNet++ against MONAI's BasicUNetPlusPlus, by kind of op.

``torch.profiler`` over a few steps (after a warm-up), self CPU time of every ATen op summed into
kinds (convolution forward/backward, norm forward/backward, activation, concatenation, copies,
up-sampling, loss, optimizer, the rest). Run in the bench environment (MONAI is a peer), and under a
oneDNN/ATen ISA cap to see an AVX2-only CPU on an AVX-512 machine:

    .bench-venv/bin/python benchmarks/bench_profile.py
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .bench-venv/bin/python benchmarks/bench_profile.py
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from unetpp.deploy.backends import machine
from unetpp.profiling import train_step

KINDS = (  # (kind, substrings of ATen op names), first match wins
    ("conv backward", ("convolution_backward",)),
    ("conv forward", ("convolution", "conv2d", "conv3d", "mkldnn_convolution")),
    ("norm backward", ("batch_norm_backward", "instance_norm_backward", "native_batch_norm_backward")),
    ("norm forward", ("batch_norm", "instance_norm", "var_mean", "_batch_norm")),
    ("activation", ("relu", "threshold", "leaky", "sigmoid")),
    ("concatenation", ("cat",)),
    ("copies", ("copy_", "contiguous", "clone", "to_copy")),
    ("pooling / up-sampling", ("max_pool", "upsample", "pool")),
    ("optimizer", ("adam", "fused", "foreach", "lerp", "addcdiv")),
    ("loss", ("binary_cross_entropy", "softmax", "log_softmax", "nll", "dice")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def profile_step(model: torch.nn.Module, shape: tuple[int, ...], steps: int) -> dict[str, float]:
    run = train_step(model, torch.randn(shape))
    run()  # warm-up: oneDNN picks its kernels
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run()
    totals: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        if e.key.startswith("aten::") or e.key.startswith("mkldnn"):
            totals[kind_of(e.key)] += e.self_cpu_time_total / 1e3 / steps  # ms per step
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="16x1x96x96")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from monai.networks.nets import BasicUNetPlusPlus

    import unetpp

    shape = tuple(int(s) for s in args.shape.split("x"))
    torch.manual_seed(0)
    monai_widths = (32, 64, 128, 256, 512, 32)  # as bench_models.py: the paper's widths
    models = {
        "unetpp": unetpp.build_model("unet++"),
        "MONAI": BasicUNetPlusPlus(2, 1, 1, features=monai_widths, deep_supervision=True),
    }
    ms = {k: profile_step(m, shape, args.steps) for k, m in models.items()}
    kinds = [k for k, _ in KINDS] + ["other"]
    print(f"Machine: {machine()}; shape {args.shape}; self CPU ms per step (share of the step)\n")
    print("| kind | " + " | ".join(models) + " |")
    print("|---|" + "---:|" * len(models))
    for kind in kinds:
        cells = [f"{ms[k].get(kind, 0):.0f} ({ms[k].get(kind, 0) / sum(ms[k].values()):.0%})" for k in models]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("| **total** | " + " | ".join(f"{sum(ms[k].values()):.0f}" for k in models) + " |")


if __name__ == "__main__":
    main()
