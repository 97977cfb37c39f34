"""What a user's minutes buy (issue 19): held-out accuracy with defaults only, per data set and budget.

Every run is a user's first run: ``unetpp train --data <train part> --layout L --minutes M [--model unet]``
(the plan picks channels, patch, batch, depth, precision...), then ``unetpp evaluate`` of its best
checkpoint on the held-out part, which training never saw (the parts are folders of symbolic links):

- ISBI 2012 EM: train on slices 00-19, test on 20-23;
- DSB 2018 ``stage1_train``: test on the last 20% of the sorted ids;
- MSD hippocampus (3D, 3 classes): test on a seeded 20% of the volumes (``random.Random(0)``);
- ``dsb-large``, a stand-in for colour images with large objects (no such set is in ``../shared/data``): the
  centre 80x80 of each DSB 2018 image, enlarged 8x to 640x640 (bicubic; the mask bilinear, cut at one half),
  so the median nucleus covers about 93x93 pixels instead of 18x18; written once under ``<out>/dsb-large/source``
  as ``images/`` + ``masks/`` (the folders layout), test on the last 20% of the ids as for DSB.

Below the table, each UNet++ mode against U-Net and each variant against its model's defaults: mean
+- s.d. over seeds with Welch's t-test, and a paired t-test over test images (scores averaged over seeds).

Per run the table gives the held-out IoU and Dice (mean over test images: U-Net's output; UNet++'s
plain mean of the heads and the validation-chosen heads) of one pass (``evaluate --no-tta``), the Dice of
predictions averaged over flips (``evaluate --tta``, as nnU-Net predicts by default) where ``--tta`` asks or
training chose flips on validation (the check of ``unetpp.engine.tta``: its choice and the validation IoU
gain are a column), the IoU with every predicted component kept (``evaluate --no-postprocess``) where training
chose a minimum component size on validation (``unetpp.engine.postprocess``), the optimizer steps done, and
the shares of the budget spent training and validating (the budget's own account, stored in the last
checkpoint).

    .venv/bin/python benchmarks/bench_time_to_accuracy.py --out studies/tta --minutes 6 15
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --out studies/tta --data-sets isbi --models unet++
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --out studies/tta --data-sets isbi --models unet++ \
        --no-defaults --variant paper-schedule=train.schedule=paper   # against the defaults' runs
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --smoke --out /tmp/tta-smoke   # plumbing only

Finished runs (an ``evaluation.csv``) are kept: rerunning the command trains only what is missing. The
table is printed and written to ``<out>/table.md``. Run it alone: a second training on the same cores
halves both runs' steps. nnU-Net at the same wall clock is ``bench_nnunet.py`` (in the bench environment).
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetpp.cli import main
from unetpp.data.public import DSB2018
from unetpp.models.provenance import recorded_min_sizes, recorded_tta, recorded_tta_check, summarize_csv
from unetpp.study.runner import RunResult
from unetpp.study.stats import format_p, main_mode, mean_sd, paired, per_image, run_mean, welch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TTA_CSV = "evaluation_tta.csv"  # the held-out scores of predictions averaged over flips (--tta)
KEPT_CSV = "evaluation_all_components.csv"  # one pass, every predicted component kept (--no-postprocess)
ZOOM, CROP = 8, 80  # dsb-large: the centre CROP² of each DSB image, enlarged ZOOM times


@dataclass(frozen=True)
class DataSet:
    folder: Path
    layout: str
    held_out: Callable[[list[str]], list[str]]  # the sorted ids -> the test ids
    files: dict[str, str]  # sub-folder -> the suffix of an id's entry in it ("": the entry is the id itself)
    shared_files: tuple[str, ...] = ()  # copied into both parts (dataset.json)
    prepare: Callable[[], None] | None = None  # writes `folder` first where the benchmark derives the data set

    def ids(self) -> list[str]:
        """The ids, from the first sub-folder (hidden files such as macOS ``._*`` left out)."""
        sub, suffix = next(iter(self.files.items()))
        entries = (p for p in (self.folder / sub).iterdir() if not p.name.startswith("."))
        return sorted(
            p.name.removesuffix(suffix) for p in entries if (p.name.endswith(suffix) if suffix else p.is_dir())
        )


def data_sets(shared: Path, out: Path) -> dict[str, DataSet]:
    def last_fifth(ids: list[str]) -> list[str]:
        return ids[len(ids) - round(0.2 * len(ids)) :]

    def seeded_fifth(ids: list[str]) -> list[str]:
        return sorted(random.Random(0).sample(ids, round(0.2 * len(ids))))

    dsb, large = shared / "dsb2018" / "stage1_train", out / "dsb-large" / "source"
    return {
        "isbi": DataSet(
            shared / "isbi2012-em",
            "isbi2012",
            lambda ids: ["20", "21", "22", "23"],
            {"images": ".png", "labels": ".png"},
        ),
        "dsb": DataSet(dsb, "dsb2018", last_fifth, {"": ""}),
        "hippocampus": DataSet(
            shared / "msd-hippocampus",
            "decathlon",
            seeded_fifth,
            {"imagesTr": ".nii.gz", "labelsTr": ".nii.gz"},
            ("dataset.json",),
        ),
        "dsb-large": DataSet(
            large,
            "folders",
            last_fifth,
            {"images": ".png", "masks": ".png"},
            prepare=lambda: enlarge_dsb(dsb, large),
        ),
    }


def enlarge_dsb(source: Path, folder: Path) -> None:
    """Write ``dsb-large`` (see the module's docstring) into `folder`, unless a finished copy is there."""
    done = folder / "DONE"
    if done.is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    nuclei = DSB2018(source)
    size = (ZOOM * CROP, ZOOM * CROP)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for item in nuclei.items:
        image = Image.open(item.image).convert("RGB")
        mask = Image.fromarray(255 * nuclei.read_mask(item).astype(np.uint8))
        left, top = (image.width - CROP) // 2, (image.height - CROP) // 2
        box = (left, top, left + CROP, top + CROP)
        image.crop(box).resize(size, Image.Resampling.BICUBIC).save(folder / "images" / f"{item.id}.png")
        smooth = np.asarray(mask.crop(box).resize(size, Image.Resampling.BILINEAR)) >= 128
        Image.fromarray(255 * smooth.astype(np.uint8)).save(folder / "masks" / f"{item.id}.png")
    done.write_text(f"DSB 2018 {source}: centre {CROP}x{CROP}, enlarged {ZOOM}x\n")


def split(data: DataSet, out: Path, limit: int | None = None) -> tuple[Path, Path]:
    """``out/train`` and ``out/test``: links to the data set's files, the test ids in the second only.

    `limit`: keep only that many training ids (the smoke run)."""
    if data.prepare is not None:
        data.prepare()
    ids = data.ids()
    test = set(data.held_out(ids))
    train = [i for i in ids if i not in test][:limit]
    parts = {"train": out / "train", "test": out / "test"}
    shutil.rmtree(out, ignore_errors=True)
    for part, members in (("train", train), ("test", sorted(test))):
        for ident in members:
            for sub, suffix in data.files.items():
                link = parts[part] / sub / f"{ident}{suffix}"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(data.folder / sub / f"{ident}{suffix}")
        for name in data.shared_files:
            shutil.copy(data.folder / name, parts[part] / name)
    return parts["train"], parts["test"]


def run_one(
    run: Path,
    train: Path,
    test: Path,
    layout: str,
    model: str,
    minutes: float,
    seed: int,
    smoke: bool,
    settings: Sequence[str] = (),
    tta: bool = False,
) -> None:
    """Train (a user's first run: no option but the budget and the model, and a variant's `settings`) and
    evaluate on the held-out part in one pass; also averaged over flips (``evaluation_tta.csv``) with `tta` or
    where training chose flips, and with every component kept (``evaluation_all_components.csv``) where training
    chose to remove small ones."""
    evaluation = run / "evaluation.csv"
    best = run / "checkpoints" / "best.ckpt"
    if not evaluation.is_file() and not best.is_file():
        shutil.rmtree(run, ignore_errors=True)
        budget = ["--epochs", "1"] if smoke else ["--minutes", f"{minutes:g}"]
        settings = [*(["train.steps_per_epoch=2", "train.progress=false"] if smoke else []), *settings]
        argv = ["train", "--data", str(train), "--layout", layout, "--run-dir", str(run), "--model", model]
        if settings:
            budget += ["--set", *settings]
        if main([*argv, "--seed", str(seed), *budget]) != 0:
            raise SystemExit(f"unetpp train failed for {run}")
    if not evaluation.is_file():
        evaluate(run, test, layout, evaluation, ["--no-tta"])
    if (tta or recorded_tta(best)) and not (run / TTA_CSV).is_file():
        evaluate(run, test, layout, run / TTA_CSV, ["--tta"])
    if recorded_min_sizes(best) and not (run / KEPT_CSV).is_file():
        evaluate(run, test, layout, run / KEPT_CSV, ["--no-tta", "--no-postprocess"])


def evaluate(run: Path, test: Path, layout: str, out: Path, options: Sequence[str] = ()) -> None:
    """``unetpp evaluate`` of the run's best checkpoint on the held-out part, into `out`."""
    argv = ["evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--data", str(test)]
    if main([*argv, "--layout", layout, "--no-hd95", *options, "--out", str(out)]) != 0:
        raise SystemExit(f"unetpp evaluate failed for {run}")


def budget_account(run: Path) -> dict:
    """The optimizer steps and the wall-clock budget's account, from the run's last checkpoint."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    account = ckpt.get("callbacks", {}).get("WallClockBudget", {})
    return {"steps": ckpt["global_step"], **account}


def rows(run: Path, name: str, budget: str, model: str, seed: int) -> list[str]:
    modes = summarize_csv(run / "evaluation.csv", "evaluate")["modes"]
    flipped = summarize_csv(run / TTA_CSV, "evaluate")["modes"] if (run / TTA_CSV).is_file() else {}
    kept = summarize_csv(run / KEPT_CSV, "evaluate")["modes"] if (run / KEPT_CSV).is_file() else {}
    sizes = recorded_min_sizes(run / "checkpoints" / "best.ckpt")
    account = budget_account(run)
    check = recorded_tta_check(run / "checkpoints" / "best.ckpt")
    chosen = f"{'yes' if check['use'] else 'no'} ({100 * (check['iou_tta'] - check['iou']):+.2f})" if check else "-"
    shares = [account.get("training_share"), account.get("validating_share")]
    train_pct, val_pct = (f"{100 * s:.1f}" if s is not None else "-" for s in shares)
    validations = "-" if account.get("validations") is None else int(account["validations"])  # no budget: none
    # one head: its only mode, the mean over classes (its per-class rows, "head3 class 2", are not the score)
    wanted = [m for m in ("ensemble", "chosen") if m in modes] or sorted(m for m in modes if " class " not in m)[-1:]
    lines = []
    for mode in wanted:
        iou, dice = (100 * modes[mode][metric][0] for metric in ("iou", "dice"))
        label = {"ensemble": f"{model} (plain mean)", "chosen": f"{model} (chosen heads)"}.get(mode, model)
        flips = f"{100 * flipped[mode]['dice'][0]:.2f}" if mode in flipped else "-"
        all_kept = f"{100 * kept[mode]['iou'][0]:.2f} (under {list(sizes)} removed)" if mode in kept else "-"
        lines.append(
            f"| {name} | {budget} | {label} | {seed} | {iou:.2f} | {dice:.2f} | {flips} | {chosen} | {all_kept} "
            f"| {account['steps']} | {train_pct} | {val_pct} | {validations} |"
        )
    return lines


def result(run: Path, file: str = "evaluation.csv") -> RunResult:
    """A run's held-out scores as the study's statistics read a finished run (``evaluation.csv`` has its columns)."""
    with (run / file).open(newline="") as f:
        scores = [{**row, **{m: float(row[m]) for m in ("iou", "dice", "hd95")}} for row in csv.DictReader(f)]
    return RunResult(run.parent.name, int(run.name.removeprefix("seed")), run, {}, scores, [])


def scored_modes(run: RunResult) -> list[str]:
    """The modes a run is compared in: UNet++'s plain mean and chosen heads (the chosen last); one head: that head."""
    held = {r["mode"] for r in run.scores}
    return [m for m in ("ensemble", "chosen") if m in held] or [main_mode(run)]


def comparison(runs: dict[str, list[Path]], pairs: list[tuple[str, str]]) -> list[str]:
    """Each arm against its reference at one budget (UNet++ against U-Net: the issue's equal-wall-clock test; a
    variant against the same model's defaults), mode by mode, and UNet++'s chosen heads against its plain mean.

    Over seeds: mean +- s.d. of the runs' mean test IoU and Welch's t-test; over test images: each image's IoU
    averaged over seeds, paired t-test (the paper's Table IV tests, :mod:`unetpp.study.stats`)."""
    results = {arm: [result(r) for r in paths] for arm, paths in runs.items()}

    def modes(arm: str) -> list[str]:
        return scored_modes(results[arm][0])

    lines = []
    for arm, reference in pairs:
        for mode in modes(arm):
            base_mode = mode if mode in modes(reference) else modes(reference)[0]
            means = [run_mean(r, mode) for r in results[arm]]
            base_means = [run_mean(r, base_mode) for r in results[reference]]
            images, base_images = per_image(results[arm], mode), per_image(results[reference], base_mode)
            common = sorted(set(images) & set(base_images))
            p_images = paired([images[i] for i in common], [base_images[i] for i in common])
            (m, sd), (bm, bsd) = mean_sd(means), mean_sd(base_means)
            label = arm if len(modes(arm)) == 1 else f"{arm} {mode}"
            lines.append(
                f"{label} {100 * m:.2f} +- {100 * sd:.2f} vs {reference} {100 * bm:.2f} +- {100 * bsd:.2f} IoU "
                f"({len(means)} vs {len(base_means)} seeds): Welch p = {format_p(welch(means, base_means)[1])}, "
                f"paired over {len(common)} test images p = {format_p(p_images)}"
            )
    for arm, paths in runs.items():
        with_kept = [r for r in paths if (r / KEPT_CSV).is_file()]
        if with_kept:
            mode = scored_modes(results[arm][0])[-1]
            after, before = (
                per_image([result(r) for r in with_kept], mode),
                per_image([result(r, KEPT_CSV) for r in with_kept], mode),
            )
            common = sorted(set(after) & set(before))
            gain = 100 * (np.mean([after[i] for i in common]) - np.mean([before[i] for i in common]))
            p_gain = paired([after[i] for i in common], [before[i] for i in common])
            lines.append(
                f"{arm} {mode}, small components removed minus all kept ({len(with_kept)} of {len(paths)} seeds "
                f"chose a size): {gain:+.2f} IoU, paired over {len(common)} test images p = {format_p(p_gain)}"
            )
    for arm, held in results.items():
        if modes(arm) == ["ensemble", "chosen"]:
            gains = ", ".join(f"{100 * (run_mean(r, 'chosen') - run_mean(r, 'ensemble')):+.2f}" for r in held)
            lines.append(f"{arm} chosen heads minus plain mean, per seed: {gains} IoU points")
    return lines


def variant(text: str) -> tuple[str, list[str]]:
    """``NAME=KEY=VALUE[,KEY=VALUE...]`` -> the name and the ``--set`` items of a variant arm."""
    name, _, settings = text.partition("=")
    if not name or "=" not in settings:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=KEY=VALUE[,KEY=VALUE], e.g. paper=train.schedule=paper")
    return name, re.split(r",(?![^\[]*\])", settings)  # commas inside [...] belong to a list value


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    names = ["isbi", "dsb", "hippocampus"]
    p.add_argument("--data-sets", nargs="+", default=names, choices=[*names, "dsb-large"])
    p.add_argument("--models", nargs="+", default=["unet", "unet++"])
    p.add_argument("--minutes", nargs="+", type=float, default=[6.0, 15.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    p.add_argument(
        "--variant",
        type=variant,
        action="append",
        default=[],
        help="an arm with settings beyond the defaults, compared with the same model's defaults: "
        "NAME=KEY=VALUE[,KEY=VALUE] (e.g. paper-schedule=train.schedule=paper); repeatable",
    )
    p.add_argument("--no-defaults", action="store_true", help="run only the --variant arms (their references exist)")
    p.add_argument(
        "--tta", action="store_true", help=f"also evaluate with flips (evaluate --tta, as nnU-Net predicts): {TTA_CSV}"
    )
    p.add_argument("--smoke", action="store_true", help="8 training images, 2 steps: checks the plumbing only")
    args = p.parse_args()
    arms = [] if args.no_defaults else [(m, m, []) for m in args.models]
    arms += [(f"{m}+{name}", m, settings) for m in args.models for name, settings in args.variant]
    pairs = [(m, "unet") for m in args.models if m != "unet"] + [(arm, m) for arm, m, s in arms if s]
    sets = data_sets(args.shared, args.out)
    lines = [
        "| data set | budget | model | seed | test IoU % | Dice % | Dice % with flips | flips chosen (val. IoU gain) "
        "| IoU % with every component | steps | training % | validating % | validations |",
        "|---|---|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    tests = []
    for name in args.data_sets:
        train, test = split(sets[name], args.out / name / "split", 8 if args.smoke else None)
        for minutes in [0.0] if args.smoke else args.minutes:
            budget = "1 epoch of 2 steps" if args.smoke else f"{minutes:g} min"
            runs: dict[str, list[Path]] = defaultdict(list)
            for seed in args.seeds:  # seeds outside: a sweep cut short has every arm at the same seeds
                for arm, model, settings in arms:
                    run = args.out / name / budget.replace(" ", "_") / arm / f"seed{seed}"
                    run_one(run, train, test, sets[name].layout, model, minutes, seed, args.smoke, settings, args.tta)
                    runs[arm].append(run)
            for arm, *_ in arms:
                for seed, run in zip(args.seeds, runs[arm], strict=True):
                    lines += rows(run, name, budget, arm, seed)
            for model in set(args.models) - set(runs):  # defaults run by an earlier command are references too
                for seed in args.seeds:
                    run = args.out / name / budget.replace(" ", "_") / model / f"seed{seed}"
                    if (run / "evaluation.csv").is_file():
                        runs[model].append(run)
            held = [(a, r) for a, r in pairs if runs.get(a) and runs.get(r)]
            tests += [f"- {name}, {budget}: {line}" for line in comparison(runs, held)]
    text = "\n".join(lines + [""] + tests)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    cli()
