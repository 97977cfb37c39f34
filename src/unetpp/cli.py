"""The `unetpp` command line: thin handlers over the library.

User errors (bad paths, files, options) print one line, ``unetpp: error: ...``, and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import UnetppError

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

    table = run_demo(args.out, minutes=args.minutes, seed=args.seed)
    print(table)
    print()
    print(next_steps(Path(args.out)))
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        "demo",
        "Train U-Net and UNet++ on generated microscopy images and compare them (no data needed).",
        _examples("unetpp demo --out runs/demo --minutes 2"),
        sub,
    )
    p.add_argument("--out", default="runs/demo", help="output folder (must be new or empty)")
    p.add_argument("--minutes", type=float, default=2.0, help="training time per model")
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
    p.add_argument("--layout", choices=["folders", "isbi2012", "dsb2018", "decathlon", "synthetic"])
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
    p.add_argument("--precision", help="32-true (default) or bf16-mixed")
    p.add_argument("--devices", help="e.g. 4 for four GPUs (DDP)")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--strategy", help="e.g. ddp")
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="a YAML config (see a run folder's config.yaml)")
    p.add_argument("--set", nargs="*", metavar="SECTION.FIELD=VALUE", help="any config field, e.g. train.lr=1e-3")
    p.add_argument("--run-dir", required=True, help="the run folder (new, or existing with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.set_defaults(handler=cmd_train)


# ---------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.datamodule import LAYOUTS
    from .errors import ConfigError
    from .evaluate import evaluate, format_table, summarize, write_csv
    from .models import load

    model = load(args.checkpoint)
    channels = {1: "grey", 3: "rgb"}.get(model.in_channels, "keep")
    if args.layout not in LAYOUTS:
        raise ConfigError(f"--layout must be one of {list(LAYOUTS)}, got {args.layout!r}")
    dataset = LAYOUTS[args.layout](
        args.data, spatial_dims=model.spatial_dims, num_classes=max(2, model.classes), channels=channels
    )
    rows = evaluate(model, dataset, with_hd95=not args.no_hd95)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent.parent / "evaluation.csv"
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out}: file exists; pass --overwrite or choose --out")
    write_csv(rows, out)
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
    p.add_argument("--layout", default="folders", help="folders, isbi2012, dsb2018 or decathlon")
    p.add_argument("--out", help="CSV of per-image scores (default: <run>/evaluation.csv)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster)")
    p.set_defaults(handler=cmd_evaluate)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_demo, add_train, add_evaluate]


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
    try:
        return args.handler(args)
    except UnetppError as e:
        print(f"unetpp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unetpp: interrupted; a training run resumes with --resume from its last checkpoint", file=sys.stderr)
        return 130
