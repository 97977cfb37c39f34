"""`unetpp demo`, `train` and `evaluate`: thin handlers over the engine and evaluation."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.instances import INSTANCE_LAYOUTS
from ..data.layouts import LAYOUTS
from .common import add_postprocess, examples, labelled_dataset, subcommand

LAYOUT_NAMES = list({**LAYOUTS, **INSTANCE_LAYOUTS})  # + coco (instance tasks)


# ---------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from ..study.demo import next_steps, run_demo
    from .quiet import quiet_libraries

    with quiet_libraries(getattr(args, "verbose", False)):
        table = run_demo(args.out, epochs=args.epochs, seed=args.seed)
    print(table)
    print()
    print(next_steps(Path(args.out)))
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "demo",
        "Train U-Net and UNet++ for the same epochs on generated microscopy images and compare them (no data "
        "needed): accuracy, time per epoch, and the deploy trade-off of pruning.",
        examples("unetpp demo --out runs/demo", "unetpp demo --out runs/demo-long --epochs 40"),
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
        "model.task": args.task,
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
        "train.memory_gb": args.memory_gb,
        "train.init": args.init,
    }
    return [f"{k}={v}" for k, v in pairs.items() if v is not None] + list(args.set or [])


def _assigned_fields(args: argparse.Namespace) -> frozenset[str]:
    """``section.field`` names the user set: command-line options, --set, and every field of --config's YAML."""
    import yaml

    names = {a.partition("=")[0].strip() for a in _train_overrides(args)}
    if args.config:
        d = yaml.safe_load(Path(args.config).read_text()) or {}
        if isinstance(d, dict):
            names |= {f"{s}.{k}" for s, fields in d.items() if isinstance(fields, dict) for k in fields}
    return frozenset(names)


def cmd_train(args: argparse.Namespace) -> int:
    from ..config import RunConfig
    from ..engine.distributed import is_rank_zero
    from ..engine.planning import user_fields_of
    from ..engine.signals import Terminated
    from ..engine.train import fit
    from ..errors import CheckpointError, ConfigError
    from ..models.provenance import record_command
    from .quiet import quiet_libraries

    if args.plan and args.no_plan:
        raise ConfigError("--plan and --no-plan exclude each other; give one")
    run_dir = Path(args.run_dir)
    if args.resume:
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(f"{run_dir}: no run to resume (no config.yaml); start a new run without --resume")
        cfg = RunConfig.load(run_dir / "config.yaml").override(_train_overrides(args))
    else:
        base = RunConfig.load(Path(args.config)) if args.config else RunConfig()
        cfg = base.override(_train_overrides(args))
    plan = None if args.no_plan else (args.plan or "auto")
    user_fields = user_fields_of(cfg, _assigned_fields(args))
    with quiet_libraries(getattr(args, "verbose", False)):
        try:
            best = fit(
                cfg,
                run_dir,
                resume=args.resume,
                started=getattr(args, "started", None),
                plan=plan,
                user_fields=user_fields,
            )
        except (Terminated, KeyboardInterrupt):  # saved last.ckpt: the command is part of the run's record
            if is_rank_zero():
                record_command(run_dir, getattr(args, "argv", None))
            raise
    if not is_rank_zero():  # the other ranks of a DDP run: rank zero says it once
        return 0
    record_command(run_dir, getattr(args, "argv", None))  # commands.txt: the model card's "trained with"
    print(f"best checkpoint: {best}")
    print(f"next: unetpp evaluate --checkpoint {best} --data <held-out images>")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "train",
        "Train a model of the UNet++ family on a data set; writes a run folder with checkpoints and logs.",
        examples(
            "unetpp train --data data/em --run-dir runs/em --minutes 30   # plans channels, patch, batch... itself",
            "unetpp train --data data/em --run-dir runs/em2 --plan runs/em/plan.yaml   # a saved (edited) plan",
            "unetpp train --run-dir runs/em --resume            # continue after an interruption",
            "unetpp train --data Task04_Hippocampus --layout decathlon --run-dir runs/hippo --memory-gb 8",
            "unetpp train --init runs/em/checkpoints/best.ckpt --data data/new_em --run-dir runs/em_tuned",
        ),
        sub,
    )
    p.add_argument("--data", help="data set folder (images/ + masks/ or labels/, or --layout's layout)")
    p.add_argument("--layout", choices=LAYOUT_NAMES, help="how the data set lies on disk (default folders)")
    p.add_argument("--channels", choices=["grey", "rgb", "keep"])
    p.add_argument("--task", choices=["semantic", "instance"], help="instance: --model maskrcnn or maskrcnn++")
    p.add_argument("--model", help="unet, wide_unet, unet_e, unet+, unet++ (default); maskrcnn, maskrcnn++")
    p.add_argument("--depth", type=int)
    p.add_argument("--widths", help="channels per level, e.g. 32,64,128,256,512")
    p.add_argument("--classes", type=int, help="1 for binary masks; N for label maps with N classes incl. 0")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--3d", dest="volumes", action="store_true", help="volumes (3D models and patches)")
    p.add_argument("--no-deep-supervision", action="store_true")
    p.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this trained model (a run's best.ckpt, .pt, .safetensors, a folder or Hub id org/name): "
        "its architecture and weights; new class heads if the data have other classes",
    )
    p.add_argument("--encoder", help="a timm backbone, e.g. resnet34")
    p.add_argument(
        "--encoder-weights",
        help="'imagenet' (timm's download, cached) or a local timm/torchvision state dict (.pth, .safetensors)",
    )
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
    p.add_argument(
        "--memory-gb",
        type=float,
        help="memory budget of the plan and the guard (default: 75%% of the available RAM, or 90%% of the GPU's free)",
    )
    p.add_argument("--plan", help="train with this saved plan.yaml (from `unetpp plan --out` or a run folder)")
    p.add_argument("--no-plan", action="store_true", help="do not plan: the config's defaults and your options only")
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
    from ..errors import ConfigError
    from ..evaluation.semantic import evaluate, format_table, summarize, write_csv
    from ..inference.instances import is_detector
    from ..models import load
    from ..models.hub import run_folder_of
    from ..models.provenance import recorded_ensemble_heads, recorded_min_sizes, recorded_tta
    from ..utils.atomic import check_output

    model = load(args.checkpoint)
    if args.instances or is_detector(model):  # Table V's columns (evaluate_instances.py)
        from ..evaluation.instances import run_evaluate

        if args.tta:
            raise ConfigError("--tta scores semantic predictions; drop it for instance scores (--instances, detectors)")

        return run_evaluate(model, args)
    out = Path(args.out) if args.out else run_folder_of(args.checkpoint) / "evaluation.csv"
    check_output(out, args.overwrite)
    chosen = recorded_ensemble_heads(args.checkpoint)
    tta = args.tta if args.tta is not None else recorded_tta(args.checkpoint) is True  # as predict runs it
    if args.tta is None and tta:
        print("scores of predictions averaged over flips, as training chose on validation (--no-tta: one pass)")
    sizes = recorded_min_sizes(args.checkpoint) if args.postprocess else None
    if sizes is not None:
        print(
            f"the ensembles' masks lose components under {list(sizes)} voxels per class, as training chose on "
            "validation (--no-postprocess: kept)"
        )
    data = _evaluation_data(args, model)
    rows = evaluate(
        model, data, with_hd95=not args.no_hd95, per_class=True, ensemble_heads=chosen, tta=tta, min_sizes=sizes
    )
    write_csv(rows, out, overwrite=args.overwrite)
    print(format_table({Path(args.checkpoint).name: summarize(rows)}, hd95=not args.no_hd95))
    print(f"per-image scores: {out}")
    return 0


def _evaluation_data(args: argparse.Namespace, model: object) -> object:
    """The labelled images, read as the model expects and preprocessed as the checkpoint records (if it does)."""
    from ..config import DataConfig
    from ..data.layouts import open_dataset
    from ..inference.preprocess import saved_preprocessing

    prep = saved_preprocessing(args.checkpoint)
    if not prep:
        return labelled_dataset(args.data, args.layout, model)  # type: ignore[arg-type]
    cfg = DataConfig(root=args.data, layout=args.layout, cache=False, **prep)
    return open_dataset(cfg, model.spatial_dims, model.classes)  # type: ignore[attr-defined]


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "evaluate",
        "Score every head and the ensemble (IoU, Dice, HD95 per image; mean ± s.d.) on a labelled data set; "
        "detectors (and --instances): IoU, Dice, DSB score, AP@0.5, object precision/recall per image.",
        examples(
            "unetpp evaluate --checkpoint runs/em/checkpoints/best.ckpt --data data/em_test",
            "unetpp evaluate --checkpoint runs/nuclei/checkpoints/best.ckpt --data dsb_test --layout dsb2018",
        ),
        sub,
    )
    p.add_argument("--checkpoint", required=True, help="a run's best.ckpt/last.ckpt or a saved model file")
    p.add_argument("--data", required=True, help="labelled images (images/ + masks/, or --layout's layout)")
    p.add_argument("--layout", default="folders", choices=LAYOUT_NAMES)
    p.add_argument(
        "--instances", action="store_true", help="instance scores of a semantic model (connected components)"
    )
    p.add_argument("--out", help="CSV of per-image scores (default: <run>/evaluation.csv or evaluation_instances.csv)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster)")
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="score predictions averaged over flips; default: as predict runs the model (the model file's choice)",
    )
    add_postprocess(p)
    p.set_defaults(handler=cmd_evaluate)
