"""Cost of Mask R-CNN++'s nested pyramid against plain FPN, same backbone and heads (paper Table V's models).

For each detector: parameters (all, and the pyramid alone), GFLOPs of the backbone + pyramid on one
image (torch.utils.flop_counter; the RPN/RoI part depends on the number of proposals, so it is
counted separately from a full eval forward), median seconds of an eval forward and of a training
step (forward + backward + Adam) on a synthetic image with 20 nuclei, timed interleaved
(``unetpp.deploy.bench.interleaved_seconds``), and the peak resident memory of each in a fresh process.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_detection.py --encoder resnet101 --size 512 --reps 5
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from unetpp.data.instances import make_target
from unetpp.detection import build_detector
from unetpp.profiling import interleaved_seconds, n_params

NAMES = ("maskrcnn", "maskrcnn++")


def sample(size: int, n: int = 20, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A grey-ish image with `n` random discs (nuclei) and its target."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for _ in range(n):
        cy, cx = torch.randint(8, size - 8, (2,), generator=g).tolist()
        r = int(torch.randint(4, max(5, size // 16), (), generator=g))
        masks.append(((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).to(torch.uint8))
    m = torch.stack(masks)
    image = (0.2 + 0.6 * m.amax(0).float() + 0.05 * torch.randn(size, size, generator=g)).clamp(0, 1).expand(3, -1, -1)
    return image.contiguous(), make_target(m)


def build(name: str, args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector(
        name,
        encoder=args.encoder,
        encoder_weights=None,
        min_size=args.size,
        max_size=args.size,
        pyramid_width=args.width,
        head_width=args.head_width,
        anchor_sizes=(8, 16, 32, 64, 128),
        detections_per_img=args.detections,
    )


def gflops(fn) -> float:  # noqa: ANN001
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe(name: str, mode: str, args: argparse.Namespace) -> None:
    """Child process: peak RSS (MiB) of one eval forward or training step above the built model."""
    model = build(name, args)
    image, target = sample(args.size)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    step = training_step(model, opt, image, target) if mode == "train" else inference(model, image)
    step()  # first call allocates optimizer state and picks kernels
    gc.collect()
    base = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    step()
    print((rss_kib("VmHWM") - base) / 1024)


def inference(model, image):  # noqa: ANN001, ANN201
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model([image])

    return run


def training_step(model, opt, image, target):  # noqa: ANN001, ANN201
    def run() -> None:
        model.train()
        loss = sum(model([image], [target]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    return run


def peak_mib(name: str, mode: str, args: argparse.Namespace) -> float | None:
    cmd = [sys.executable, __file__, "--probe", name, mode, *sys.argv[1:]]
    env = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=1800)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--width", type=int, default=256, help="pyramid width")
    parser.add_argument("--head-width", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--detections", type=int, default=100, help="detections kept per image (untrained: always all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--probe", nargs=2, metavar=("NAME", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe:
        probe(*args.probe, args)
        return
    image, target = sample(args.size)
    models = {name: build(name, args) for name in NAMES}
    opts = {name: torch.optim.Adam(m.parameters(), 1e-4) for name, m in models.items()}
    rows = {}
    for name, m in models.items():
        m.eval()
        batch = m.transform([image])[0].tensors
        with torch.inference_mode():
            dense = gflops(lambda m=m, batch=batch: m.backbone(batch))
            pyramid_in = m.backbone.body(batch)
            pyr = gflops(lambda m=m, f=pyramid_in: m.backbone.fpn({str(k): x for k, x in enumerate(f)}))
            full = gflops(lambda m=m: m([image]))
        rows[name] = {
            "params_M": n_params(m) / 1e6,
            "pyramid_params_M": n_params(m.backbone.fpn) / 1e6,
            "gflops_backbone+pyramid": dense,
            "gflops_pyramid": pyr,
            "gflops_eval_forward": full,
        }
    infer = interleaved_seconds({n: inference(m, image) for n, m in models.items()}, args.reps)
    train = interleaved_seconds({n: training_step(m, opts[n], image, target) for n, m in models.items()}, args.reps)
    for name in NAMES:
        rows[name]["infer_s"] = infer[name]
        rows[name]["train_step_s"] = train[name]
        if not args.no_memory:
            rows[name]["peak_infer_mib"] = peak_mib(name, "infer", args)
            rows[name]["peak_train_mib"] = peak_mib(name, "train", args)
    print(json.dumps({"settings": vars(args) | {"probe": None}, "rows": rows}, indent=1))
    keys = list(rows[NAMES[0]])
    print("| model | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name in NAMES:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[name].values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
