"""Train and score every (model, seed) of a study, resumably, in parts that never overlap.

Each run is an ordinary run folder ``<out>/runs/<model-slug>/seed<k>/`` trained with
:func:`unetpp.engine.train.fit`. A run is *finished* when its ``scores.csv`` exists (written
last); one with ``checkpoints/last.ckpt`` but no scores was interrupted and resumes from it; one
without a checkpoint starts afresh. So a study that is killed, or extended with more seeds or
models, trains only what is missing. ``part=(k, n)`` takes every n-th run starting at the k-th
of a fixed order, so n processes (or GPUs, or nodes) launched with parts 1/n .. n/n share the work
and never train the same run.

Per run it writes, beside the checkpoints: ``timing.json`` (seconds and epochs of each training
session), ``run.json`` (epochs, seconds, s/epoch, patches/s), ``objects.csv`` (every ground-truth
object's size and scores, for Fig. 7), ``overlays/`` and ``scores.csv`` (per image and mode:
every head and the ensemble).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import ConfigError
from ..utils.atomic import atomic_write, check_folder
from ..utils.sharding import take_part
from . import testset
from .spec import ModelSpec, StudySpec

log = logging.getLogger(__name__)

OVERLAYS_PER_RUN = 2


@dataclass(frozen=True)
class Run:
    model: ModelSpec
    seed: int

    def folder(self, out: Path) -> Path:
        return Path(out) / "runs" / self.model.slug / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.model} seed {self.seed}"


def runs_of(spec: StudySpec) -> list[Run]:
    """Every run of the study in a fixed order: seed by seed, every model within a seed.

    A study stopped part-way (the session's time, a killed job) then holds every model at the seeds
    it finished, a fair comparison so far, rather than all seeds of the first models and none of the last.
    """
    return [Run(m, s) for s in sorted(spec.seeds) for m in spec.model_specs()]


def is_finished(folder: Path) -> bool:
    return (folder / "scores.csv").is_file()


def open_study(spec: StudySpec, out: Path) -> StudySpec:
    """Check `spec` against a study already in `out` (same data, budget and test set); saves nothing.

    Returns:
        `spec` with its precision fixed (:meth:`StudySpec.with_precision`): the saved study's, or this machine's.

    Raises:
        ConfigError: the folder holds a study with other run-defining settings (one line, naming the field).
    """
    out = check_folder(out, ConfigError)  # a file, or a folder that cannot be written: one line, now
    saved = StudySpec.saved_in(out)
    spec = spec.with_precision(saved)
    if saved is not None:
        problem = spec.clash(saved)
        if problem:
            raise ConfigError(
                f"{out}: {problem}; finished runs would not be comparable. Use the saved setting or another --out"
            )
    elif out.exists() and any(p.name != "study.yaml" for p in out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty and holds no study.yaml; choose a new or empty --out")
    return spec


def _first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found = _first_difference(x, y, f"{prefix}{key}.")
            if found:
                return found
        elif x != y:
            return f"{prefix}{key} is {x!r} in the run but {y!r} in this study"
    return None


def check_runs(spec: StudySpec, out: Path, train_ids: list[str] | None) -> None:
    """Every existing run folder must hold the config this study would give it (seed, budget, model...).

    Raises:
        ConfigError: a run's ``config.yaml`` clashes (names the file and the first differing field).
    """
    import yaml

    for run in runs_of(spec):
        path = run.folder(out) / "config.yaml"
        if not path.is_file():
            continue
        saved = RunConfig.from_dict(yaml.safe_load(path.read_text()) or {}).to_dict()
        wanted = spec.run_config(run.model, run.seed, train_ids).to_dict()
        problem = _first_difference(saved, wanted)
        if problem:
            raise ConfigError(f"{path}: {problem}; use the study's saved settings or another --out")


def check_models(spec: StudySpec, train_ids: list[str] | None) -> None:
    """Build every run's config and model on the meta device (no memory): a bad model fails before a file is written.

    Raises:
        ConfigError: a config or model of the study that cannot be built (one line naming the model).
    """
    from ..models import build_model

    for run in runs_of(spec):
        kw = {**spec.run_config(run.model, run.seed, train_ids).model.build_kwargs(), "encoder_weights": None}
        try:
            with torch.device("meta"):
                build_model(**kw)
        except (ConfigError, TypeError, ValueError) as e:
            raise ConfigError(f"model {str(run.model)!r}: {e}") from None


def _epochs_done(folder: Path) -> int:
    from ..utils.run_metrics import read_run_metrics

    return len({epoch for epoch, _ in read_run_metrics(folder).get("train/loss", [])})


def _write_json(path: Path, data: object) -> None:
    text = json.dumps(data, indent=1)
    atomic_write(path, lambda p: p.write_text(text), overwrite=True, error=ConfigError)


def train(spec: StudySpec, run: Run, folder: Path, train_ids: list[str] | None) -> Path:
    """Train (or resume) one run; each session's seconds and epochs go to ``timing.json``."""
    from ..engine.train import fit

    last = folder / "checkpoints" / "last.ckpt"
    if folder.exists() and not last.is_file():
        # killed before its first checkpoint: nothing worth keeping, and fit refuses a used folder
        shutil.rmtree(folder)
    resume = last.is_file()
    cfg = spec.run_config(run.model, run.seed, train_ids)
    timing_path = folder / "timing.json"
    sessions = json.loads(timing_path.read_text()) if timing_path.is_file() else []
    before = _epochs_done(folder) if resume else 0
    start = time.perf_counter()
    log.info("%s %s -> %s", "resuming" if resume else "training", run, folder)
    try:
        return fit(cfg, folder, resume=resume)
    finally:
        if folder.is_dir():
            sessions.append({"epochs": [before, _epochs_done(folder)], "seconds": time.perf_counter() - start})
            _write_json(timing_path, sessions)


def _training_info(cfg: RunConfig, folder: Path) -> dict:
    """Epochs, wall-clock seconds, seconds per epoch and training patches per second of a run."""
    sessions = json.loads((folder / "timing.json").read_text())
    seconds = sum(s["seconds"] for s in sessions)
    epochs = _epochs_done(folder)
    timed = sum(s["epochs"][1] - s["epochs"][0] for s in sessions)
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    steps = int(last.get("global_step", 0))
    return {
        "epochs": epochs,
        "seconds": seconds,
        "seconds_per_epoch": seconds / timed if timed else None,
        "patches_per_second": steps * cfg.data.batch_size / seconds if seconds else None,
        "all_sessions_timed": timed == epochs,  # False if a session was killed before it could log its time
        "sessions": len(sessions),
    }


def _main_mode(modes: Sequence[str]) -> str:
    """The mode a model is compared by: the ensemble when it has several heads, else its only head."""
    return "ensemble" if "ensemble" in modes else modes[-1]


def _middle_slice(x: torch.Tensor) -> torch.Tensor:
    """A 2D view ``(C, H, W)`` of ``(C, *spatial)``: the middle slice of a volume along its first axis."""
    return x if x.ndim == 3 else x[:, x.shape[1] // 2]


def score(spec: StudySpec, run: Run, folder: Path, best: Path, test: Sequence[dict]) -> None:
    """Score the best checkpoint on the test set: per-image rows of every head and the ensemble,
    objects by size (binary masks), overlays; then ``run.json`` and, last, ``scores.csv``."""
    from ..data.overlay import overlay, save_png
    from ..evaluation.semantic import evaluate
    from ..inference import PredictOptions, Predictor
    from ..metrics import masks_from_labels, masks_from_probs, object_scores
    from ..models import load
    from ..models.provenance import recorded_ensemble_heads

    model = load(best)
    chosen = recorded_ensemble_heads(best)
    # multi-class: "<mode> class <c>" rows too; "chosen" where training kept fewer heads than all
    rows = evaluate(model, test, with_hd95=spec.hd95, per_class=True, ensemble_heads=chosen)
    mode = _main_mode([m for m in dict.fromkeys(r.mode for r in rows) if " class " not in m])
    objects: list[list] = []
    # the mode the report compares by: the paper's plain mean (the "chosen" rows sit beside it)
    predictor = Predictor(model, PredictOptions(head=None if mode == "ensemble" else int(mode[4:]), ensemble="mean"))
    for k, sample in enumerate(test):
        probs = predictor(sample["image"])
        pred = masks_from_probs(probs[None])
        truth = masks_from_labels(sample["mask"][None], model.classes)
        if model.classes == 1:
            obj = object_scores(pred, truth)
            objects += [
                [str(sample["id"]), mode, j, float(s), float(i), float(d)]
                for j, (s, i, d) in enumerate(zip(obj.size.tolist(), obj.iou.tolist(), obj.dice.tolist(), strict=True))
            ]
        if k < OVERLAYS_PER_RUN:
            labels = pred[0, 0].long() if model.classes == 1 else pred[0].float().argmax(0)
            picture = overlay(
                _middle_slice(sample["image"]).numpy(),
                _middle_slice(labels[None])[0].numpy(),
                _middle_slice(sample["mask"])[0].numpy(),
            )
            save_png(picture, folder / "overlays" / f"{sample['id']}.png")
    cfg = spec.run_config(run.model, run.seed, None)
    info = {
        "model": str(run.model),
        "seed": run.seed,
        "checkpoint": best.name,
        "main_mode": mode,
        "params": sum(p.numel() for p in model.parameters()),
        "ensemble_heads": None if chosen is None else list(chosen),  # the heads of mode "chosen"
    }
    _write_json(folder / "run.json", {**info, **_training_info(cfg, folder)})
    _write_csv(folder / "objects.csv", ["image", "mode", "object", "size", "iou", "dice"], objects)
    _write_csv(
        folder / "scores.csv",
        ["image", "mode", "iou", "dice", "hd95"],
        [[r.image, r.mode, r.iou, r.dice, r.hd95] for r in rows],
    )


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    atomic_write(path, write, overwrite=True, error=ConfigError)


def run_study(spec: StudySpec, out: str | Path, *, part: tuple[int, int] | None = None) -> list[Run]:
    """Train and score the runs of `spec` (or of its part) that are not finished; returns those trained.

    Raises:
        ConfigError: a clash with a study or runs already in `out`, a bad test set, a bad model.
    """
    out = Path(out)
    spec = open_study(spec, out)
    train_ids, test = testset.split(spec)  # a missing data folder or bad test ids fail before anything is saved
    check_models(spec, train_ids)  # as would a bad model spec (widths that do not fit the depth...)
    spec.save(out)
    check_runs(spec, out, train_ids)
    mine = [r for r in take_part(runs_of(spec), part) if not is_finished(r.folder(out))]
    for k, run in enumerate(mine, 1):
        log.info("[%d/%d] %s", k, len(mine), run)
        folder = run.folder(out)
        best = train(spec, run, folder, train_ids)
        score(spec, run, folder, best, test)
    return mine


@dataclass
class RunResult:
    """A finished run as read back from its folder."""

    model: str
    seed: int
    folder: Path
    info: dict
    scores: list[dict]  # image, mode, iou, dice, hd95
    objects: list[dict]  # image, mode, object, size, iou, dice

    def to_dict(self) -> dict:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: (v if k in ("image", "mode") else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def load_results(spec: StudySpec, out: str | Path) -> tuple[list[RunResult], list[Run]]:
    """The finished runs of the study, and the runs still missing."""
    done, missing = [], []
    for run in runs_of(spec):
        folder = run.folder(Path(out))
        if not is_finished(folder):
            missing.append(run)
            continue
        info = json.loads((folder / "run.json").read_text())
        objects = _read_csv(folder / "objects.csv") if (folder / "objects.csv").is_file() else []
        done.append(RunResult(str(run.model), run.seed, folder, info, _read_csv(folder / "scores.csv"), objects))
    return done, missing
