"""Speed and memory of unetpp's UNet++ against MONAI's BasicUNetPlusPlus, and the pruning table.

Everything is a ratio against a baseline measured in the same process, interleaved (A, B, A, B,
...) so that machine load hits both alike; peak memory is measured in a fresh subprocess per
case. Run in the bench environment (MONAI is a peer, never a project dependency):

    bash benchmarks/setup_bench_env.sh
    .bench-venv/bin/python benchmarks/bench_models.py --out benchmarks/results_models.json

Model: UNet++ with the paper's widths 32-64-128-256-512, 1 -> 1 channel, deep supervision (4 heads).
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
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import unetpp
from unetpp.bench import interleaved_seconds
from unetpp.losses import DeepSupervisionLoss, HybridLoss
from unetpp.models.inference import fuse_batch_norm

Shape = tuple[int, ...]


# ---------------------------------------------------------------- the candidates
def monai_unetpp() -> nn.Module:
    from monai.networks.nets import BasicUNetPlusPlus

    return BasicUNetPlusPlus(
        spatial_dims=2, in_channels=1, out_channels=1, features=(32, 64, 128, 256, 512, 32), deep_supervision=True
    )


def ours(norm: str | None = "batch", channels_last: bool = True) -> nn.Module:
    model = unetpp.build_model("unet++", norm=norm)
    if not channels_last:  # the plain NCHW layout, kept to show what channels-last buys
        model.memory_format = torch.contiguous_format
        model.to(memory_format=torch.contiguous_format)
    return model


def ours_deployed(channels_last: bool = True) -> nn.Module:
    """What `unetpp` runs at inference: batch norm folded into the convolutions."""
    model = fuse_batch_norm(ours("batch").eval())
    if not channels_last:
        model.memory_format = torch.contiguous_format
        model.to(memory_format=torch.contiguous_format)
    return model


INFER: dict[str, Callable[[], nn.Module]] = {
    "monai": monai_unetpp,
    "unetpp": ours_deployed,
    "unetpp, BN not folded": lambda: ours("batch"),
    "unetpp, NCHW": lambda: ours_deployed(channels_last=False),
}
TRAIN: dict[str, Callable[[], nn.Module]] = {
    "monai": monai_unetpp,
    "unetpp": ours,
    "unetpp, NCHW": lambda: ours(channels_last=False),
    "unetpp, bf16 autocast": ours,
}


# ---------------------------------------------------------------- one step of each kind
def make_infer(model: nn.Module, shape: Shape) -> Callable[[], None]:
    model.eval()
    x = torch.randn(shape)

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def make_train(model: nn.Module, shape: Shape, bf16: bool = False) -> Callable[[], None]:
    model.train()
    x = torch.randn(shape)
    y = (torch.rand(shape) > 0.5).float()
    loss_fn = DeepSupervisionLoss(HybridLoss(), [1.0] * 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            heads = model(x)
        loss_fn([h.float() for h in heads], y).backward()
        opt.step()

    return run


def step_for(mode: str, name: str, shape: Shape) -> Callable[[], None]:
    if mode == "infer":
        return make_infer(INFER[name](), shape)
    return make_train(TRAIN[name](), shape, bf16="bf16" in name)


# ---------------------------------------------------------------- measurements
def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe_memory(run: Callable[[], None]) -> float:
    """Peak resident memory (MiB) of two steps above what the built model already holds.

    So it counts activations, gradients, optimizer state and workspace, not the weights.
    """
    gc.collect()
    base = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    run()
    run()
    return (rss_kib("VmHWM") - base) / 1024


def peak_memory(mode: str, name: str, shape: Shape) -> float:
    # glibc otherwise keeps freed blocks and hides the peak; a fixed mmap threshold returns them.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    cmd = [sys.executable, __file__, "--probe", mode, name, "x".join(map(str, shape))]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def forward_flops(model: nn.Module, shape: Shape) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(torch.randn(shape))
    return counter.get_total_flops()


def train_flops(model: nn.Module, shape: Shape) -> int:
    with FlopCounterMode(display=False) as counter:
        model.train()
        sum(h.mean() for h in model(torch.randn(shape))).backward()
    return counter.get_total_flops()


def conv3x3_speeds(model: nn.Module, shape: Shape, reps: int = 3) -> dict[str, object]:
    """Each of the model's own 3x3 convolution shapes run alone (channels-last, inference).

    Returns the fastest shape's GFLOP/s, and the time of all the model's 3x3 convolutions run one
    by one: a model that did nothing but its 3x3 convolutions, each at its stand-alone speed,
    would take that long. Everything else (concatenation, ReLU, pooling, up-sampling, heads) is
    the difference.
    """
    calls: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: calls.append((*i[0].shape, m.out_channels)))
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    with torch.inference_mode():
        model.eval()(torch.randn(shape))
    for h in hooks:
        h.remove()
    seconds: dict[tuple[int, ...], float] = {}
    for key in sorted(set(calls)):
        n, c_in, h, w, c_out = key
        conv = nn.Conv2d(c_in, c_out, 3, padding=1).to(memory_format=torch.channels_last).eval()
        x = torch.randn(n, c_in, h, w).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            seconds[key] = interleaved_seconds({"c": lambda conv=conv, x=x: conv(x)}, reps)["c"]

    def gflops(key: tuple[int, ...]) -> float:
        n, c_in, h, w, c_out = key
        return 2 * n * h * w * c_in * c_out * 9 / seconds[key] / 1e9

    best = max(seconds, key=gflops)
    n, c_in, h, w, c_out = best
    return {
        "fastest_gflops": gflops(best),
        "fastest_shape": f"{n}x{c_in}x{h}x{w} -> {c_out}",
        "all_convs_seconds": sum(seconds[k] for k in calls),
    }


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- the report
def compare(shape: Shape, reps: int) -> dict[str, object]:
    res: dict[str, object] = {"shape": list(shape)}
    for mode, table in (("infer", INFER), ("train", TRAIN)):
        times = interleaved_seconds({k: step_for(mode, k, shape) for k in table}, reps)
        memory = {k: peak_memory(mode, k, shape) for k in table}
        res[mode] = {k: {"seconds": times[k], "peak_mib": memory[k]} for k in table}
        gc.collect()
    flops_ours, flops_monai = forward_flops(ours_deployed(), shape), forward_flops(monai_unetpp(), shape)
    res["params"] = {"unetpp": n_params(ours()), "monai": n_params(monai_unetpp())}
    res["forward_gflops"] = {"unetpp": flops_ours / 1e9, "monai": flops_monai / 1e9}
    res["train_gflops"] = {"unetpp": train_flops(ours(), shape) / 1e9}
    res["conv3x3"] = conv3x3_speeds(ours(), shape, reps)
    return res


def pruning_table(shape: Shape, reps: int) -> list[dict[str, float]]:
    """Paper Fig. 5: each pruned UNet++ L1..L4 relative to L4, at inference."""
    full = ours_deployed()
    models = {d: unetpp.prune(full, d) for d in (1, 2, 3, 4)}
    xs = torch.randn(shape)

    def infer(m: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                m(xs)

        return run

    times = interleaved_seconds({str(d): infer(m) for d, m in models.items()}, reps)
    rows = []
    for d, m in models.items():
        rows.append(
            {
                "depth": d,
                "params": n_params(m),
                "gflops": forward_flops(m, shape) / 1e9,
                "seconds": times[str(d)],
                "peak_mib": peak_memory("prune", str(d), shape),
            }
        )
    return rows


def markdown(results: list[dict[str, object]], pruning: dict[str, list[dict[str, float]]]) -> str:
    lines = []
    for r in results:
        shape = "×".join(map(str, r["shape"]))
        n = r["shape"][0]
        lines += [
            f"\n#### UNet++ at {shape} (params: unetpp {r['params']['unetpp']:,}, MONAI {r['params']['monai']:,}; "
            f"forward GFLOPs: unetpp {r['forward_gflops']['unetpp']:.1f}, MONAI {r['forward_gflops']['monai']:.1f})\n",
            "| mode | model | time per batch | images/s | speed vs MONAI | peak memory | memory vs MONAI | GFLOP/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for mode, flops in (("infer", r["forward_gflops"]["unetpp"]), ("train", r["train_gflops"]["unetpp"])):
            base = r[mode]["monai"]
            for k, v in r[mode].items():
                gfs = "" if k == "monai" else f"{flops / v['seconds']:.0f}"
                lines.append(
                    f"| {mode} | {k} | {v['seconds'] * 1e3:.0f} ms | {n / v['seconds']:.1f} | "
                    f"{base['seconds'] / v['seconds']:.2f}× | {v['peak_mib']:.0f} MiB | "
                    f"{v['peak_mib'] / base['peak_mib']:.2f}× | {gfs} |"
                )
        conv = r["conv3x3"]
        achieved = r["forward_gflops"]["unetpp"] / r["infer"]["unetpp"]["seconds"]
        alone = r["forward_gflops"]["unetpp"] / conv["all_convs_seconds"]
        lines.append(
            f"\nFastest 3×3 conv among the model's own shapes ({conv['fastest_shape']}, channels-last): "
            f"{conv['fastest_gflops']:.0f} GFLOP/s; UNet++ inference achieves {achieved:.0f} GFLOP/s = "
            f"{achieved / conv['fastest_gflops']:.0%} of it. Its 3×3 convolutions alone, each run by itself, "
            f"take {conv['all_convs_seconds'] * 1e3:.0f} ms ({alone:.0f} GFLOP/s of model FLOPs): the model runs at "
            f"{conv['all_convs_seconds'] / r['infer']['unetpp']['seconds']:.0%} of that bound."
        )
    for shape, rows in pruning.items():
        lines += [
            f"\n#### Pruned UNet++ at {shape} (inference, BN folded; relative to L4)\n",
            "| depth | params | GFLOPs | latency | peak memory | params vs L4 | time vs L4 | memory vs L4 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        top = rows[-1]
        for row in rows:
            lines.append(
                f"| L{row['depth']} | {row['params']:,} | {row['gflops']:.1f} | {row['seconds'] * 1e3:.0f} ms | "
                f"{row['peak_mib']:.0f} MiB | {row['params'] / top['params']:.1%} | "
                f"{row['seconds'] / top['seconds']:.1%} | {row['peak_mib'] / top['peak_mib']:.1%} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="16x1x96x96,2x1x512x512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--probe", nargs=3, metavar=("MODE", "NAME", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.probe:
        mode, name, shape = args.probe
        shape = tuple(int(s) for s in shape.split("x"))
        if mode == "prune":
            run = make_infer(unetpp.prune(ours_deployed(), int(name)), shape)
        else:
            run = step_for(mode, name, shape)
        print(probe_memory(run))
        return
    shapes = [tuple(int(s) for s in spec.split("x")) for spec in args.shapes.split(",")]
    results = [compare(s, args.reps) for s in shapes]
    pruning = {"×".join(map(str, s)): pruning_table(s, args.reps) for s in shapes}
    print(markdown(results, pruning))
    if args.out:
        args.out.write_text(json.dumps({"compare": results, "pruning": pruning}, indent=1))


if __name__ == "__main__":
    main()
