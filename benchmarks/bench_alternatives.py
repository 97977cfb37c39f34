"""Alternatives measured for UNet++'s CPU speed, kept to show why they were not adopted.

Each line is a ratio against the implementation unetpp uses, run interleaved in this process:

1. a node's first conv over concatenated inputs (unetpp) vs the conv split over its inputs and
   summed (no concatenation copy) vs one wide conv of a finished node for all its successors;
2. 2x2 transposed conv (unetpp) vs a 1x1 conv to 4x channels + pixel shuffle;
3. eager (unetpp) vs torch.compile (inductor, freezing) for whole-model inference.

    .venv/bin/python benchmarks/bench_alternatives.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import unetpp
from unetpp.models.fusion import fuse_batch_norm
from unetpp.profiling import interleaved_seconds

CL = torch.channels_last


def median_ms(fns: dict[str, Callable[[], object]], reps: int = 7) -> dict[str, float]:
    return {k: v * 1e3 for k, v in interleaved_seconds(fns, reps).items()}


def concat_alternatives(n: int, size: int, channels: int, inputs: int) -> dict[str, float]:
    xs = [torch.randn(n, channels, size, size).contiguous(memory_format=CL) for _ in range(inputs)]
    joint = nn.Conv2d(channels * inputs, channels, 3, padding=1).to(memory_format=CL)
    parts = [nn.Conv2d(channels, channels, 3, padding=1).to(memory_format=CL) for _ in range(inputs)]
    wide = nn.Conv2d(channels, channels * inputs, 3, padding=1).to(memory_format=CL)

    def split() -> torch.Tensor:
        out = parts[0](xs[0])
        for conv, x in zip(parts[1:], xs[1:], strict=True):
            out = out + conv(x)
        return out

    with torch.inference_mode():
        return median_ms({"cat+conv": lambda: joint(torch.cat(xs, 1)), "split": split, "wide": lambda: wide(xs[0])})


def upsample_alternatives(n: int, size: int, c_in: int, c_out: int) -> dict[str, float]:
    x = torch.randn(n, c_in, size, size).contiguous(memory_format=CL)
    up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2).to(memory_format=CL)
    w = up.weight.detach().permute(1, 2, 3, 0).reshape(c_out * 4, c_in, 1, 1).contiguous(memory_format=CL)
    b = up.bias.detach().repeat_interleave(4)
    with torch.inference_mode():
        return median_ms({"convT": lambda: up(x), "1x1+shuffle": lambda: F.pixel_shuffle(F.conv2d(x, w, b), 2)})


def compile_alternative(shape: tuple[int, ...]) -> dict[str, float]:
    import torch._inductor.config as inductor

    inductor.freezing = True
    model = fuse_batch_norm(unetpp.build_model("unet++").eval())
    compiled = torch.compile(model)
    x = torch.randn(shape)
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(x)
        compile_s = time.perf_counter() - start
        res = median_ms({"eager": lambda: model(x), "compiled": lambda: compiled(x)}, reps=5)
    return {**res, "compile_s": compile_s}


def main() -> None:
    torch.set_num_threads(2)
    print("| case | unetpp's choice | alternative(s) |\n|---|---|---|")
    for n, size, c, k in [(16, 96, 32, 5), (16, 96, 32, 2), (2, 512, 32, 5), (16, 48, 64, 4)]:
        r = concat_alternatives(n, size, c, k)
        print(
            f"| node conv, {k} inputs of {n}×{c}×{size}² | cat+conv {r['cat+conv']:.1f} ms | "
            f"split {r['split']:.1f} ms ({r['cat+conv'] / r['split']:.2f}×), "
            f"wide {r['wide']:.1f} ms ({r['cat+conv'] / r['wide']:.2f}×, before the sums it still needs) |"
        )
    for n, size, c_in, c_out in [(16, 48, 64, 32), (2, 256, 64, 32), (16, 6, 512, 256)]:
        r = upsample_alternatives(n, size, c_in, c_out)
        print(
            f"| up-sampling {n}×{c_in}×{size}² → {c_out} | convT {r['convT']:.2f} ms | "
            f"1x1+shuffle {r['1x1+shuffle']:.2f} ms ({r['convT'] / r['1x1+shuffle']:.2f}×) |"
        )
    for shape in [(16, 1, 96, 96), (2, 1, 512, 512)]:
        r = compile_alternative(shape)
        print(
            f"| whole UNet++ inference {'×'.join(map(str, shape))} | eager {r['eager']:.0f} ms | "
            f"torch.compile {r['compiled']:.0f} ms ({r['eager'] / r['compiled']:.2f}×; compiling took "
            f"{r['compile_s']:.0f} s) |"
        )


if __name__ == "__main__":
    main()
