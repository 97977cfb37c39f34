"""`unetpp compare` and `unetpp reproduce`: thin handlers over :mod:`unetpp.study`.

Registered in :mod:`unetpp.cli.main`; errors are
:class:`~unetpp.errors.UnetppError`, printed there as one line with exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import examples, subcommand


def _abs(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _finish(spec: Any, out: str, part: str | None) -> int:
    from ..study.report import command_line, write_report
    from ..study.runner import run_study
    from ..utils.sharding import parse_part
    from .quiet import quiet_libraries

    with quiet_libraries():
        run_study(spec, out, part=parse_part(part))
    print(write_report(spec, out, command_line()))
    print(f"\nreport: {Path(out) / 'report.html'} (and report.md, results.csv, results.json)")
    return 0


# ---------------------------------------------------------------- compare
def _spec_from_args(args: argparse.Namespace) -> Any:
    """The study spec: the saved ``study.yaml`` of --out (if any), updated with the options given."""
    from ..study.spec import StudySpec

    saved = Path(args.out) / "study.yaml"
    d: dict[str, Any] = StudySpec.load(Path(args.out)).to_dict() if saved.is_file() else {}
    given = {
        "data": _abs(args.data),
        "layout": args.layout,
        "models": args.models,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "minutes": args.minutes,
        "test_folder": _abs(args.test),
        "test_ids": args.test_ids,
        "test_fraction": args.test_fraction,
        "spatial_dims": 3 if args.volumes else None,
        "classes": args.classes,
        "in_channels": args.in_channels,
        "overrides": args.set,
        "reference": args.reference,
        "hd95": False if args.no_hd95 else None,
        "size_bins": args.size_bins,
        "embedded_vs_isolated": True if args.embedded_vs_isolated else None,
    }
    if any(given[k] is not None for k in ("test_folder", "test_ids", "test_fraction")):
        for k in ("test_folder", "test_ids", "test_fraction"):
            d.pop(k, None)  # a test set given now replaces the saved one (a clash check follows)
    d.update({k: v for k, v in given.items() if v is not None})
    d.setdefault("name", Path(args.out).name)
    return StudySpec.from_dict(d, "the command line")


def cmd_compare(args: argparse.Namespace) -> int:
    from ..study.report import command_line, write_report

    spec = _spec_from_args(args)
    if args.report_only:
        print(write_report(spec, args.out, command_line()))
        return 0
    return _finish(spec, args.out, args.part)


def add_compare(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "compare",
        "Train several models of the family with several seeds on one data set for the same budget, score them "
        "on held-out images and report mean ± s.d., t-tests against a reference, curves and the pruning trade-off.",
        examples(
            "unetpp compare --data data/em --models unet unet+ unet++ --seeds 0 1 2 --epochs 40 "
            "--test-fraction 0.2 --out studies/em",
            "unetpp compare --out studies/em --seeds 0 1 2 3 4     # extend: trains only the new seeds",
            "unetpp compare --out studies/em --part 2/4            # one of 4 processes sharing the runs",
        ),
        sub,
    )
    p.add_argument("--out", required=True, help="the study folder (new, or an existing study to resume/extend)")
    p.add_argument("--data", help="data set folder (images/ + masks/, or --layout's layout)")
    p.add_argument("--layout", choices=["folders", "isbi2012", "dsb2018", "decathlon", "synthetic"])
    p.add_argument(
        "--models",
        nargs="+",
        help="model specs: unet, unet:depth=2, wide_unet, unet_e, unet+, unet+:ds=false, unet++, "
        "unet++:ds=false, unet++:encoder=resnet34 (options: depth, ds, encoder, weights, widths, norm)",
    )
    p.add_argument("--seeds", nargs="+", type=int, help="one run per model and seed (default 0)")
    p.add_argument("--epochs", type=int, help="training epochs per run (the fair unit)")
    p.add_argument("--minutes", type=float, help="wall-clock budget per run")
    test = p.add_mutually_exclusive_group()
    test.add_argument("--test", help="held-out test folder, in the same layout")
    test.add_argument("--test-ids", nargs="+", help="ids of the images kept out of training")
    test.add_argument("--test-fraction", type=float, help="the last fraction of the images (a contiguous block)")
    p.add_argument("--3d", dest="volumes", action="store_true", help="volumes (3D models and patches)")
    p.add_argument("--classes", type=int, help="1 for binary masks; N for label maps with N classes incl. 0")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--reference", help="the model the others are tested against (default: the first)")
    p.add_argument("--set", nargs="*", metavar="SECTION.FIELD=VALUE", help="config fields for every run")
    p.add_argument("--part", metavar="K/N", help="train only part K of N (for N processes, GPUs or nodes)")
    p.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster)")
    p.add_argument("--size-bins", nargs="+", type=float, help="object-size edges for the Fig. 7 groups")
    p.add_argument(
        "--embedded-vs-isolated",
        action="store_true",
        help="Fig. 6: also train UNet++ L1..L4 alone and compare each with head d of the deeply supervised UNet++",
    )
    p.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    p.set_defaults(handler=cmd_compare)


# ---------------------------------------------------------------- reproduce
def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..study.reproduce import list_presets, load_preset

    if args.list:
        print(list_presets())
        return 0
    if not args.name:
        raise ConfigError("name a preset (e.g. unetpp reproduce table4-em --data ... --out ...) or pass --list")
    if not args.data or not args.out:
        raise ConfigError(
            f"reproduce {args.name} needs --data (your copy of the data set) and --out (the study folder)"
        )
    fields = {"test_folder": _abs(args.test)} if args.test else {}
    spec = load_preset(args.name, args.budget, data=_abs(args.data) or "", overrides=tuple(args.set or ()), **fields)
    return _finish(spec, args.out, args.part)


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "reproduce",
        "Run one of the paper's experiments (Tables I/IV, Figs. 5-7) as a study, next to the paper's numbers.",
        examples(
            "unetpp reproduce --list",
            "unetpp reproduce table4-em --budget cpu --data data/isbi2012 --out studies/table4-em",
            "unetpp reproduce fig6 --budget smoke --data data/isbi2012 --out /tmp/fig6",
        ),
        sub,
    )
    p.add_argument("name", nargs="?", help="table1-em, table4-em, table4-nuclei, table4-3d, fig5, fig6, fig7-nuclei")
    p.add_argument("--list", action="store_true", help="show the presets and the paper's numbers")
    p.add_argument("--budget", default="cpu", choices=["smoke", "cpu", "paper"])
    p.add_argument("--data", help="your copy of the preset's data set")
    p.add_argument("--test", help="a held-out test folder instead of the preset's split")
    p.add_argument("--out", help="the study folder; the same folder resumes")
    p.add_argument("--set", nargs="+", action="extend", metavar="SECTION.FIELD=VALUE", help="e.g. train.precision=bf16")
    p.add_argument("--part", metavar="K/N", help="train only part K of N")
    p.set_defaults(handler=cmd_reproduce)
