"""What a model file, and the run folder around it, record about how the model came to be.

A model card (:mod:`unetpp.models.card`) and ``config.json`` of :func:`unetpp.save_pretrained` are
written from this record, so that a shared model says what it was trained on and how well it did.
Everything is read, never guessed; what a file does not record is left out:

- ``preprocessing``: channels, normalisation (with CT statistics), target spacing, mask threshold: a
  training checkpoint's model header, a pruned ``.pt`` (``unetpp prune`` carries it over), an exported
  ``.onnx`` / ``.safetensors`` (``unetpp export`` carries it, with the ensemble heads), or a pretrained
  folder's ``config.json``;
- ``training``: for a run's ``checkpoints/*.ckpt``, the run folder's ``config.yaml`` (data set and
  settings), ``plan.yaml`` (the plan and why), ``commands.txt`` (the commands that trained it, written
  by ``unetpp train``), the epoch and step of the checkpoint, and the command that reproduces it;
- ``scores``: validation IoU per head and ensemble at the saved epoch (the run's CSV logs), and the
  held-out scores of ``scores.csv`` (``unetpp compare``'s test set) or ``evaluation.csv``
  (``unetpp evaluate``) per head and ensemble;
- ``pruning``: for a model written by ``unetpp prune``, its table and the depth chosen, with the rule.

Files are read with ``weights_only=True`` (nothing unpickled) and plain YAML/CSV/JSON readers.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

PathLike = str | os.PathLike[str]
COMMANDS = "commands.txt"  # in a run folder: one line per `unetpp train` session (the first and each resume)
RECORD_KEY = "unetpp.header"  # in .onnx / .safetensors metadata: the source's preprocessing and ensemble heads
ENSEMBLE_HEADS = "ensemble_heads"  # in a model header or config.json: the heads chosen on validation
VALIDATION_IOU = "validation_iou"  # in a training checkpoint's header: IoU per mode at its validation
TTA = "tta"  # in a model header or config.json: whether prediction averages over flips, measured on validation
POSTPROCESS = "postprocess"  # in a model header or config.json: the smallest component kept per class, likewise
HELD_OUT = (("scores.csv", "unetpp compare (held-out test set)"), ("evaluation.csv", "unetpp evaluate"))


def record_command(run_dir: PathLike, argv: list[str] | None = None) -> None:
    """Append the command line of this process (``unetpp train ...``) to the run's ``commands.txt``."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        return
    line = shlex.join(["unetpp", *(sys.argv[1:] if argv is None else argv)])
    try:
        with (run_dir / COMMANDS).open("a") as f:
            f.write(line + "\n")
    except OSError:  # a record, not the result: the training itself is done
        pass


def model_record(path: PathLike) -> dict[str, Any]:
    """The record of the model file `path` (see the module docstring): keys present only when known."""
    from .hub import read_config_json

    folder = _pretrained_folder(path)
    if folder is not None:  # a pretrained folder or Hub id: its config.json says it all
        info = read_config_json(folder)
        chosen = {k: info[k] for k in (ENSEMBLE_HEADS, TTA, POSTPROCESS) if info.get(k)}
        return {**(info.get("record") or {}), "preprocessing": info.get("preprocessing"), **chosen}
    path = Path(path)
    header = _header(path)
    record: dict[str, Any] = dict(header.get("record") or {})
    if header.get("preprocessing") is not None:
        record["preprocessing"] = dict(header["preprocessing"])
    if header.get(ENSEMBLE_HEADS):
        record[ENSEMBLE_HEADS] = list(header[ENSEMBLE_HEADS])
    for key in (TTA, POSTPROCESS):
        if header.get(key):
            record[key] = dict(header[key])
    run = path.parent.parent
    if path.suffix == ".ckpt" and (run / "config.yaml").is_file():
        record["training"] = _training(run, header)
        scores = {"validation": _validation(run, header.get("epoch")), "held_out": held_out_scores(run)}
        record["scores"] = {k: v for k, v in scores.items() if v}
    return record


def recorded_preprocessing(path: PathLike) -> dict[str, Any] | None:
    """The preprocessing a model file records (see the module docstring), or None."""
    from .hub import read_config_json

    folder = _pretrained_folder(path)
    if folder is not None:
        prep = read_config_json(folder).get("preprocessing")
    else:
        prep = _header(Path(path)).get("preprocessing")
    return dict(prep) if isinstance(prep, dict) else None


def recorded_ensemble_heads(path: PathLike) -> tuple[int, ...] | None:
    """The heads whose mean the accurate mode uses, as training chose them on validation; None if not recorded.

    A training checkpoint records them in its model header, a pretrained folder in ``config.json``, an
    exported file in its ``unetpp.header`` metadata.
    """
    from .hub import read_config_json

    folder = _pretrained_folder(path)
    info = read_config_json(folder) if folder is not None else _header(Path(path))
    heads = info.get(ENSEMBLE_HEADS)
    if not isinstance(heads, (list, tuple)) or not heads or not all(isinstance(h, int) for h in heads):
        return None
    return tuple(heads)


def recorded_tta(path: PathLike) -> bool | None:
    """Whether prediction averages over flips, as training chose it on validation (:mod:`unetpp.engine.tta`); None
    if not recorded (then prediction runs one pass unless told)."""
    check = recorded_tta_check(path)
    return None if check is None else check["use"]


def recorded_tta_check(path: PathLike) -> dict[str, Any] | None:
    """The flips check a model file records: ``use`` and, from training, the validation ``iou`` in one pass, ``iou_tta``
    over flips, ``images`` and ``seconds``; None if not recorded. Read where the ensemble heads are."""
    from .hub import read_config_json

    folder = _pretrained_folder(path)
    info = read_config_json(folder) if folder is not None else _header(Path(path))
    check = info.get(TTA)
    return dict(check) if isinstance(check, dict) and isinstance(check.get("use"), bool) else None


def recorded_min_sizes(path: PathLike) -> tuple[int, ...] | None:
    """Per foreground class, the smallest component prediction keeps, as training chose it on validation
    (:mod:`unetpp.engine.postprocess`); None where nothing is recorded or nothing is removed."""
    from .hub import read_config_json

    folder = _pretrained_folder(path)
    info = read_config_json(folder) if folder is not None else _header(Path(path))
    choice = info.get(POSTPROCESS)
    sizes = choice.get("min_size") if isinstance(choice, dict) else None
    if not isinstance(sizes, (list, tuple)) or not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
        return None
    return tuple(sizes) if any(s > 1 for s in sizes) else None


def recorded_validation_iou(path: PathLike) -> dict[str, float]:
    """Validation IoU per mode (``head{j}``, ``ensemble``, ``chosen``) that a training checkpoint was judged by; {}
    where none is recorded (other files, or a checkpoint written before validation)."""
    scores = _header(Path(path)).get(VALIDATION_IOU) or {}
    return {str(k): float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def _pretrained_folder(path: PathLike) -> Path | None:
    """The pretrained folder `path` names: the folder, a Hub id, or the ``model.safetensors`` inside one."""
    from .hub import CONFIG_NAME, WEIGHTS_NAME, pretrained_folder

    folder = pretrained_folder(path)
    if folder is None and Path(path).name == WEIGHTS_NAME and (Path(path).parent / CONFIG_NAME).is_file():
        return Path(path).parent
    return folder


def exported_header(source: PathLike, heads: Sequence[int]) -> dict[str, Any]:
    """What ``unetpp export`` carries from `source` into a ``.onnx`` or ``.safetensors`` file for prediction: the
    preprocessing, the chosen ensemble heads that the exported model (with `heads`, pruned or not) still has, and
    the flips and component sizes chosen (for the same heads only: they were measured on them)."""
    recorded = recorded_ensemble_heads(source) or ()
    chosen = [h for h in recorded if h in heads]
    same = set(heads) >= set(recorded or heads)
    tta = recorded_tta(source) if same else None
    sizes = recorded_min_sizes(source) if same else None
    return {
        "preprocessing": recorded_preprocessing(source),
        ENSEMBLE_HEADS: chosen or None,
        TTA: None if tta is None else {"use": tta},
        POSTPROCESS: None if sizes is None else {"min_size": list(sizes)},
    }


def _exported_file_header(path: Path) -> dict[str, Any]:
    """The ``unetpp.header`` metadata of an exported ``.onnx`` or ``.safetensors`` file; {} where there is none."""
    stat = path.stat()
    return dict(_read_exported_header(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _read_exported_header(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Read once per file version: ``onnx.load`` parses the whole graph with its weights, and prediction asks for
    the preprocessing and the ensemble heads separately."""
    try:
        if path.lower().endswith(".onnx"):
            import onnx

            proto = onnx.load(path, load_external_data=False)
            meta = {p.key: p.value for p in proto.metadata_props}
        else:
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
        header = json.loads(meta.get(RECORD_KEY, "{}"))
    except Exception:  # damaged files, or no reader installed: the model loader reports those
        return {}
    return header if isinstance(header, dict) else {}


def _header(path: Path) -> dict[str, Any]:
    """A model file's header: a training checkpoint's ``["unetpp"]`` (+ its epoch and step), a ``.pt``'s top
    level, or an exported file's ``unetpp.header``; {} for other or unreadable files (the loader reports those)."""
    if not path.is_file():
        return {}
    if path.name.lower().endswith((".onnx", ".safetensors")):
        return _exported_file_header(path)
    if not path.name.lower().endswith((".ckpt", ".pt", ".pth")):
        return {}
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # damaged files are the loader's to report
        return {}
    if not isinstance(ckpt, dict):
        return {}
    header = ckpt.get("unetpp", ckpt)
    if not isinstance(header, dict):
        return {}
    out = {k: header[k] for k in ("preprocessing", "record") if isinstance(header.get(k), dict)}
    if isinstance(header.get(ENSEMBLE_HEADS), (list, tuple)):
        out[ENSEMBLE_HEADS] = list(header[ENSEMBLE_HEADS])
    if isinstance(header.get(VALIDATION_IOU), dict):
        out[VALIDATION_IOU] = dict(header[VALIDATION_IOU])
    for key in (TTA, POSTPROCESS):
        if isinstance(header.get(key), dict):
            out[key] = dict(header[key])
    for k in ("epoch", "global_step"):
        if isinstance(ckpt.get(k), int):
            out[k] = ckpt[k]
    return out


def _training(run: Path, header: dict[str, Any]) -> dict[str, Any]:
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    data = config.get("data") or {}
    root = str(data.get("root") or "")
    training: dict[str, Any] = {
        "run": run.name,
        "data": {"name": Path(root).name or data.get("layout", ""), "root": root, "layout": data.get("layout")},
        "config": config,
        "reproduce": f"unetpp train --config config.yaml --no-plan --run-dir runs/{run.name}",
    }
    if isinstance(header.get("epoch"), int):
        training["epochs"] = header["epoch"] + 1
    if isinstance(header.get("global_step"), int):
        training["steps"] = header["global_step"]
    if (run / "plan.yaml").is_file():
        training["plan"] = yaml.safe_load((run / "plan.yaml").read_text())
    if (run / COMMANDS).is_file():
        training["commands"] = [c for c in (run / COMMANDS).read_text().splitlines() if c.strip()]
    return training


def _validation(run: Path, epoch: object) -> dict[str, dict[str, float]]:
    """Validation IoU per head and ensemble at the checkpoint's epoch, from the run's CSV logs."""
    from ..utils.run_metrics import read_run_metrics

    series = read_run_metrics(run)
    out: dict[str, dict[str, float]] = {}
    for name, points in series.items():
        if not name.startswith("val/iou_"):
            continue
        at = [v for e, v in points if e == epoch] or ([points[-1][1]] if epoch is None and points else [])
        if at:
            out[name.removeprefix("val/iou_")] = {"iou": at[-1]}
    return out


def held_out_scores(run: PathLike) -> dict[str, Any]:
    """Mean and s.d. of IoU, Dice and HD95 per mode (head, ensemble, class) from the run's held-out CSV."""
    for name, source in HELD_OUT:
        path = Path(run) / name
        if path.is_file():
            return summarize_csv(path, source)
    return {}


def summarize_csv(path: Path, source: str) -> dict[str, Any]:
    """``{"source", "file", "images", "modes": {mode: {metric: [mean, sd]}}}`` of a per-image score CSV."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    modes: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        for metric in ("iou", "dice", "hd95"):
            try:
                value = float(row[metric])
            except (KeyError, TypeError, ValueError):
                continue
            modes.setdefault(row["mode"], {}).setdefault(metric, []).append(value)
    summary = {mode: {m: _mean_sd(v) for m, v in metrics.items()} for mode, metrics in modes.items()}
    images = len({row.get("image") for row in rows})
    return {"source": source, "file": path.name, "images": images, "modes": summary}


def _mean_sd(values: list[float]) -> list[float | None]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [None, None]
    mean = sum(finite) / len(finite)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else None
    return [mean, sd]


def pruned_record(source: PathLike, rows: list[dict[str, Any]], depth: int, rule: str) -> dict[str, Any]:
    """What ``unetpp prune`` keeps in the pruned file: the source's record and preprocessing, and the pruning.

    `rows` are :func:`unetpp.deploy.bench.pruning_table`'s (with ``iou`` where scored); `rule` says how `depth` was
    chosen ("--depth 2", "--auto (tolerance 0.003)", "--max-latency-ms 150").
    """
    record = model_record(source)
    prep = record.pop("preprocessing", None)
    keep = ("mode", "depth", "iou", "params", "gflops", "latency_ms", "peak_mib")
    table = [{k: _plain(r.get(k)) for k in keep} for r in rows]
    record["pruning"] = {"source": Path(str(source)).name, "depth": depth, "rule": rule, "table": table}
    return {"preprocessing": prep, "record": record}


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, float) else value
