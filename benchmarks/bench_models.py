"""Speed and memory of unetpp's UNet++ against MONAI's BasicUNetPlusPlus, and the pruning table.

Everything is a ratio against a baseline measured in the same process, interleaved (A, B, A, B,
...) so that machine load hits both alike; peak memory is measured in a fresh subprocess per case
by :func:`unetpp.profiling.peak_memory_mib` (the same probe ``unetpp bench`` and the planner use). Run in
the bench environment (MONAI is a peer, never a project dependency):

    bash benchmarks/setup_bench_env.sh
    .bench-venv/bin/python benchmarks/bench_models.py --out benchmarks/results_models.json

Model: UNet++ with the paper's widths 32-64-128-256-512, 1 -> 1 channel, deep supervision (4 heads).
Inference rows include ``--runtime auto`` (the fastest installed runtime whose probabilities match
eager float32 within 1e-4, :mod:`unetpp.deploy.backends`); training rows include memory-efficient
training and, with ``--compile``, ``torch.compile`` (its compile time reported).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import unetpp
from unetpp.deploy.backends import choose, machine
from unetpp.deploy.bench import format_table, pruning_table
from unetpp.deploy.runtime_table import runtime_peak_mib
from unetpp.models import ensemble
from unetpp.models.fusion import fuse_batch_norm
from unetpp.profiling import forward_gflops, interleaved_seconds, peak_memory_mib, train_step
from unetpp.utils.precision import bf16_supported

Shape = tuple[int, ...]
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------- the candidates (the memory probe builds them too)
def monai_unetpp() -> nn.Module:
    from monai.networks.nets import BasicUNetPlusPlus

    return BasicUNetPlusPlus(
        spatial_dims=2, in_channels=1, out_channels=1, features=(32, 64, 128, 256, 512, 32), deep_supervision=True
    )


def _nchw(model: nn.Module) -> nn.Module:
    """The plain NCHW layout, kept to show what channels-last buys."""
    model.memory_format = torch.contiguous_format
    return model.to(memory_format=torch.contiguous_format)


def ours() -> nn.Module:
    return unetpp.build_model("unet++")


def ours_nchw() -> nn.Module:
    return _nchw(ours())


def ours_efficient() -> nn.Module:
    return unetpp.build_model("unet++", memory_efficient=True)


def ours_deployed() -> nn.Module:
    """What `unetpp predict --runtime torch` runs: batch norm folded into the convolutions."""
    return fuse_batch_norm(ours().eval())


def ours_deployed_nchw() -> nn.Module:
    return _nchw(ours_deployed())


INFER: dict[str, Callable[[], nn.Module]] = {
    "monai": monai_unetpp,
    "unetpp": ours_deployed,
    "unetpp, BN not folded": ours,
    "unetpp, NCHW": ours_deployed_nchw,
}
TRAIN: dict[str, Callable[[], nn.Module]] = {
    "monai": monai_unetpp,
    "unetpp": ours,
    "unetpp, NCHW": ours_nchw,
    "unetpp, memory-efficient": ours_efficient,
}
if bf16_supported():  # bf16 only where the CPU has it natively
    TRAIN["unetpp, bf16 autocast"] = ours


def make_infer(model: nn.Module, shape: Shape) -> Callable[[], None]:
    model.eval()
    x = torch.randn(shape)

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def precision_of(name: str) -> str:
    return "bf16" if "bf16" in name else "32"


# ---------------------------------------------------------------- measurements
def train_flops(model: nn.Module, shape: Shape) -> int:
    from torch.utils.flop_counter import FlopCounterMode

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


def auto_runtime(shape: Shape) -> tuple[str, Callable[[], None], float, float | None]:
    """`--runtime auto` on the deployed model: the chosen runtime, its step, max abs diff, peak memory."""
    model = ours_deployed()
    x = torch.randn(shape)
    chosen = choose(model, x, None, "32", "auto", use_cache=False)
    with torch.inference_mode():
        diff = float((ensemble(chosen.runner(x)) - ensemble(model(x))).abs().max())
    memory = runtime_peak_mib(model, shape, chosen.runtime, "32")
    return chosen.runtime, lambda: chosen.runner(x), diff, memory


def compiled_step(shape: Shape) -> tuple[Callable[[], None], float]:
    """A torch.compile'd training step and its compile time (the first two steps, minus one eager step)."""
    model = torch.compile(ours())
    run = train_step(model, torch.randn(shape))
    t = time.perf_counter()
    run()
    run()
    return run, time.perf_counter() - t


# ---------------------------------------------------------------- the report
def compare(shape: Shape, reps: int, compile_: bool) -> dict[str, object]:
    res: dict[str, object] = {"shape": list(shape), "machine": machine()}
    steps = {k: make_infer(f(), shape) for k, f in INFER.items()}
    runtime, steps["unetpp, --runtime auto"], diff, auto_memory = auto_runtime(shape)
    times = interleaved_seconds(steps, reps, settle=1)  # settle: another runtime's threads go idle first
    memory = {k: peak_memory_mib(f"{HERE}:{f.__name__}", shape) for k, f in INFER.items()}
    memory["unetpp, --runtime auto"] = auto_memory
    res["infer"] = {k: {"seconds": times[k], "peak_mib": memory[k]} for k in steps}
    res["auto"] = {"runtime": runtime, "max_abs_diff": diff}
    del steps
    gc.collect()
    steps = {k: train_step(f(), torch.randn(shape), precision_of(k)) for k, f in TRAIN.items()}
    if compile_:
        try:
            steps["unetpp, torch.compile"], res["compile_seconds"] = compiled_step(shape)
        except Exception as e:  # inductor needs a C++ compiler and may not take every graph: report, go on
            res["compile_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    times = interleaved_seconds(steps, reps)
    memory = {
        k: peak_memory_mib(f"{HERE}:{f.__name__}", shape, precision=precision_of(k), training=True)
        for k, f in TRAIN.items()
    }
    res["train"] = {k: {"seconds": times[k], "peak_mib": memory.get(k)} for k in steps}
    del steps
    gc.collect()
    x = torch.randn(shape)
    res["params"] = {"unetpp": n_params(ours()), "monai": n_params(monai_unetpp())}
    res["forward_gflops"] = {"unetpp": forward_gflops(ours_deployed(), x), "monai": forward_gflops(monai_unetpp(), x)}
    res["train_gflops"] = {"unetpp": train_flops(ours(), shape) / 1e9}
    res["conv3x3"] = conv3x3_speeds(ours(), shape, reps)
    return res


def _mib(v: object) -> str:
    return f"{v:.0f} MiB" if isinstance(v, float) else "–"


def markdown(results: list[dict[str, object]], pruning: dict[str, str]) -> str:
    lines = []
    for r in results:
        shape = "×".join(map(str, r["shape"]))
        n = r["shape"][0]
        lines += [
            f"\n#### UNet++ at {shape} (params: unetpp {r['params']['unetpp']:,}, MONAI {r['params']['monai']:,}; "
            f"forward GFLOPs: unetpp {r['forward_gflops']['unetpp']:.1f}, MONAI {r['forward_gflops']['monai']:.1f})\n",
            f"Machine: {r['machine']}. `--runtime auto` chose **{r['auto']['runtime']}** (probabilities within "
            f"{r['auto']['max_abs_diff']:.1e} of eager float32)"
            + (f"; torch.compile took {r['compile_seconds']:.0f} s to compile." if "compile_seconds" in r else ".")
            + (f" torch.compile failed: {r['compile_error']}." if "compile_error" in r else "")
            + "\n",
            "| mode | model | time per batch | images/s | speed vs MONAI | peak memory | memory vs MONAI | GFLOP/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for mode, flops in (("infer", r["forward_gflops"]["unetpp"]), ("train", r["train_gflops"]["unetpp"])):
            base = r[mode]["monai"]
            for k, v in r[mode].items():
                gfs = "" if k == "monai" else f"{flops / v['seconds']:.0f}"
                mem_ratio = (
                    f"{v['peak_mib'] / base['peak_mib']:.2f}×"
                    if isinstance(v["peak_mib"], float) and isinstance(base["peak_mib"], float)
                    else "–"
                )
                lines.append(
                    f"| {mode} | {k} | {v['seconds'] * 1e3:.0f} ms | {n / v['seconds']:.1f} | "
                    f"{base['seconds'] / v['seconds']:.2f}× | {_mib(v['peak_mib'])} | {mem_ratio} | {gfs} |"
                )
        conv = r["conv3x3"]
        achieved = r["forward_gflops"]["unetpp"] / r["infer"]["unetpp"]["seconds"]
        lines.append(
            f"\nFastest 3×3 conv among the model's own shapes ({conv['fastest_shape']}, channels-last): "
            f"{conv['fastest_gflops']:.0f} GFLOP/s; UNet++ inference (eager) achieves {achieved:.0f} GFLOP/s = "
            f"{achieved / conv['fastest_gflops']:.0%} of it. Its 3×3 convolutions alone, each run by itself, take "
            f"{conv['all_convs_seconds'] * 1e3:.0f} ms: the model runs at "
            f"{conv['all_convs_seconds'] / r['infer']['unetpp']['seconds']:.0%} of that bound."
        )
    for shape, table in pruning.items():
        lines += [f"\n#### Pruned UNet++ at {shape} (inference, BN folded; relative to L4)\n", table]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="16x1x96x96,1x1x512x512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd training step")
    parser.add_argument("--no-pruning", action="store_true", help="skip the pruning tables")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = [tuple(int(s) for s in spec.split("x")) for spec in args.shapes.split(",")]
    results = [compare(s, args.reps, args.compile) for s in shapes]
    rows = {} if args.no_pruning else {"×".join(map(str, s)): pruning_table(ours(), s, args.reps) for s in shapes}
    print(markdown(results, {k: format_table(v) for k, v in rows.items()}))
    if args.out:
        args.out.write_text(json.dumps({"compare": results, "pruning": rows}, indent=1))


if __name__ == "__main__":
    main()
