"""The `unetpp` command line: thin handlers over the library.

User errors (bad paths, files, options) print one line, ``unetpp: error: ...``, and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .data.layouts import LAYOUTS
from .errors import UnetppError
from .study.cli import add_compare, add_reproduce

if TYPE_CHECKING:
    from .data import SegmentationDataset
    from .models import NestedUNet

log = logging.getLogger("unetpp")


def _examples(*lines: str) -> str:
    return "Example:\n" + "\n".join(f"  {line}" for line in lines)


def _parser(prog: str, help: str, example: str, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser(
        prog, help=help, description=help, epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter
    )


# ---------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import next_steps, run_demo

    table = run_demo(args.out, epochs=args.epochs, seed=args.seed)
    print(table)
    print()
    print(next_steps(Path(args.out)))
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "demo",
        "Train U-Net and UNet++ for the same epochs on generated microscopy images and compare them (no data "
        "needed): accuracy, time per epoch, and the deploy trade-off of pruning.",
        _examples("unetpp demo --out runs/demo", "unetpp demo --out runs/demo-long --epochs 40"),
        sub,
    )
    p.add_argument("--out", default="runs/demo", help="output folder (must be new or empty)")
    p.add_argument("--epochs", type=int, help="epochs per model (default: the demo preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_demo)


# ---------------------------------------------------------------- train
def _train_overrides(args: argparse.Namespace) -> list[str]:
    """Command-line options as config assignments (only those given)."""
    pairs = {
        "data.root": args.data,
        "data.layout": args.layout,
        "data.channels": args.channels,
        "data.batch_size": args.batch_size,
        "data.num_workers": args.workers,
        "model.name": args.model,
        "model.depth": args.depth,
        "model.widths": f"[{args.widths}]" if args.widths else None,
        "model.classes": args.classes,
        "model.in_channels": args.in_channels,
        "model.spatial_dims": 3 if args.volumes else None,
        "model.deep_supervision": "false" if args.no_deep_supervision else None,
        "model.encoder": args.encoder,
        "model.encoder_weights": args.encoder_weights,
        "model.encoder_freeze": "true" if args.encoder_freeze else None,
        "train.encoder_lr_scale": args.encoder_lr_scale,
        "train.max_epochs": args.epochs,
        "train.max_minutes": args.minutes,
        "train.lr": args.lr,
        "train.precision": args.precision,
        "train.accelerator": args.accelerator,
        "train.devices": args.devices,
        "train.num_nodes": args.num_nodes,
        "train.strategy": args.strategy,
        "train.seed": args.seed,
    }
    return [f"{k}={v}" for k, v in pairs.items() if v is not None] + list(args.set or [])


def cmd_train(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .engine.train import fit

    run_dir = Path(args.run_dir)
    if args.resume:
        cfg = RunConfig.load(run_dir / "config.yaml").override(_train_overrides(args))
    else:
        base = RunConfig.load(Path(args.config)) if args.config else RunConfig()
        cfg = base.override(_train_overrides(args))
    best = fit(cfg, run_dir, resume=args.resume)
    print(f"best checkpoint: {best}")
    print(f"next: unetpp evaluate --checkpoint {best} --data <held-out images>")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "train",
        "Train a model of the UNet++ family on a data set; writes a run folder with checkpoints and logs.",
        _examples(
            "unetpp train --data data/em --model unet++ --run-dir runs/em --minutes 30",
            "unetpp train --run-dir runs/em --resume            # continue after an interruption",
            "unetpp train --data Task04_Hippocampus --layout decathlon --3d --classes 3 --run-dir runs/hippo",
        ),
        sub,
    )
    p.add_argument("--data", help="data set folder (images/ + masks/ or labels/, or --layout's layout)")
    p.add_argument("--layout", choices=list(LAYOUTS), help="how the data set lies on disk (default folders)")
    p.add_argument("--channels", choices=["grey", "rgb", "keep"])
    p.add_argument("--model", help="unet, wide_unet, unet_e, unet+, unet++ (default unet++)")
    p.add_argument("--depth", type=int)
    p.add_argument("--widths", help="channels per level, e.g. 32,64,128,256,512")
    p.add_argument("--classes", type=int, help="1 for binary masks; N for label maps with N classes incl. 0")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--3d", dest="volumes", action="store_true", help="volumes (3D models and patches)")
    p.add_argument("--no-deep-supervision", action="store_true")
    p.add_argument("--encoder", help="a timm backbone, e.g. resnet34")
    p.add_argument("--encoder-weights", help="'imagenet' for pretrained weights (needs internet)")
    p.add_argument("--encoder-freeze", action="store_true")
    p.add_argument("--encoder-lr-scale", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--minutes", type=float, help="wall-clock budget")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int, help="data-loading processes")
    p.add_argument("--precision", help="32 (default), bf16 (CPUs with AVX-512 bf16, GPUs) or 16 (GPUs)")
    p.add_argument("--accelerator", help="auto (default), cpu or gpu")
    p.add_argument("--devices", help="e.g. 4 for four GPUs (DDP)")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--strategy", help="e.g. ddp")
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="a YAML config (see a run folder's config.yaml)")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        metavar="SECTION.FIELD=VALUE",
        help="any config field, e.g. train.lr=1e-3 (repeatable; later values win)",
    )
    p.add_argument("--run-dir", required=True, help="the run folder (new, or existing with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.set_defaults(handler=cmd_train)


# ---------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_table, summarize, write_csv
    from .files import check_output
    from .models import load

    out = Path(args.out) if args.out else Path(args.checkpoint).parent.parent / "evaluation.csv"
    check_output(out, args.overwrite)
    model = load(args.checkpoint)
    rows = evaluate(model, _dataset(args.data, args.layout, model), with_hd95=not args.no_hd95)
    write_csv(rows, out, overwrite=args.overwrite)
    print(format_table({Path(args.checkpoint).name: summarize(rows)}))
    print(f"per-image scores: {out}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "evaluate",
        "Score every head and the ensemble (IoU, Dice, HD95 per image; mean ± s.d.) on a labelled data set.",
        _examples("unetpp evaluate --checkpoint runs/em/checkpoints/best.ckpt --data data/em_test"),
        sub,
    )
    p.add_argument("--checkpoint", required=True, help="a run's best.ckpt/last.ckpt or a saved model file")
    p.add_argument("--data", required=True, help="labelled images (images/ + masks/, or --layout's layout)")
    p.add_argument("--layout", default="folders", choices=list(LAYOUTS))
    p.add_argument("--out", help="CSV of per-image scores (default: <run>/evaluation.csv)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster)")
    p.set_defaults(handler=cmd_evaluate)


# ---------------------------------------------------------------- predict
def _shape(text: str) -> tuple[int, ...]:
    from .errors import ConfigError

    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--shape must look like 1x1x512x512 (B x C x spatial...), got {text!r}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    depth = args.depth
    if args.head is not None:
        warnings.warn("--head is now spelled --depth (as in prune and export)", FutureWarning, stacklevel=1)
        depth = args.head if depth is None else depth
    from .inference import predict_files

    written = predict_files(
        args.checkpoint,
        args.inputs,
        args.out,
        mode="ensemble" if depth is None else f"select:{depth}",
        roi_size=args.roi,
        overlap=args.overlap,
        tta=args.tta,
        precision=args.precision,
        probabilities=args.probabilities,
        overlay=not args.no_overlay,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(written)} mask(s) to {args.out}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "predict",
        "Segment images or volumes of any size (sliding window); masks in each input's format, plus overlays.",
        _examples(
            "unetpp predict --checkpoint runs/em/checkpoints/best.ckpt --inputs 'scans/*.png' --out masks",
            "unetpp predict --checkpoint pruned_l3.pt --inputs volume.nii.gz --out masks --roi 96 --tta",
        ),
        sub,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a run's .ckpt, a saved or pruned model (.pt), a .safetensors or an .onnx file",
    )
    p.add_argument("--inputs", required=True, nargs="+", help="files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--depth", type=int, help="use only UNet++ L^d (runs only its nodes, as `prune --depth d`); default: ensemble"
    )
    p.add_argument("--head", type=int, help=argparse.SUPPRESS)  # the old name of --depth
    p.add_argument("--roi", type=int, help="sliding-window size (default: whole image up to a limit)")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--tta", action="store_true", help="average over flips (slower, often a little better)")
    p.add_argument("--precision", default="32", help="32 (default) or bf16 (fast on CPUs with AVX512-BF16 or AMX)")
    p.add_argument("--probabilities", action="store_true", help="also write probability maps")
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.set_defaults(handler=cmd_predict)


# ---------------------------------------------------------------- prune
def cmd_prune(args: argparse.Namespace) -> int:
    from .bench import choose_depth, format_table, pruning_table
    from .errors import ConfigError
    from .evaluate import evaluate, summarize
    from .files import check_output, write_text
    from .models import load, prune, save

    check_output(args.out, args.overwrite)
    if args.table:
        check_output(args.table, args.overwrite)
    model = load(args.checkpoint)
    heads = model.spec.heads
    if args.depth is not None and args.depth not in heads:
        raise ConfigError(f"--depth {args.depth}: the model has heads at depths {list(heads)}; choose one of them")
    if (args.auto or args.max_latency_ms is not None) and len(heads) < 2:
        raise ConfigError(
            f"{args.checkpoint}: the model has one head (depth {heads[0]}); --auto needs deep supervision, "
            "train with it or give --depth"
        )
    rows = pruning_table(model, _shape(args.shape), args.reps)
    iou: dict[str, float] = {}
    if args.data:
        samples = _dataset(args.data, args.layout, model)
        iou = {mode: s["iou"][0] for mode, s in summarize(evaluate(model, samples, with_hd95=False)).items()}
    for row in rows:
        row["iou"] = iou.get("ensemble" if row["depth"] is None else f"head{row['depth']}")
    print(format_table(rows))
    if args.table:
        write_text(args.table, _csv(rows), args.overwrite)
    if args.depth is not None:
        depth = args.depth
    else:
        if not iou:
            raise ConfigError("--auto and --max-latency-ms need --data (labelled validation images) to score depths")
        scores = {r["depth"]: r["iou"] for r in rows if r["depth"] is not None}
        latencies = {r["depth"]: r["latency_ms"] for r in rows if r["depth"] is not None}
        depth = choose_depth(scores, args.tolerance, latencies=latencies, max_latency=args.max_latency_ms)
    path = save(prune(model, depth), args.out, overwrite=args.overwrite)
    print(f"pruned to depth {depth}: {path}")
    return 0


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _dataset(root: str, layout: str, model: NestedUNet) -> SegmentationDataset:
    """The labelled images at `root` in `layout`, read as the model expects (channels, 2D/3D, classes)."""
    from .config import DataConfig
    from .data.layouts import open_dataset

    channels = {1: "grey", 3: "rgb"}.get(model.in_channels, "keep")
    cfg = DataConfig(root=root, layout=layout, channels=channels, cache=False)
    return open_dataset(cfg, model.spatial_dims, model.classes)


def add_prune(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "prune",
        "Measure every pruning level (IoU, params, GFLOPs, latency, memory: the paper's Fig. 5) and write "
        "the pruned model of the chosen depth.",
        _examples(
            "unetpp prune --checkpoint runs/em/checkpoints/best.ckpt --data data/em_val --auto --out em_pruned.pt",
            "unetpp prune --checkpoint best.ckpt --data data/em_val --max-latency-ms 200 --out fast.pt",
            "unetpp prune --checkpoint best.ckpt --depth 3 --out em_l3.pt",
        ),
        sub,
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="labelled validation images to score each depth")
    p.add_argument("--layout", default="folders", choices=list(LAYOUTS))
    choice = p.add_mutually_exclusive_group(required=True)
    choice.add_argument("--depth", type=int, help="prune to this depth")
    choice.add_argument("--auto", action="store_true", help="the shallowest depth within --tolerance of the best IoU")
    choice.add_argument("--max-latency-ms", type=float, help="the most accurate depth within this latency")
    p.add_argument("--tolerance", type=float, default=0.003, help="IoU that --auto may give up (0.003 = 0.3 points)")
    p.add_argument("--shape", default="1x1x512x512", help="input shape to time, B x C x spatial")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--table", help="also write the table as CSV")
    p.add_argument("--out", required=True, help="the pruned model file")
    p.add_argument("--overwrite", action="store_true", help="replace --out and --table if they exist")
    p.set_defaults(handler=cmd_prune)


# ---------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx, export_program, export_safetensors, quantize_onnx
    from .models import load, prune  # export writes PyTorch models: .pt, a run's .ckpt or .safetensors

    model = load(args.checkpoint)
    if args.depth is not None:
        model = prune(model, args.depth)
    shape = _shape(args.shape) if args.shape else None
    if args.format == "onnx":
        report = export_onnx(model, args.out, shape, overwrite=args.overwrite)
        if args.calibration:
            int8 = str(args.out).removesuffix(".onnx") + ".int8.onnx"
            images = _calibration_images(args.calibration, model)
            q = quantize_onnx(args.out, int8, "static", calibration=images, overwrite=args.overwrite)
            print(f"int8 copy (static, {len(images)} calibration images): {q.path} ({q.bytes / 1e6:.1f} MB)")
    elif args.format == "program":
        report = export_program(model, args.out, overwrite=args.overwrite)
    else:
        report = export_safetensors(model, args.out, overwrite=args.overwrite)
    diff = "" if report.max_abs_diff is None else f"; max abs diff vs eager {report.max_abs_diff:.2e}"
    print(f"wrote {', '.join(map(str, report.files))} ({report.bytes / 1e6:.1f} MB){diff}")
    return 0


def _calibration_images(inputs: list[str], model: NestedUNet) -> list:
    """Training images as the model sees them (channels, z-score, padded to a valid size), batch of one."""
    import torch

    from .data.io import read_image
    from .data.transforms import normalize_intensity
    from .inference import find_inputs, match_channels
    from .padding import pad_to_multiple

    images = []
    for path in find_inputs(inputs):
        image = normalize_intensity(
            match_channels(read_image(path, model.spatial_dims), model.in_channels, path), "zscore"
        )
        images.append(pad_to_multiple(torch.from_numpy(image)[None].float(), 2**model.depth)[0])
    return images


def add_export(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "export",
        "Export a model to ONNX (checked in ONNX Runtime), a torch.export program, or safetensors + JSON.",
        _examples(
            "unetpp export --checkpoint runs/em/checkpoints/best.ckpt --format onnx --out em.onnx",
            "unetpp export --checkpoint best.ckpt --depth 2 --format safetensors --out em_l2.safetensors",
            "unetpp export --checkpoint best.ckpt --format onnx --out em.onnx --calibration 'data/em/images/0*.png'",
        ),
        sub,
    )
    p.add_argument("--checkpoint", required=True, help="a run's .ckpt, a saved or pruned model (.pt) or a .safetensors")
    p.add_argument("--format", choices=["onnx", "program", "safetensors"], default="onnx")
    p.add_argument("--out", required=True)
    p.add_argument("--depth", type=int, help="prune to this depth first (exports as small as it is)")
    p.add_argument("--shape", help="example input, e.g. 1x1x512x512 (sizes stay dynamic)")
    p.add_argument(
        "--calibration",
        nargs="+",
        help="ONNX: also write a statically quantized int8 copy, calibrated on these training images (a few)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace files that exist")
    p.set_defaults(handler=cmd_export)


# ---------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .bench import format_table, pruning_table
    from .files import check_output, write_text
    from .models import build_model, load

    if args.json:
        check_output(args.json, args.overwrite)
    shapes = [_shape(text) for text in args.shapes]
    model = load(args.checkpoint) if args.checkpoint else build_model(args.model)
    results = {}
    for text, shape in zip(args.shapes, shapes, strict=True):
        rows = pruning_table(model, shape, args.reps, precision=args.precision)
        results[text] = rows
        print(f"\n{text} ({args.precision})\n{format_table(rows)}")
    if args.json:
        write_text(args.json, json.dumps(results, indent=1), args.overwrite)
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "bench",
        "Params, GFLOPs, latency, throughput and peak memory of a model at every pruning level, per input size.",
        _examples("unetpp bench --model unet++ --shapes 1x1x512x512 16x1x96x96 --json bench.json"),
        sub,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint")
    source.add_argument("--model", default="unet++", help="a fresh model of this name (paper widths)")
    p.add_argument("--shapes", nargs="+", default=["1x1x512x512"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--precision", default="32", help="32 (default) or bf16")
    p.add_argument("--json", help="also write the tables as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    p.set_defaults(handler=cmd_bench)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo,
    add_train,
    add_evaluate,
    add_predict,
    add_prune,
    add_export,
    add_bench,
    add_compare,
    add_reproduce,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetpp",
        description="Train, prune, evaluate and deploy UNet++ and its family (Zhou et al., IEEE TMI 2019).",
        epilog=_examples("unetpp demo", "unetpp train --data data/em --run-dir runs/em"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return args.handler(args)
    except UnetppError as e:
        print(f"unetpp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unetpp: interrupted; a training run resumes with --resume from its last checkpoint", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """Warnings (an old option spelling, say) as one line on stderr, not Python's two-line form."""
    print(f"unetpp: note: {message}", file=sys.stderr)
