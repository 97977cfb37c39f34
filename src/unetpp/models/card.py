"""The model card (``README.md``) of a pretrained folder: Hub metadata, then what the model is and did.

Written by :func:`unetpp.save_pretrained` from the same dict as ``config.json`` (see
:mod:`unetpp.models.provenance`), so the card says only what the files record: the family member,
depth, heads and parameters; the preprocessing prediction repeats; the training data's name, the
plan and the commands; held-out scores per head and ensemble; the pruning table and the depth
``unetpp prune`` chose. Sections with nothing recorded are left out.
"""

from __future__ import annotations

import json
from typing import Any

SKIPS = {"long": "U-Net's long skips", "short": "UNet+'s short skips", "dense": "UNet++'s dense skips"}
PAPER = "Zhou et al., *UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image Segmentation*"
DOI = "https://doi.org/10.1109/TMI.2019.2959609"


def model_card(info: dict[str, Any], *, name: str, license: str = "other") -> str:
    """The card's Markdown, starting with the Hub's YAML metadata block."""
    model, record = info["model"], info.get("record") or {}
    detector = "spec" not in model
    parts = [
        _metadata(model, record, license, detector),
        f"# {name}\n\n{_summary(info, detector)}\n\nTrained with [unetpp](https://pypi.org/project/unetpp/) "
        f"({PAPER}, IEEE TMI 2019, [doi:10.1109/TMI.2019.2959609]({DOI})).",
        _use(name),
        _model_table(info, detector),
        _preprocessing(info.get("preprocessing")),
        _training(record.get("training")),
        _scores(record.get("scores"), record.get("pruning")),
        _pruning(record.get("pruning")),
        "## Files\n\n- `model.safetensors`: the weights (safetensors: loading runs no code)\n"
        "- `config.json`: the model config, the preprocessing and this card's record\n- `README.md`: this card",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _metadata(model: dict[str, Any], record: dict[str, Any], license: str, detector: bool) -> str:
    tags = ["unetpp", "image-segmentation", "pytorch", "safetensors", str(model.get("name", "unet++"))]
    if detector:
        tags += ["instance-segmentation", "mask-rcnn"]
    else:
        tags += ["unet-plus-plus", f"{model.get('spatial_dims', 2)}d"]
        if len(model["spec"]["heads"]) > 1:
            tags.append("deep-supervision")
    if record.get("pruning"):
        tags.append("pruned")
    lines = ["---", "library_name: unetpp", f"license: {license}", "pipeline_tag: image-segmentation", "tags:"]
    lines += [f"- {json.dumps(t)}" for t in dict.fromkeys(tags)]
    return "\n".join([*lines, "---"])


def _summary(info: dict[str, Any], detector: bool) -> str:
    model = info["model"]
    if detector:
        return f"A {model['name']} instance segmentation model ({info.get('describe', '')})."
    spec = model["spec"]
    heads = spec["heads"]
    what = f"{len(heads)} heads (deep supervision: ensemble and pruned modes)" if len(heads) > 1 else "one head"
    return (
        f"A {model['name']} of the UNet++ family, {model['spatial_dims']}D, depth {len(spec['widths']) - 1}, "
        f"with {what}: {model['in_channels']} input channel(s), {model['classes']} class(es)."
    )


def _use(name: str) -> str:
    return (
        "## Use\n\n```python\nimport unetpp\n\n"
        f'model = unetpp.from_pretrained("{name}")          # a folder, or org/name on the Hub\n'
        "heads = model(images)                              # one logit map per head\n"
        "probs = unetpp.ensemble(heads)                     # mean of the heads' probabilities\n```\n\n"
        "```bash\n"
        f"unetpp predict --checkpoint {name} --inputs images/ --out masks   # repeats the preprocessing below\n"
        f"unetpp train --init {name} --data my_data --run-dir runs/finetuned   # fine-tune on your data\n```"
    )


def _rows(pairs: list[tuple[str, object]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in pairs if v not in (None, ""))])


def _model_table(info: dict[str, Any], detector: bool) -> str:
    model = info["model"]
    params = f"{info['parameters']:,}" if isinstance(info.get("parameters"), int) else None
    if detector:
        pairs = [
            ("family member", model.get("name")),
            ("backbone", model.get("encoder")),
            ("pyramid width", model.get("pyramid_width")),
            ("input channels", model.get("in_channels")),
            ("classes (incl. background)", model.get("classes")),
            ("parameters", params),
        ]
    else:
        spec = model["spec"]
        pairs = [
            ("family member", f"{model['name']} ({SKIPS.get(spec['skip'], spec['skip'])})"),
            ("depth", len(spec["widths"]) - 1),
            ("widths", "-".join(map(str, spec["widths"]))),
            ("heads", ", ".join(f"X^(0,{j})" for j in spec["heads"])),
            ("ensemble (accurate mode)", _ensemble_text(info.get("ensemble_heads"), spec["heads"])),
            ("flips at prediction", _tta_text(info.get("tta"))),
            ("small components removed", _postprocess_text(info.get("postprocess"))),
            ("nodes", len(spec["nodes"])),
            ("input channels → classes", f"{model['in_channels']} → {model['classes']}"),
            ("dimensions", f"{model['spatial_dims']}D"),
            ("normalisation", model.get("norm")),
            ("encoder", model.get("encoder") or "the paper's (VGG-style blocks)"),
            ("parameters", params),
        ]
    return "## Model\n\n" + _rows(pairs)


def _ensemble_text(chosen: list[int] | None, heads: list[int]) -> str | None:
    if len(heads) < 2:
        return None
    if not chosen or list(chosen) == list(heads):
        return "the mean of every head"
    return f"the mean of heads {', '.join(map(str, chosen))} (chosen on validation; `--ensemble mean`: all heads)"


def _tta_text(choice: dict[str, Any] | None) -> str | None:
    if not isinstance(choice, dict) or not isinstance(choice.get("use"), bool):
        return None
    measured = ""
    if isinstance(choice.get("iou"), float) and isinstance(choice.get("iou_tta"), float):
        measured = f"; validation IoU {choice['iou']:.4f} in one pass, {choice['iou_tta']:.4f} over flips"
    verdict = "on by default (`--no-tta`: one pass)" if choice["use"] else "off by default (`--tta`: on)"
    return f"{verdict}{measured}"


def _postprocess_text(choice: dict[str, Any] | None) -> str | None:
    sizes = choice.get("min_size") if isinstance(choice, dict) else None
    if not isinstance(sizes, list) or not any(isinstance(s, int) and s > 1 for s in sizes):
        return None
    measured = ""
    if isinstance(choice.get("iou"), float) and isinstance(choice.get("iou_after"), float):
        measured = f"; validation IoU {choice['iou']:.4f} → {choice['iou_after']:.4f}"
    return f"under {', '.join(map(str, sizes))} voxels per class (`--no-postprocess`: kept){measured}"


def _preprocessing(prep: dict[str, Any] | None) -> str:
    if not prep:
        return (
            "## Preprocessing\n\nNot recorded (a model saved from memory): `unetpp predict` z-scores each image "
            "and converts grey/RGB to the model's input channels."
        )
    pairs = [(k.replace("_", " "), _value(v)) for k, v in prep.items() if v is not None]
    return "## Preprocessing\n\nWhat `unetpp predict` repeats (from `config.json`):\n\n" + _rows(pairs)


def _training(training: dict[str, Any] | None) -> str:
    if not training:
        return ""
    data = training.get("data") or {}
    lines = ["## Training", ""]
    name = data.get("name") or "?"
    lines.append(f"- **Data**: {name}" + (f" (layout `{data['layout']}`)" if data.get("layout") else ""))
    if training.get("epochs") is not None:
        steps = f", {training['steps']} steps" if training.get("steps") is not None else ""
        lines.append(f"- **Saved at**: epoch {training['epochs']}{steps} (the best validation score)")
    config = training.get("config") or {}
    train = config.get("train") or {}
    if train:
        keys = ("max_epochs", "max_minutes", "lr", "precision", "seed")
        lines.append(
            "- **Settings**: " + ", ".join(f"{k} {_value(train[k])}" for k in keys if train.get(k) is not None)
        )
    for command in training.get("commands") or []:
        lines.append(f"- **Command**: `{command}`")
    if training.get("reproduce"):
        lines.append(f"- **Reproduce** (with the run's `config.yaml`): `{training['reproduce']}`")
    plan = training.get("plan")
    if isinstance(plan, dict):
        reasons = plan.get("reasons") or {}
        rows = ["", "The plan (`unetpp plan`: from the data's fingerprint):", "", "| setting | value | why |"]
        rows.append("|---|---|---|")
        for key, value in plan.items():
            if key != "reasons" and value is not None:
                rows.append(f"| {key} | {_value(value)} | {reasons.get(key, '')} |")
        lines += rows
    return "\n".join(lines)


def _scores(scores: dict[str, Any] | None, pruning: dict[str, Any] | None) -> str:
    if not scores:
        return ""
    lines = ["## Scores"]
    if pruning:
        lines += ["", f"Of `{pruning.get('source')}`, before pruning: this model is its head {pruning['depth']}."]
    held = scores.get("held_out")
    if held:
        hd95 = any((m.get("hd95") or [None])[0] is not None for m in held["modes"].values())
        lines += [
            "",
            f"Held-out images ({held['images']}, `{held['file']}` of {held['source']}), mean ± s.d. over images:",
            "",
            "| mode | IoU % | Dice % |" + (" HD95 |" if hd95 else ""),
            "|---|---:|---:|" + ("---:|" if hd95 else ""),
        ]
        for mode, m in held["modes"].items():
            cells = f"| {mode} | {_pct(m.get('iou'))} | {_pct(m.get('dice'))} |"
            lines.append(cells + (f" {_plain(m.get('hd95'))} |" if hd95 else ""))
    val = scores.get("validation")
    if val:
        lines += ["", "Validation IoU at the saved epoch (the run's validation images):", "", "| mode | IoU % |"]
        lines += ["|---|---:|", *(f"| {mode} | {100 * v['iou']:.2f} |" for mode, v in val.items())]
    return "\n".join(lines)


def _pruning(pruning: dict[str, Any] | None) -> str:
    if not pruning:
        return ""
    lines = [
        "## Pruning",
        "",
        f"Pruned from `{pruning.get('source')}` to depth {pruning['depth']} by `unetpp prune {pruning['rule']}` "
        "(the paper's Fig. 5: each depth's accuracy and cost, measured on the pruning machine):",
        "",
        "| mode | IoU % | params | GFLOPs | latency ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in pruning.get("table") or []:
        iou = f"{100 * r['iou']:.2f}" if isinstance(r.get("iou"), float) else "–"
        chosen = " (kept)" if r.get("depth") == pruning["depth"] else ""
        lines.append(f"| {r['mode']}{chosen} | {iou} | {r['params']:,} | {r['gflops']:.2f} | {r['latency_ms']:.1f} |")
    return "\n".join(lines)


def _pct(pair: list[float | None] | None) -> str:
    if not pair or pair[0] is None:
        return "–"
    mean, sd = pair
    return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if sd is not None else "")


def _plain(pair: list[float | None] | None) -> str:
    if not pair or pair[0] is None:
        return "–"
    mean, sd = pair
    return f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)
