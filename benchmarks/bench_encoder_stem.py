"""How should a timm backbone that starts at stride 2 give X^{0,0}? A stem block, or the raw image?

timm backbones (ResNet, DenseNet, EfficientNet, ...) have no full-resolution feature, but the
grid's top row X^{0,j} reads X^{0,0}. Two ways to supply it:

- ``stem``: a double 3x3 conv block on the image (``encoder.x_0_0``, f_0 wide), so every X^{0,j}
  gets a learnt full-resolution skip. This is what :class:`unetpp.models.encoders.TimmEncoder`
  does, because of what this script measured (equal learning, faster on CPU);
- ``image``: X^{0,0} is the image itself (in_channels wide): no parameters, fewer FLOPs, and the
  X^{0,j} nodes learn their own full-resolution filters from raw pixels.

This script measures both: forward GFLOPs and CPU latency (interleaved medians) at 4x1x256x256,
and what each learns on the embedded synthetic EM data (thin membranes: full-resolution detail
matters) in a fixed budget, from scratch, over a few seeds. Run it with the project venv:

    .venv/bin/python benchmarks/bench_encoder_stem.py --encoder resnet18 --steps 300 --seeds 0 1 2 --reps 0
    .venv/bin/python benchmarks/bench_encoder_stem.py --encoder resnet34 --steps 0
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import unetpp
from unetpp.data.synthetic import make_synthetic_em
from unetpp.losses import DeepSupervisionLoss, HybridLoss
from unetpp.models import nested
from unetpp.models.encoders import TimmEncoder


class ImageAsX00(TimmEncoder):
    """The alternative: X^{0,0} is the input image (no stem block); levels >= 1 as in TimmEncoder."""

    def __init__(self, name: str, in_channels: int, *args, **kwargs) -> None:
        super().__init__(name, in_channels, *args, **kwargs)
        if self.plain_levels != 1:
            raise SystemExit(f"{name}: the comparison needs a backbone whose first feature is at stride 2")
        self.x_0_0 = nn.Identity()
        self.widths = (in_channels, *self.widths[1:])


def build(kind: str, encoder: str, seed: int) -> unetpp.NestedUNet:
    torch.manual_seed(seed)
    original = nested.TimmEncoder
    nested.TimmEncoder = ImageAsX00 if kind == "image" else TimmEncoder  # type: ignore[misc]
    try:
        return unetpp.build_model("unet++", encoder=encoder, encoder_weights=None)
    finally:
        nested.TimmEncoder = original  # type: ignore[misc]


def cost(encoder: str, reps: int) -> dict[str, tuple[int, float, float]]:
    """(params, forward GFLOPs, median seconds) per kind at 4x1x256x256."""
    x = torch.randn(4, 1, 256, 256)
    models = {k: build(k, encoder, 0).eval() for k in ("stem", "image")}
    runs: dict[str, Callable[[], object]] = {k: (lambda m=m: m(x)) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for run in runs.values():
            run()
        for _ in range(reps):
            for k, run in runs.items():
                t = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t)
    out = {}
    for k, m in models.items():
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            m(x)
        out[k] = (sum(p.numel() for p in m.parameters()), counter.get_total_flops() / 1e9, statistics.median(times[k]))
    return out


def train_and_score(kind: str, encoder: str, seed: int, steps: int, data: tuple[torch.Tensor, ...]) -> float:
    """Membrane IoU (the thin class) of the deepest head on held-out images after `steps` Adam steps."""
    x_train, y_train, x_val, y_val = data
    model = build(kind, encoder, seed).train()
    loss_fn = DeepSupervisionLoss(HybridLoss(), [1.0] * 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x_train), (4,), generator=g)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x_train[idx]), y_train[idx]).backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(x_val[i : i + 4])[-1] for i in range(0, len(x_val), 4)]) > 0
    membrane_pred, membrane_true = ~pred, y_val < 0.5
    return ((membrane_pred & membrane_true).sum() / (membrane_pred | membrane_true).sum()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--steps", type=int, default=300, help="training steps; 0 measures the cost only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--size", type=int, default=96, help="side of the synthetic training images")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.reps > 0:
        for kind, (params, gflops, seconds) in cost(args.encoder, args.reps).items():
            ms = seconds * 1e3
            print(f"cost  {kind:5s}  params {params:,}  forward {gflops:.1f} GFLOPs  {ms:.0f} ms (4x1x256x256)")
    if args.steps == 0:
        return
    images, masks = make_synthetic_em(64, size=args.size, seed=0)
    x = torch.from_numpy(images).float().unsqueeze(1) / 255
    y = torch.from_numpy(masks).float().unsqueeze(1)
    data = (x[:48], y[:48], x[48:], y[48:])
    for kind in ("stem", "image"):
        scores = [train_and_score(kind, args.encoder, s, args.steps, data) for s in args.seeds]
        sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
        print(f"learn {kind:5s}  membrane IoU {statistics.mean(scores):.3f} ± {sd:.3f}  ({args.steps} steps; {scores})")


if __name__ == "__main__":
    main()
