"""``unetpp plan``: fingerprint a data set and print (and write) the training plan.

The fingerprint and the rules are in :mod:`unetpp.plan`; this module only parses options and prints.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..data.layouts import LAYOUTS
from ..errors import ConfigError
from .common import subcommand

if TYPE_CHECKING:
    from ..data import SegmentationDataset


def cmd_plan(args: argparse.Namespace) -> int:
    import yaml

    from ..config import RunConfig
    from ..engine.planning import plan_within_budget
    from ..plan.fingerprint import fingerprint
    from ..plan.record import checked_fields, format_plan, save_plan

    overrides = {}
    for a in args.set or []:
        name, sep, raw = a.partition("=")
        if not sep:
            raise ConfigError(f"cannot apply {a!r}: expected field=value, e.g. batch_size=4 or patch_size=[64,64]")
        try:
            overrides[name.strip().removeprefix("plan.")] = yaml.safe_load(raw)
        except yaml.YAMLError:
            overrides[name.strip().removeprefix("plan.")] = raw  # not YAML: the check names what was expected
    checked_fields(overrides)  # a bad value fails before the data set is read
    train = {"max_minutes": args.minutes, "memory_gb": args.memory_gb, "accelerator": args.device}
    if args.precision:
        train["precision"] = args.precision
    cfg = RunConfig.from_dict({"model": {"name": args.model}, "train": train}, source="the options")
    user = frozenset({"train.precision"} if args.precision else ())
    dataset = open_for_plan(args.data, args.layout, args.volumes)
    fp = fingerprint(dataset, max_items=args.max_items, use_cache=not args.no_cache)
    plan = plan_within_budget(cfg, user, fp, overrides)
    print(format_plan(plan, fp))
    if args.out:
        path = save_plan(plan, args.out, overwrite=args.overwrite)
        print(f"plan written to {path}")
    return 0


def open_for_plan(root: str, layout: str, volumes: bool = False) -> SegmentationDataset:
    """The data set at `root` in `layout`, opened only to list its items (raw files are read by the fingerprint)."""
    from ..config import DataConfig
    from ..engine.planning import open_for_plan as open_data

    return open_data(DataConfig(root=root, layout=layout), 3 if volumes else None)


def add_plan(sub: argparse._SubParsersAction) -> None:
    help = (
        "Fingerprint a data set (channels, shapes, spacing, intensities, labels) and print the training plan "
        "it implies (channels, classes, mask threshold, patch, depth, batch for the memory budget, normalisation)."
    )
    example = "\n".join(
        [
            "Example:",
            "  unetpp plan --data data/polyps",
            "  unetpp plan --data Task04_Hippocampus --layout decathlon --memory-gb 8 --out runs/hippo/plan.yaml",
            "  unetpp plan --data dsb2018/stage1_train --layout dsb2018 --set channels=grey --set in_channels=1",
            "  unetpp plan --data Task04_Hippocampus --layout decathlon --minutes 15   # the widths 15 minutes train",
        ]
    )
    p = subcommand("plan", help, example, sub)
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--layout", choices=[n for n in LAYOUTS if n != "synthetic"], default="folders")
    p.add_argument("--3d", dest="volumes", action="store_true", help="volumes stored as TIFF stacks or .npy")
    p.add_argument("--model", default="unet++", help="unet, wide_unet, unet_e, unet+, unet++ (default unet++)")
    p.add_argument(
        "--memory-gb",
        type=float,
        help="memory budget (default: 75%% of the available RAM, or 90%% of the GPU's free memory)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--precision", help="32, bf16 or 16; default: bf16 where the CPU/GPU has it natively, else 32 (16 on GPUs)"
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="the training budget, as train --minutes: narrows the widths where it buys too few steps here "
        "(times a training step on this machine)",
    )
    p.add_argument("--max-items", type=int, default=200, help="read at most this many images (evenly spaced)")
    p.add_argument("--no-cache", action="store_true", help="read the files again even if a fingerprint is cached")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a plan field, e.g. batch_size=4")
    p.add_argument("--out", help="write the plan here as YAML (e.g. plan.yaml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(handler=cmd_plan)
