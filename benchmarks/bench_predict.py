"""Prediction speed: unetpp's sliding window vs MONAI's, and ONNX Runtime / bf16 / int8 vs eager PyTorch.

Two parts, each a ratio against a baseline measured in the same process, interleaved (A, B, A, B,
...) so that load from other processes hits both alike:

* ``window``: ``unetpp.predict`` against MONAI's ``sliding_window_inference`` on a 2048×2048 image
  and a 128³ volume, with the same model (BN folded, ensemble of the heads' probabilities), the same
  window, overlap, Gaussian blending and windows per batch. Also prints the largest difference between
  the two outputs (the window positions and Gaussian are the same, so it should be ~1e-6).
* ``engines``: one window through eager PyTorch float32 (the baseline), eager bfloat16 autocast,
  ONNX Runtime float32 and ONNX Runtime int8 (static QDQ, calibrated on a few random windows; dynamic
  weight-only int8 too), for the full UNet++ (ensemble of 4 heads) and the pruned UNet++ L2, with
  random weights; the largest difference in probabilities from float32 is printed.
* ``iou``: the same engines on a trained checkpoint and held-out labelled images (``--checkpoint``,
  ``--data``; int8 calibrated on windows of ``--calibration`` images): mean IoU per engine, its change
  from eager float32 in IoU points, and the speed of ``unetpp.predict`` per image.

Run in the bench environment (MONAI is a peer, never a dependency of unetpp):

    bash benchmarks/setup_bench_env.sh
    .bench-venv/bin/python benchmarks/bench_predict.py --part window --reps 3 --out window.json
    .bench-venv/bin/python benchmarks/bench_predict.py --part engines --reps 10 --out engines.json
    .bench-venv/bin/python benchmarks/bench_predict.py --part iou --checkpoint runs/em/checkpoints/last.ckpt \
        --data ../shared/data/isbi2012-em --ids 20,21,22,23 --calibration "../shared/data/isbi2012-em/images/0*.png"
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

import unetpp
from unetpp import predict
from unetpp.deploy.backends import predictor
from unetpp.deploy.export import export_onnx, quantize_onnx
from unetpp.inference import OnnxRunner, PredictOptions, bf16_supported
from unetpp.models.fusion import fuse_batch_norm

PAPER_WIDTHS = (32, 64, 128, 256, 512)
WIDTHS_3D = (16, 32, 64, 128, 256)  # the paper's widths in 3D take minutes per volume on 2 cores


def interleaved(steps: dict[str, Callable[[], Tensor]], reps: int) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Median seconds of each step (one untimed warm-up each first) and each step's last output."""
    outs = {k: run() for k, run in steps.items()}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for k, run in steps.items():
            t = time.perf_counter()
            outs[k] = run()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, outs


# ---------------------------------------------------------------- part 1: sliding window vs MONAI
def window_case(spatial_dims: int, size: int, roi: int, overlap: float, sw_batch: int, reps: int) -> dict:
    from monai.inferers import sliding_window_inference

    widths = PAPER_WIDTHS if spatial_dims == 2 else WIDTHS_3D
    model = unetpp.build_model("unet++", spatial_dims=spatial_dims, widths=widths).eval()
    fused = fuse_batch_norm(model)  # MONAI gets the same folded model that unetpp.predict builds
    x = torch.randn(1, 1, *(size,) * spatial_dims)

    def ours() -> Tensor:
        return predict(model, x, roi_size=roi, overlap=overlap, sw_batch_size=sw_batch)

    def monai() -> Tensor:
        with torch.inference_mode():
            return sliding_window_inference(
                x, (roi,) * spatial_dims, sw_batch, lambda w: unetpp.ensemble(fused(w)), overlap, mode="gaussian"
            )

    times, outs = interleaved({"unetpp.predict": ours, "MONAI sliding_window_inference": monai}, reps)
    return {
        "spatial_dims": spatial_dims,
        "size": size,
        "roi": roi,
        "overlap": overlap,
        "sw_batch_size": sw_batch,
        "widths": list(widths),
        "seconds": times,
        "max_abs_diff": float((outs["unetpp.predict"] - outs["MONAI sliding_window_inference"]).abs().max()),
    }


def window_markdown(cases: list[dict]) -> str:
    lines = [
        "| input | model widths | window, overlap, windows/batch | unetpp.predict | MONAI | speed vs MONAI "
        "| max abs diff |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for c in cases:
        ours, monai = c["seconds"]["unetpp.predict"], c["seconds"]["MONAI sliding_window_inference"]
        size = "×".join([str(c["size"])] * c["spatial_dims"])
        roi = "×".join([str(c["roi"])] * c["spatial_dims"])
        lines.append(
            f"| {size} | {'-'.join(map(str, c['widths']))} | {roi}, {c['overlap']}, {c['sw_batch_size']} | "
            f"{ours:.1f} s | {monai:.1f} s | {monai / ours:.2f}× | {c['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- part 2: engines and precisions
def engines_case(depth: int | None, shape: tuple[int, ...], reps: int, work: Path) -> dict:
    model = unetpp.build_model("unet++").eval()
    if depth is not None:
        model = unetpp.prune(model, depth)
    fused = fuse_batch_norm(model)
    x = torch.randn(shape)
    name = "ensemble" if depth is None else f"L{depth}"
    onnx = export_onnx(model, work / f"{name}.onnx", shape)
    calibration = [torch.randn(shape) for _ in range(4)]
    int8 = quantize_onnx(onnx.path, work / f"{name}_int8.onnx", "static", calibration=calibration)
    int8_dyn = quantize_onnx(onnx.path, work / f"{name}_int8_dynamic.onnx", "dynamic")
    runners = {k: OnnxRunner(p) for k, p in (("f32", onnx.path), ("int8", int8.path), ("dyn", int8_dyn.path))}

    def eager(bf16: bool) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return unetpp.ensemble(fused(x))

        return run

    def ort(runner: OnnxRunner) -> Callable[[], Tensor]:
        return lambda: unetpp.ensemble(runner(x))

    steps = {
        "eager float32": eager(False),
        "eager bfloat16 (autocast)": eager(True),
        "ONNX Runtime float32": ort(runners["f32"]),
        "ONNX Runtime int8 static (QDQ)": ort(runners["int8"]),
        "ONNX Runtime int8 dynamic": ort(runners["dyn"]),
    }
    times, outs = interleaved(steps, reps)
    ref = outs["eager float32"]
    return {
        "model": name,
        "shape": list(shape),
        "params": sum(p.numel() for p in fused.parameters()),
        "onnx_max_abs_diff_logits": onnx.max_abs_diff,
        "file_bytes": {"onnx": onnx.bytes, "int8": int8.bytes, "int8_dynamic": int8_dyn.bytes},
        "seconds": times,
        "max_abs_diff_probs": {k: float((v - ref).abs().max()) for k, v in outs.items()},
    }


def engines_markdown(cases: list[dict]) -> str:
    lines = [
        "| model | engine | latency | speed vs eager float32 | max abs diff of probabilities vs float32 | IoU change |",
        "|---|---|---:|---:|---:|---|",
    ]
    for c in cases:
        base = c["seconds"]["eager float32"]
        for k, s in c["seconds"].items():
            lines.append(
                f"| UNet++ {c['model']} ({c['params']:,} params) | {k} | {s * 1e3:.0f} ms | {base / s:.2f}× | "
                f"{c['max_abs_diff_probs'][k]:.1e} | needs a trained model |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------- part 3: IoU change on a trained model
def calibration_windows(folder: Path, model: torch.nn.Module, roi: int, n: int = 8) -> list[Tensor]:
    """Up to `n` normalised windows ``(1, C, roi, roi)`` cut from the centre of the images in `folder`."""
    from unetpp.data.datasets import convert_channels
    from unetpp.data.io import read_image
    from unetpp.data.transforms import normalize_intensity
    from unetpp.inference import find_inputs

    windows = []
    for path in find_inputs(folder)[:n]:
        image = convert_channels(read_image(path, 2), "grey" if model.in_channels == 1 else "rgb", path)
        x = torch.from_numpy(normalize_intensity(image))
        h, w = x.shape[1:]
        if min(h, w) < roi:
            continue
        top, left = (h - roi) // 2, (w - roi) // 2
        windows.append(x[None, :, top : top + roi, left : left + roi].contiguous())
    return windows


def iou_case(
    checkpoint: Path, data: Path, calibration: Path, roi: int, mode: str, reps: int, work: Path, ids: list[str] | None
) -> dict:
    from unetpp.data.datasets import FolderPairs
    from unetpp.metrics import iou, masks_from_labels, masks_from_probs

    model = unetpp.load(checkpoint).eval()
    head = None if mode == "ensemble" else int(mode.partition(":")[2])
    deployed = model if head is None else unetpp.prune(model, head)  # ONNX computes every head it holds
    test = FolderPairs(data, channels="grey" if model.in_channels == 1 else "rgb")
    onnx = export_onnx(deployed, work / "model.onnx", (1, model.in_channels, roi, roi))
    int8 = quantize_onnx(
        onnx.path, work / "int8.onnx", "static", calibration=calibration_windows(calibration, model, roi)
    )
    engines: dict[str, tuple[object, str, str]] = {
        "eager float32": (deployed, "32", "torch"),
        "eager bfloat16 (autocast)": (deployed, "bf16", "torch"),
        "ONNX Runtime float32": (OnnxRunner(onnx.path), "32", "torch"),
        "ONNX Runtime int8 static (QDQ)": (OnnxRunner(int8.path), "32", "torch"),
        "--runtime auto float32": (deployed, "32", "auto"),
    }
    # each engine prepared once (BN folded, runtime chosen on its first window), then timed per image
    predictors = {
        k: predictor(m, PredictOptions(roi_size=roi, precision=p, runtime=r)) for k, (m, p, r) in engines.items()
    }
    scores: dict[str, list[float]] = {k: [] for k in engines}
    seconds: dict[str, list[float]] = {k: [] for k in engines}
    indices = [k for k, i in enumerate(test.ids) if ids is None or i in ids]
    for index in indices:
        sample = test[index]
        image, target = sample["image"], sample["mask"][None]
        steps = {k: (lambda f=f, x=image: f(x)) for k, f in predictors.items()}
        times, outs = interleaved(steps, reps)
        truth = masks_from_labels(target, model.classes)
        for k in engines:
            pred = masks_from_probs(outs[k][None])  # (1, K, H, W) bool: > 0.5 for one class, argmax otherwise
            scores[k].append(float(iou(pred, truth, include_background=False).mean()))
            seconds[k].append(times[k])
    chosen = predictors["--runtime auto float32"].model.chosen
    return {
        "auto_runtime": None if chosen is None else chosen.runtime,
        "checkpoint": str(checkpoint),
        "data": str(data),
        "images": len(indices),
        "mode": mode,
        "roi": roi,
        "mean_iou": {k: statistics.mean(v) for k, v in scores.items()},
        "seconds_per_image": {k: statistics.median(v) for k, v in seconds.items()},
    }


def iou_markdown(case: dict) -> str:
    base_iou, base_s = case["mean_iou"]["eager float32"], case["seconds_per_image"]["eager float32"]
    lines = [
        f"{case['images']} images of {case['data']}, {case['checkpoint']}, mode {case['mode']}, window {case['roi']}",
        "",
        "| engine | mean IoU | IoU change (points) | time per image | speed vs eager float32 |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, v in case["mean_iou"].items():
        s = case["seconds_per_image"][k]
        lines.append(f"| {k} | {v:.4f} | {100 * (v - base_iou):+.2f} | {s * 1e3:.0f} ms | {base_s / s:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["window", "engines", "iou"], required=True)
    parser.add_argument("--checkpoint", type=Path, help="iou: a trained model file")
    parser.add_argument("--data", type=Path, help="iou: held-out images/ + masks/ (or labels/)")
    parser.add_argument("--calibration", type=Path, help="iou: training images (folder or glob) for int8 calibration")
    parser.add_argument("--ids", help="iou: comma-separated image names to score (default: all in --data)")
    parser.add_argument("--roi", type=int, default=256, help="iou: window size")
    parser.add_argument("--mode", default="ensemble", help="iou: 'ensemble' or 'select:d'")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--sw-batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    header = f"torch {torch.__version__}, {args.threads} threads, native bf16: {bf16_supported()}"
    if args.part == "window":
        cases = [
            window_case(2, 2048, 512, args.overlap, args.sw_batch_size, args.reps),
            window_case(3, 128, 64, args.overlap, args.sw_batch_size, args.reps),
        ]
        table = window_markdown(cases)
    elif args.part == "engines":
        with tempfile.TemporaryDirectory() as tmp:
            cases = [engines_case(d, (1, 1, 512, 512), args.reps, Path(tmp)) for d in (None, 2)]
        table = engines_markdown(cases)
    else:
        if not (args.checkpoint and args.data and args.calibration):
            parser.error("--part iou needs --checkpoint, --data and --calibration")
        with tempfile.TemporaryDirectory() as tmp:
            ids = args.ids.split(",") if args.ids else None
            case = iou_case(
                args.checkpoint, args.data, args.calibration, args.roi, args.mode, args.reps, Path(tmp), ids
            )
            cases = [case]
        table = iou_markdown(cases[0])
    print(header)
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"header": header, "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
