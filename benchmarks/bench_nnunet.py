"""nnU-Net v2 at the same wall clock (issue 19): the peer beside ``bench_time_to_accuracy.py``'s table.

Run it in the bench environment (``bash benchmarks/setup_bench_env.sh``), alone on the machine:

    .bench-venv/bin/python benchmarks/bench_nnunet.py --out /work/bench-out/nnunet --data-sets hippocampus \
        --minutes 6 15 60

What a user of nnU-Net does, with its defaults, on the split ``bench_time_to_accuracy.py`` uses (same test
cases, imported from it):

1. the training part in nnU-Net's raw format (links, or label PNGs rewritten as 0/1; DSB's images as RGB and its
   nuclei as their union, as unetpp's ``dsb2018`` layout reads them) and a ``dataset.json``;
2. ``nnUNetv2_plan_and_preprocess -d ID -c CONFIG`` (2d for ISBI and DSB 2018, 3d_fullres for the hippocampus);
3. ``nnUNetv2_train ID CONFIG 0 -device cpu``, stopped at the largest deadline. The clock starts before
   step 2, as unetpp's ``--minutes`` counts its own set-up. nnU-Net keeps only ``checkpoint_best.pth``
   before its 50th epoch; a watcher copies it each time it changes, named by the minute it appeared, so
   one run gives the checkpoint a run stopped at each deadline would have had (nnU-Net's schedule counts
   epochs, not the deadline, so stopping earlier changes nothing before the stop);
4. per deadline: ``nnUNetv2_predict`` (default settings: mirroring on) with the last snapshot before it,
   scored on the held-out cases by the same IoU/Dice as ``unetpp evaluate`` (mean over foreground classes).

No snapshot before a deadline is a cell of its own: nnU-Net has no model yet. The table goes to
``<out>/table.md``; the training log stays in nnU-Net's results folder; each deadline's per-case scores go to
``<out>/<data set>/predictions/<budget>/seed0/evaluation.csv`` (``unetpp evaluate``'s columns). With
``--against <bench_time_to_accuracy.py's --out>``, each unetpp arm and budget found there is set against nnU-Net
at each deadline: Dice per test case (averaged over the arm's seeds), paired t-test and the 95% interval of the
difference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from bench_time_to_accuracy import SHARED, TTA_CSV, DataSet, data_sets, result, scored_modes, split
from scipy.stats import ttest_rel

from unetpp.data.io import stem
from unetpp.data.public import DSB2018
from unetpp.evaluation.semantic import Row, write_csv
from unetpp.napari.compare import scores
from unetpp.study.stats import format_p, per_image

EPOCH_ITERATIONS = 250  # nnU-Net's fixed epoch
NNUNET = {  # our name -> (dataset id, nnU-Net configuration, classes as unetpp counts them)
    "isbi": (901, "2d", 1),
    "dsb": (902, "2d", 1),
    "hippocampus": (903, "3d_fullres", 3),
}


def dsb_nuclei(case: Path) -> np.ndarray:
    """A DSB 2018 case's semantic mask (1 = nucleus), read by unetpp's own ``dsb2018`` reader."""
    data = DSB2018(case.parent, ids=[case.name], cache=False)
    return data.read_mask(data.items[0]).astype(np.uint8)


def dsb_to_raw(train: Path, test: Path, folder: Path) -> None:
    """DSB 2018 (one folder per id, RGBA images, one PNG per nucleus) as RGB PNGs and 0/1 label PNGs."""
    from PIL import Image

    for part, source in (("Tr", train), ("Ts", test)):
        for case in sorted(p for p in source.iterdir() if p.is_dir()):
            image = folder / f"images{part}" / f"{case.name}_0000.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.open(case / "images" / f"{case.name}.png").convert("RGB").save(image)  # unetpp reads RGB too
            if part == "Tr":
                label = folder / "labelsTr" / f"{case.name}.png"
                label.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(dsb_nuclei(case)).save(label)


def to_raw(name: str, train: Path, test: Path, raw: Path) -> tuple[Path, Path]:
    """The training part as ``Dataset<ID>_<name>`` (imagesTr/labelsTr) and the test images as imagesTs."""
    folder = raw / f"Dataset{NNUNET[name][0]}_{name}"
    shutil.rmtree(folder, ignore_errors=True)
    ending = ".nii.gz" if name == "hippocampus" else ".png"
    if name == "dsb":
        labels = {"background": 0, "nucleus": 1}
        channels = {"0": "R", "1": "G", "2": "B"}  # one RGB file per case (nnU-Net's NaturalImage2DIO)
        dsb_to_raw(train, test, folder)
    elif name == "hippocampus":
        labels = {"background": 0, "anterior": 1, "posterior": 2}
        channels = {"0": "MRI"}
        linked_to_raw(train, test, folder, ending, ("imagesTr", "labelsTr"))
    else:
        labels = {"background": 0, "cell": 1}  # 255 = cell interior, as unetpp's isbi2012 layout reads it
        channels = {"0": "EM"}
        linked_to_raw(train, test, folder, ending, ("images", "labels"))
    cases = len(list((folder / "imagesTr").iterdir()))
    meta = {"channel_names": channels, "labels": labels, "numTraining": cases, "file_ending": ending}
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
    return folder, folder / "imagesTs"


def linked_to_raw(train: Path, test: Path, folder: Path, ending: str, subfolders: tuple[str, str]) -> None:
    """Images and labels in two sub-folders (ISBI, the MSD): links, label PNGs rewritten as 0/1."""
    image_dir, label_dir = subfolders
    for part, source in (("Tr", train), ("Ts", test)):
        for image in sorted((source / image_dir).glob(f"*{ending}")):
            case = image.name.removesuffix(ending)
            link = folder / f"images{part}" / f"{case}_0000{ending}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(image.resolve())
            if part == "Tr":
                label = folder / "labelsTr" / f"{case}{ending}"
                label.parent.mkdir(parents=True, exist_ok=True)
                if ending == ".png":  # nnU-Net wants the class numbers, not 0/255
                    from PIL import Image

                    mask = np.asarray(Image.open(source / label_dir / image.name)) > 127
                    Image.fromarray(mask.astype(np.uint8)).save(label)
                else:
                    label.symlink_to((source / label_dir / image.name).resolve())


def watch(best: Path, snapshots: Path, start: float, stop: threading.Event) -> None:
    """Copy ``checkpoint_best.pth`` each time it changes, once its writer is done (size stable for 2 s)."""
    seen = None
    while not stop.wait(2.0):
        if not best.is_file():
            continue
        stat = best.stat()
        if (stat.st_mtime, stat.st_size) == seen:
            continue
        time.sleep(2.0)
        again = best.stat()
        if (again.st_mtime, again.st_size) != (stat.st_mtime, stat.st_size):
            continue  # still being written: look again next round
        seen = (again.st_mtime, again.st_size)
        shutil.copy(best, snapshots / f"snapshot_{(again.st_mtime - start) / 60:07.3f}min.pth")


def snapshot_minute(path: Path) -> float:
    """The minute of the clock a snapshot's checkpoint appeared at (``snapshot_<minute>min.pth``)."""
    return float(path.stem.removeprefix("snapshot_").removesuffix("min"))


def run(cmd: list[str], env: dict, log: Path, deadline: float | None = None) -> int:
    """Run an nnU-Net command (its own process group), killed at the monotonic `deadline`."""
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(None if deadline is None else max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return -signal.SIGTERM


def score(name: str, predictions: Path, test: Path) -> list[tuple[str, float, float]]:
    """Each test case's IoU and Dice, as ``unetpp evaluate`` computes them (mean over foreground classes)."""
    classes = NNUNET[name][2]
    cases = []
    for predicted in sorted(p for p in predictions.iterdir() if p.name.endswith((".nii.gz", ".png"))):
        if name == "hippocampus":
            import nibabel as nib

            pred = np.asarray(nib.load(predicted).dataobj)
            truth = np.asarray(nib.load(test / "labelsTr" / predicted.name).dataobj)
        elif name == "dsb":
            from PIL import Image

            pred = np.asarray(Image.open(predicted))
            truth = dsb_nuclei(test / stem(predicted))
        else:
            from PIL import Image

            pred = np.asarray(Image.open(predicted))
            truth = (np.asarray(Image.open(test / "labels" / predicted.name)) > 127).astype(np.uint8)
        cases.append((stem(predicted), *scores(pred.astype(np.int64), truth.astype(np.int64), classes)))
    return cases


def write_evaluation(cases: list[tuple[str, float, float]], path: Path) -> None:
    """The per-case scores through ``unetpp evaluate``'s writer (mode ``nnunet``, no HD95), for the paired tests."""
    write_csv([Row(case, "nnunet", iou, dice, math.nan) for case, iou, dice in cases], path, overwrite=True)


def against_unetpp(name: str, budget: str, nnunet: Path, runs: Path) -> list[str]:
    """nnU-Net at one deadline against each unetpp arm and budget under `runs` (``bench_time_to_accuracy.py``'s
    ``--out``), evaluated as is and, where it was (``--tta``), with flips as nnU-Net predicts: Dice per test case,
    each case averaged over the arm's seeds, paired t-test."""
    theirs = per_image([result(nnunet.parent)], "nnunet", "dice")
    lines = []
    for arm in sorted({p.parent.parent for p in (runs / name).glob("*/*/seed*/evaluation.csv")}):
        for file, how in (("evaluation.csv", ""), (TTA_CSV, " with flips")):
            results = [result(p.parent, file) for p in sorted(arm.glob(f"seed*/{file}"))]
            if not results:
                continue
            mode = scored_modes(results[0])[-1]
            ours = per_image(results, mode, "dice")
            common = sorted(set(ours) & set(theirs))
            if not common:
                continue
            test = ttest_rel([ours[c] for c in common], [theirs[c] for c in common])
            low, high = test.confidence_interval(0.95)  # "at least as good": the interval's lower end
            diff = np.mean([ours[c] - theirs[c] for c in common])
            better = sum(ours[c] > theirs[c] for c in common)
            lines.append(
                f"- {name}: unetpp {arm.name} {arm.parent.name.replace('_', ' ')}{how} ({len(results)} seeds, {mode}) "
                f"minus nnU-Net {budget}: {100 * diff:+.2f} Dice (95% CI {100 * low:+.2f} to {100 * high:+.2f}) over "
                f"{len(common)} test cases, better on {better}, paired p = {format_p(test.pvalue)}"
            )
    return lines


def epoch_ends(fold: Path) -> list[float]:
    """When each finished epoch ended (POSIX seconds), from the time stamps of nnU-Net's training log."""
    ends = []
    for log in sorted(fold.glob("training_log_*.txt")):
        for line in log.read_text().splitlines():
            stamp, _, text = line.partition(": ")
            if text.startswith("Epoch time:"):
                ends.append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp())
    return ends


def bench(name: str, data: DataSet, out: Path, minutes: list[float], runs: Path | None) -> list[str]:
    ident, config, _ = NNUNET[name]
    work = out / name
    train, test = split(data, work / "split")
    env = {
        **os.environ,
        "nnUNet_raw": str(work / "raw"),
        "nnUNet_preprocessed": str(work / "preprocessed"),
        "nnUNet_results": str(work / "results"),
    }
    folder, images_test = to_raw(name, train, test, work / "raw")
    bin_dir = Path(sys.executable).parent
    log = work / "nnunet.log"
    fold = work / "results" / folder.name / f"nnUNetTrainer__nnUNetPlans__{config}" / "fold_0"
    snapshots = work / "snapshots"
    if not (work / "trained.json").is_file():
        for path in (work / "preprocessed", work / "results", snapshots, log):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        snapshots.mkdir(parents=True)
        start_wall, start = time.time(), time.monotonic()
        deadline = start + 60 * max(minutes)
        plan = [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(ident), "-c", config]
        if run([*plan, "--verify_dataset_integrity"], env, log) != 0:
            raise SystemExit(f"nnUNetv2_plan_and_preprocess failed: see {log}")
        setup = time.monotonic() - start
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(fold / "checkpoint_best.pth", snapshots, start_wall, stop))
        fold.mkdir(parents=True, exist_ok=True)
        watcher.start()
        code = run([str(bin_dir / "nnUNetv2_train"), str(ident), config, "0", "-device", "cpu"], env, log, deadline)
        time.sleep(5.0)  # a checkpoint written just before the stop
        stop.set()
        watcher.join()
        ends = [(t - start_wall) / 60 for t in epoch_ends(fold)]
        summary = {"setup_s": setup, "exit": code, "epoch_ends_min": ends}
        (work / "trained.json").write_text(json.dumps(summary))
    summary = json.loads((work / "trained.json").read_text())
    lines, tests = [], [""]
    for limit in minutes:
        taken = [p for p in sorted(snapshots.glob("snapshot_*.pth")) if snapshot_minute(p) <= limit]
        budget = f"{limit:g} min"
        if not taken:
            row = f"| {name} | {budget} | nnU-Net v2 {config} | none yet | - | - | 0 | {summary['setup_s']:.0f} |"
            lines.append(row)
            continue
        chosen = taken[-1]
        at = snapshot_minute(chosen)
        predictions = work / "predictions" / budget.replace(" ", "_")
        if not (predictions / "done").is_file():
            shutil.rmtree(predictions, ignore_errors=True)
            shutil.copy(chosen, fold / chosen.name)
            predict = [str(bin_dir / "nnUNetv2_predict"), "-i", str(images_test), "-o", str(predictions)]
            predict += ["-d", str(ident), "-c", config, "-f", "0", "-chk", chosen.name, "-device", "cpu"]
            if run(predict, env, log) != 0:
                raise SystemExit(f"nnUNetv2_predict failed: see {log}")
            (predictions / "done").touch()
        cases = score(name, predictions, test)
        write_evaluation(cases, predictions / "seed0" / "evaluation.csv")
        iou, dice = (float(np.mean([c[k] for c in cases])) for k in (1, 2))
        epochs = sum(end <= at for end in summary["epoch_ends_min"])
        lines.append(
            f"| {name} | {budget} | nnU-Net v2 {config} | best at {at:.1f} min | {100 * iou:.2f} | {100 * dice:.2f} "
            f"| {epochs * EPOCH_ITERATIONS} | {summary['setup_s']:.0f} |"
        )
        if runs is not None:
            tests += against_unetpp(name, budget, predictions / "seed0" / "evaluation.csv", runs)
    lines += tests
    ends = ", ".join(f"{m:.1f}" for m in summary["epoch_ends_min"])
    lines.append(f"\n{name}: nnU-Net's epochs ({EPOCH_ITERATIONS} iterations each) ended at minutes [{ends}]\n")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-sets", nargs="+", default=["hippocampus"], choices=sorted(NNUNET))
    p.add_argument("--minutes", nargs="+", type=float, default=[6.0, 15.0, 60.0])
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    p.add_argument("--against", type=Path, help="bench_time_to_accuracy.py's --out: paired tests against its runs")
    args = p.parse_args()
    sets = data_sets(args.shared, args.out)
    lines = [
        "| data set | budget | model | checkpoint | test IoU % | Dice % | iterations | set-up s |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for name in args.data_sets:
        lines += bench(name, sets[name], args.out, sorted(args.minutes), args.against)
    text = "\n".join(lines)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
