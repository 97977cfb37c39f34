"""`unetpp predict`, `prune`, `export` and `bench`: thin handlers over inference, pruning and export."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING

from ..data.layouts import LAYOUTS
from ..deploy.bench import AUTO_TOLERANCE
from .common import add_postprocess, check_option, csv_text, examples, labelled_dataset, parse_shape, subcommand

if TYPE_CHECKING:
    from ..models import NestedUNet


# ---------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    depth = args.depth
    if args.head is not None:
        warnings.warn("--head is now spelled --depth (as in prune and export)", FutureWarning, stacklevel=1)
        depth = args.head if depth is None else depth
    from ..inference import PredictOptions
    from ..utils.sharding import parse_part

    check_option(0 <= args.overlap < 1, "--overlap", args.overlap, "a fraction in [0, 1), e.g. 0.5")
    check_option(args.roi is None or args.roi >= 1, "--roi", args.roi, "a window size in voxels, e.g. 96")
    options = PredictOptions(
        head=depth,
        ensemble=args.ensemble,
        roi_size=args.roi,
        overlap=args.overlap,
        tta=args.tta,
        postprocess=args.postprocess,
        precision=args.precision,
        runtime=args.runtime,
    )
    files = {
        "probabilities": args.probabilities,
        "overlay": not args.no_overlay,
        "overwrite": args.overwrite,
        "part": parse_part(args.part),
        "allow_input_folder": args.allow_input_folder,
    }
    if args.devices > 1 or args.accelerator not in (None, "cpu"):  # Lightning's predict loop, one rank per device
        import logging

        from ..engine.distributed import is_rank_zero
        from ..engine.predict import predict_files_on

        if not args.verbose:  # Lightning's start-up notes are not the user's business
            for name in ("lightning.pytorch", "lightning.fabric"):
                logging.getLogger(name).setLevel(logging.WARNING)
            warnings.filterwarnings("ignore", module=r"(lightning|torch)(\.|$)")
            warnings.filterwarnings("ignore", message=".*(treespec|predict returned None)")

        job = predict_files_on(
            args.checkpoint,
            args.inputs,
            args.out,
            options,
            devices=args.devices,
            accelerator=args.accelerator or "auto",
            **files,
        )
        if is_rank_zero():
            print(f"{job.total} input(s) done in {args.out}")
        return 0
    from ..deploy.backends import predictor
    from ..inference.instances import is_detector_file, predict_instance_files

    if is_detector_file(args.checkpoint):  # Mask R-CNN(++): instance label maps (16-bit) and overlays
        done = predict_instance_files(
            args.checkpoint,
            args.inputs,
            args.out,
            overlay=not args.no_overlay,
            overwrite=args.overwrite,
            allow_input_folder=args.allow_input_folder,
        )
        print(f"wrote {len(done)} instance label map(s) to {args.out}")
        return 0
    # a bar on a terminal; nothing between the lines of a log file
    written = predictor(args.checkpoint, options).predict_files(
        args.inputs, args.out, progress=sys.stderr.isatty(), **files
    )
    print(f"wrote {len(written)} mask(s) to {args.out}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "predict",
        "Segment images or volumes of any size (sliding window); masks in each input's format, plus overlays. "
        "Detectors write instance label maps (16-bit, 0 background) with one colour per instance in the overlay.",
        examples(
            "unetpp predict --checkpoint runs/em/checkpoints/best.ckpt --inputs 'scans/*.png' --out masks",
            "unetpp predict --checkpoint pruned_l3.pt --inputs volume.nii.gz --out masks --roi 96 --tta",
            "unetpp predict --checkpoint best.ckpt --inputs cohort/ --out masks --devices 4   # 4 GPUs or processes",
            "unetpp predict --checkpoint best.ckpt --inputs cohort/ --out masks --part $SLURM_ARRAY_TASK_ID/8",
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
    p.add_argument(
        "--ensemble",
        choices=["chosen", "mean"],
        default="chosen",
        help="chosen (default): the mean of the heads training chose on validation; mean: of every head (the paper)",
    )
    p.add_argument("--roi", type=int, help="sliding-window size (default: whole image up to a limit)")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="average over flips (4 passes in 2D, 8 in 3D); default: as training chose on validation (the model file)",
    )
    add_postprocess(p)
    p.add_argument("--precision", default="32", help="32 (default) or bf16 (fast on CPUs with AVX512-BF16 or AMX)")
    add_runtime(p)
    p.add_argument("--probabilities", action="store_true", help="also write probability maps")
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.add_argument(
        "--allow-input-folder",
        action="store_true",
        help="write into a folder that holds inputs (its earlier outputs are recognised by its manifest)",
    )
    p.add_argument("--part", help="k/n: only part k of n of the sorted inputs (n independent jobs split a cohort)")
    p.add_argument(
        "--devices", type=int, default=1, help="processes (CPU) or GPUs on this machine, through Lightning (default 1)"
    )
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu", "cuda", "mps"], help="with --devices; default auto")
    p.set_defaults(handler=cmd_predict)


# ---------------------------------------------------------------- prune
def cmd_prune(args: argparse.Namespace) -> int:
    from ..deploy.bench import choose_depth, format_table, pruning_table
    from ..errors import ConfigError
    from ..evaluation.semantic import evaluate, summarize
    from ..models import load, prune, save
    from ..models.provenance import recorded_ensemble_heads, recorded_validation_iou
    from ..plan.memory import check_inference_room
    from ..utils.atomic import check_output, write_text

    check_option(args.reps >= 1, "--reps", args.reps, "an integer >= 1")
    check_option(args.tolerance >= 0, "--tolerance", args.tolerance, "an IoU >= 0, e.g. 0.003")
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
    check_inference_room(model, parse_shape(args.shape))
    rows = pruning_table(model, parse_shape(args.shape), args.reps, runtime=args.runtime)
    chosen = recorded_ensemble_heads(args.checkpoint)
    if args.data:
        samples = labelled_dataset(args.data, args.layout, model)
        scored = evaluate(model, samples, with_hd95=False, ensemble_heads=chosen)
        iou = {mode: s["iou"][0] for mode, s in summarize(scored).items()}
    else:  # the scores training's validation judged this checkpoint by (the report's, the card's)
        iou = recorded_validation_iou(args.checkpoint)
        if iou:
            print(f"IoU: the validation scores recorded in {args.checkpoint} at training (--data scores other images)")
    for row in rows:
        # the ensemble row: what prediction runs by default (the chosen heads; their mean costs the same)
        ensemble_mode = "chosen" if "chosen" in iou else "ensemble"
        row["iou"] = iou.get(ensemble_mode if row["depth"] is None else f"head{row['depth']}")
    print(format_table(rows))
    if args.table:
        write_text(args.table, csv_text(rows), args.overwrite)
    if args.depth is not None:
        depth = args.depth
    else:
        if not iou:
            raise ConfigError(
                "--auto and --max-latency-ms need validation scores: a training checkpoint records them; "
                "otherwise give --data (labelled validation images)"
            )
        scores = {r["depth"]: r["iou"] for r in rows if r["depth"] is not None}
        latencies = {r["depth"]: r["latency_ms"] for r in rows if r["depth"] is not None}
        depth = choose_depth(scores, args.tolerance, latencies=latencies, max_latency=args.max_latency_ms)
    from ..models.provenance import pruned_record  # the source's record and preprocessing travel with it

    rule = f"--depth {depth}"
    if args.depth is None:
        rule = (
            f"--auto (tolerance {args.tolerance:g} IoU)" if args.auto else f"--max-latency-ms {args.max_latency_ms:g}"
        )
    record = pruned_record(args.checkpoint, rows, depth, rule)
    path = save(prune(model, depth), args.out, overwrite=args.overwrite, **record)
    print(f"pruned to depth {depth}: {path}")
    return 0


def add_prune(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "prune",
        "Measure every pruning level (IoU, params, GFLOPs, latency, memory: the paper's Fig. 5) and write "
        "the pruned model of the chosen depth.",
        examples(
            "unetpp prune --checkpoint runs/em/checkpoints/best.ckpt --data data/em_val --auto --out em_pruned.pt",
            "unetpp prune --checkpoint best.ckpt --data data/em_val --max-latency-ms 200 --out fast.pt",
            "unetpp prune --checkpoint best.ckpt --auto --out em_pruned.pt   # by the validation scores of training",
            "unetpp prune --checkpoint best.ckpt --depth 3 --out em_l3.pt",
        ),
        sub,
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="labelled images to score each depth (default: the scores of training's validation)")
    p.add_argument("--layout", default="folders", choices=list(LAYOUTS))
    choice = p.add_mutually_exclusive_group(required=True)
    choice.add_argument("--depth", type=int, help="prune to this depth")
    choice.add_argument("--auto", action="store_true", help="the shallowest depth within --tolerance of the best IoU")
    choice.add_argument("--max-latency-ms", type=float, help="the most accurate depth within this latency")
    p.add_argument(
        "--tolerance", type=float, default=AUTO_TOLERANCE, help="IoU that --auto may give up (0.003 = 0.3 points)"
    )
    p.add_argument("--shape", default="1x1x512x512", help="input shape to time, B x C x spatial")
    p.add_argument("--reps", type=int, default=5)
    add_runtime(p, "torch")
    p.add_argument("--table", help="also write the table as CSV")
    p.add_argument("--out", required=True, help="the pruned model file")
    p.add_argument("--overwrite", action="store_true", help="replace --out and --table if they exist")
    p.set_defaults(handler=cmd_prune)


# ---------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from ..deploy.export import export_onnx, export_program, export_safetensors, quantize_onnx
    from ..errors import ConfigError, ExportError
    from ..models import load, prune  # export writes PyTorch models: .pt, a run's .ckpt or .safetensors
    from ..models.checkpoint import sidecar
    from ..models.provenance import exported_header
    from ..utils.atomic import check_output, remove_temporaries_of

    # Every output and input is checked before the first file is written: a bad --calibration leaves no m.onnx.
    int8 = str(args.out).removesuffix(".onnx") + ".int8.onnx"
    outputs = [args.out]
    if args.calibration:
        if args.format != "onnx":
            raise ConfigError(f"--calibration quantizes ONNX files; it does not apply to --format {args.format}")
        outputs.append(int8)
    if args.format == "safetensors":
        outputs.append(sidecar(args.out))
    for out in outputs:
        check_output(out, args.overwrite, ExportError)
    remove_temporaries_of(outputs)  # what a killed export of these files left beside them
    shape = parse_shape(args.shape) if args.shape else None
    model = load(args.checkpoint)
    if args.depth is not None:
        model = prune(model, args.depth)
    header = exported_header(args.checkpoint, model.spec.heads)  # predict repeats the source's preprocessing
    images = _calibration_images(args.calibration, model, header["preprocessing"]) if args.calibration else []
    if args.format == "onnx":
        report = export_onnx(model, args.out, shape, overwrite=args.overwrite, header=header)
        if args.calibration:
            q = quantize_onnx(args.out, int8, "static", calibration=images, overwrite=args.overwrite)
            print(f"int8 copy (static, {len(images)} calibration images): {q.path} ({q.bytes / 1e6:.1f} MB)")
    elif args.format == "program":
        report = export_program(model, args.out, overwrite=args.overwrite)
    else:
        report = export_safetensors(model, args.out, overwrite=args.overwrite, header=header)
    diff = "" if report.max_abs_diff is None else f"; max abs diff vs eager {report.max_abs_diff:.2e}"
    print(f"wrote {', '.join(map(str, report.files))} ({report.bytes / 1e6:.1f} MB){diff}")
    return 0


def _calibration_images(inputs: list[str], model: NestedUNet, prep: dict | None) -> list:
    """Training images as the model sees them (the recorded preprocessing, else z-score), padded, batch of one."""
    import torch

    from ..data.io import read_with_meta
    from ..inference import find_inputs
    from ..inference.preprocess import prepare_input
    from ..utils.padding import pad_to_multiple

    prep = prep or {}
    images = []
    for path in find_inputs(inputs):
        raw, meta = read_with_meta(path, model.spatial_dims)
        image, _ = prepare_input(raw, meta, model.in_channels, prep, prep.get("normalize", "zscore"))
        images.append(pad_to_multiple(torch.from_numpy(image)[None].float(), 2**model.depth)[0])
    return images


def add_export(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "export",
        "Export a model to ONNX (checked in ONNX Runtime), a torch.export program, or safetensors + JSON.",
        examples(
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

    from ..deploy.bench import format_table, pruning_table
    from ..models import build_model, load
    from ..plan.memory import check_inference_room
    from ..utils.atomic import check_output, write_text

    check_option(args.reps >= 1, "--reps", args.reps, "an integer >= 1")
    if args.json:
        check_output(args.json, args.overwrite)
    shapes = [parse_shape(text) for text in args.shapes]
    model = load(args.checkpoint) if args.checkpoint else build_model(args.model)
    for shape in shapes:  # every shape fits memory before the first is timed
        check_inference_room(model, shape, "--shapes")
    if args.runtimes:  # one list of rows, one per runtime, precision and shape
        from ..deploy.backends import machine
        from ..deploy.runtime_table import format_runtime_table, runtime_table

        rows = []
        print(f"machine: {machine()}")
        for shape in shapes:
            table = runtime_table(model, shape, args.reps)
            print(f"\n{format_runtime_table(table)}")
            rows += table
        if args.json:
            write_text(args.json, json.dumps(rows, indent=1), args.overwrite)
        return 0
    results = {}
    for text, shape in zip(args.shapes, shapes, strict=True):
        rows = pruning_table(model, shape, args.reps, precision=args.precision, runtime=args.runtime)
        results[text] = rows
        print(f"\n{text} ({args.precision}, {args.runtime})\n{format_table(rows)}")
    if args.json:
        write_text(args.json, json.dumps(results, indent=1), args.overwrite)
    return 0


def add_runtime(p: argparse.ArgumentParser, default: str = "torch") -> None:
    p.add_argument(
        "--runtime",
        default=default,
        choices=["auto", "torch", "onnxruntime", "openvino"],
        help="auto: the fastest installed runtime whose outputs match PyTorch's (measured once per model, shape "
        f"and machine, cached; --verbose shows the times); default {default}",
    )


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "bench",
        "Params, GFLOPs, latency, throughput and peak memory of a model at every pruning level, per input size.",
        examples(
            "unetpp bench --model unet++ --shapes 1x1x512x512 16x1x96x96 --json bench.json",
            "unetpp bench --model unet++ --shapes 16x1x96x96 --runtimes --json runtimes.json",
        ),
        sub,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint")
    source.add_argument("--model", default="unet++", help="a fresh model of this name (paper widths)")
    p.add_argument("--shapes", nargs="+", default=["1x1x512x512"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--precision", default="32", help="32 (default) or bf16")
    add_runtime(p)
    p.add_argument(
        "--runtimes",
        action="store_true",
        help="instead: every installed runtime and precision (latency, throughput, memory, max abs diff)",
    )
    p.add_argument("--json", help="also write the tables as JSON (with --runtimes: a list of rows)")
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    p.set_defaults(handler=cmd_bench)
