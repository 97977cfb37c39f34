"""The report of a study: a table for the terminal, ``report.md``, a self-contained ``report.html``,
and ``results.csv`` / ``results.json`` for machines, all in the study folder.

The HTML inlines its figures as base64 PNGs (no external file, no network) and sets
``data-images-loaded`` on ``<body>`` once every image has decoded, so a headless browser can
check that it renders.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import json
import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from ..deploy.bench import AUTO_TOLERANCE
from ..errors import ConfigError
from ..utils.atomic import atomic_write
from ..utils.tables import markdown_table
from . import plots, stats
from .runner import Run, RunResult, load_results
from .spec import ModelSpec, StudySpec


def _pct(v: float, sd: float | None = None) -> str:
    if not isinstance(v, float) or math.isnan(v):
        return "–"
    return f"{100 * v:.2f}" + ("" if sd is None or math.isnan(sd) else f" ± {100 * sd:.2f}")


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine()}
    for pkg in ("unetpp", "torch", "lightning", "numpy", "scipy", "torchio", "timm"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    import torch

    from ..utils.precision import cpu_flags

    out["threads"] = str(torch.get_num_threads())
    out["cpu_flags"] = " ".join(cpu_flags())
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def main_table(rows: Sequence[dict], spec: StudySpec) -> str:
    """The terminal's table (Markdown): one line per model, the reference first."""
    paper = spec.paper or {}
    headers = ["model", "mode", "IoU %", "Dice %", "HD95", "Δ IoU", "p (Welch, seeds)", "p (paired, images)"]
    headers += ["epochs", "s/epoch", "patches/s"] + (["paper IoU %"] if paper else [])
    ref = spec.reference_model
    cells = []
    for r in sorted(rows, key=lambda r: r["model"] != ref):
        name = r["model"] + (" (reference)" if r["model"] == ref else "")
        delta = "–" if r["model"] == ref else f"{100 * r['delta_iou']:+.2f}"
        row = [name, r["mode"], _pct(r["iou"], r["iou_sd"]), _pct(r["dice"], r["dice_sd"]), _num(r["hd95"], "{:.2f}")]
        row += [delta, stats.format_p(r["p_welch"]), stats.format_p(r["p_paired"]), _num(r["epochs"], "{:.0f}")]
        row += [_num(r["seconds_per_epoch"]), _num(r["patches_per_second"])]
        cells.append(row + ([_num(paper.get(r["model"]), "{:.2f}")] if paper else []))
    return markdown_table(headers, cells, "ll" + "r" * (len(headers) - 2))


def _heads_md(rows: Sequence[dict]) -> str:
    cells = [[r["model"], _mode_md(r), _pct(r["iou"], r["iou_sd"]), _pct(r["dice"], r["dice_sd"])] for r in rows]
    table = markdown_table(["model", "mode", "IoU %", "Dice %"], cells, "llrr")
    if not any(r["mode"] == "chosen" for r in rows):
        return table
    return (
        table + "\n\nensemble: the paper's plain mean of every head; chosen: the mean of the heads training kept "
        "on validation (what `unetpp predict` runs by default), per seed."
    )


def _mode_md(row: dict) -> str:
    if row["mode"] != "chosen" or not row.get("heads"):
        return row["mode"]
    kept = "; ".join(f"seed {s}: {','.join(map(str, h or []))}" for s, h in row["heads"].items())
    return f"chosen ({kept})"


def _classes_md(rows: Sequence[dict]) -> str:
    cells = [
        [
            r["model"],
            r["mode"].split(" class ")[0],
            r["class"],
            _pct(r["dice"], r["dice_sd"]),
            _pct(r["iou"], r["iou_sd"]),
        ]
        for r in rows
    ]
    return markdown_table(["model", "mode", "class", "Dice %", "IoU %"], cells, "llrrr")


def _groups_md(groups: dict, reference: str) -> str:
    if not groups.get("groups"):
        return ""
    models = list(groups["groups"][0]["models"])
    headers = ["object size", "objects"] + [f"{m} IoU %" + ("" if m == reference else " (p)") for m in models]
    cells = []
    for g in groups["groups"]:
        scores = [g["models"][m] for m in models]
        row = [
            _pct(s["iou"]) + ("" if m == reference else f" ({stats.format_p(s['p'])})")
            for m, s in zip(models, scores, strict=True)
        ]
        high = "∞" if math.isinf(g["high"]) else f"{g['high']:.0f}"
        cells.append([f"{g['low']:.0f}–{high}", g["count"], *row])
    return markdown_table(headers, cells)


def _fig6_md(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    cells = [
        [
            f"L{r['depth']}",
            _pct(r["embedded"], r["embedded_sd"]),
            _pct(r["isolated"], r["isolated_sd"]),
            stats.format_p(r["p"]),
        ]
        for r in rows
    ]
    return markdown_table(["depth", "embedded IoU %", "isolated IoU %", "p (Welch)"], cells)


def pruning(results: Sequence[RunResult], heads: Sequence[dict]) -> list[dict]:
    """Fig. 5 for each deeply supervised model (its first seed): every pruning level's test IoU (mean over
    seeds), params, GFLOPs and latency on a small input, and the depth `prune --auto` would choose."""
    from ..deploy.bench import choose_depth, format_table, pruning_table
    from ..models import load

    out = []
    for model, runs in stats.by_model(results).items():
        modes = {r["mode"] for r in runs[0].scores}
        if "ensemble" not in modes:
            continue
        net = load(runs[0].folder / "checkpoints" / runs[0].info["checkpoint"])
        side = 2**net.depth * (2 if net.spatial_dims == 3 else 8)
        rows = pruning_table(net, (1, net.in_channels, *[side] * net.spatial_dims), reps=3, memory=False)
        iou = {h["mode"]: h["iou"] for h in heads if h["model"] == model}
        for row in rows:
            row["iou"] = iou.get("ensemble" if row["depth"] is None else f"head{row['depth']}")
        scores = {r["depth"]: r["iou"] for r in rows if r["depth"] is not None and isinstance(r["iou"], float)}
        try:
            auto = choose_depth(scores, AUTO_TOLERANCE) if scores else None
        except ConfigError:
            auto = None
        shape = "×".join(map(str, [1, net.in_channels, *[side] * net.spatial_dims]))
        out.append({"model": model, "shape": shape, "rows": rows, "auto_depth": auto, "table": format_table(rows)})
    return out


def collect(spec: StudySpec, out: Path, command: str | None = None, *, with_pruning: bool = True) -> dict:
    """Everything the report shows, as plain data (also written as ``results.json``)."""
    spec = spec.with_precision(StudySpec.saved_in(out))
    results, missing = load_results(spec, out)
    if not results:
        raise ConfigError(f"{out}: no finished run yet; train with `unetpp compare --out {out}` first")
    ref = spec.reference_model
    heads = stats.head_table(results)
    fig6 = []
    if spec.embedded_vs_isolated:
        for full in (m for m in map(ModelSpec.parse, spec.models) if m.name == "unet++" and m.option("ds", True)):
            isolated = {m.option("depth"): str(m) for m in spec.isolated_models() if m.options}
            fig6 = stats.embedded_vs_isolated(results, str(full), isolated)
            break
    return {
        "study": spec.to_dict(),
        "reference": ref,
        "command": command or "(Python API: unetpp.study)",
        "versions": versions(),
        "finished": len(results),
        "missing": [str(r) for r in missing],
        "table": stats.model_table(results, ref),
        "heads": heads,
        "classes": stats.head_table(results, per_class=True),
        "size_groups": stats.size_groups(results, ref, spec.size_bins),
        "embedded_vs_isolated": fig6,
        "pruning": pruning(results, heads) if with_pruning else [],
        "runs": [{"model": r.model, "seed": r.seed, "folder": str(r.folder), **r.info} for r in results],
        "_results": results,
    }


def _figures(data: dict, out: Path) -> dict[str, Path]:
    results = data["_results"]
    figs = {
        "Learning curves": plots.learning_curves(results, out / "figures" / "learning_curves.png"),
        "Test IoU per image and per seed": plots.box_plot(results, out / "figures" / "box_iou.png"),
    }
    extra = {
        "IoU by object size (Fig. 7)": plots.size_group_plot(data["size_groups"], out / "figures" / "size_groups.png"),
        "Embedded vs isolated (Fig. 6)": plots.embedded_plot(
            data["embedded_vs_isolated"], out / "figures" / "fig6.png"
        ),
    }
    figs.update({k: v for k, v in extra.items() if v is not None})
    return figs


def _overlays(data: dict) -> dict[str, list[Path]]:
    """The first seed's overlays of each model (green: right, red: wrong)."""
    out: dict[str, list[Path]] = {}
    for model, runs in stats.by_model(data["_results"]).items():
        out[model] = sorted((runs[0].folder / "overlays").glob("*.png"))
    return out


def _markdown(data: dict, spec: StudySpec, figs: dict[str, Path], overlays: dict[str, list[Path]], out: Path) -> str:
    parts = [f"# Study: {spec.name}", ""]
    if data["missing"]:
        parts += [f"**Incomplete**: {len(data['missing'])} run(s) not finished: {', '.join(data['missing'])}.", ""]
    budget = ", ".join(
        x for x in (f"{spec.epochs} epochs" if spec.epochs else "", f"{spec.minutes} min" if spec.minutes else "") if x
    )
    parts += [
        f"Data: `{spec.data or spec.layout}` ({spec.layout}); seeds {list(spec.seeds)}; budget {budget} per run; "
        f"reference: **{data['reference']}**. Scores are on held-out test images; a model's score is the mean "
        "over seeds of each run's mean test IoU; p-values: Welch's t-test over seeds and a paired t-test over "
        "images (each image averaged over seeds) against the reference; * marks p < 0.05.",
        "",
        main_table(data["table"], spec),
        "",
        "## Every head and the ensemble",
        "",
        _heads_md(data["heads"]),
        "",
    ]
    if data["classes"]:
        parts += ["## Each class (main mode)", "", _classes_md(data["classes"]), ""]
    if data["size_groups"].get("groups"):
        parts += ["## IoU by object size (paper Fig. 7)", "", "p: paired t-test over the group's objects.", ""]
        parts += [_groups_md(data["size_groups"], data["reference"]), ""]
    if data["embedded_vs_isolated"]:
        parts += ["## Embedded vs isolated training (paper Fig. 6)", "", _fig6_md(data["embedded_vs_isolated"]), ""]
    for p in data["pruning"]:
        parts += [
            f"## Pruning {p['model']} (paper Fig. 5; latency on {p['shape']}, this machine)",
            "",
            p["table"],
            "",
            f"`unetpp prune --auto` (tolerance {AUTO_TOLERANCE}) would choose depth **{p['auto_depth']}** "
            "(scored here on the test images).",
            "",
        ]
    parts += ["## Figures", ""]
    parts += [f"![{title}]({path.relative_to(out)})" for title, path in figs.items()]
    parts += ["", "## Examples (first seed; green: right, red: wrong)", ""]
    for model, paths in overlays.items():
        parts += [f"{model}: " + " ".join(f"![{model} {p.stem}]({p.relative_to(out)})" for p in paths)]
    parts += [
        "",
        "## Reproduce",
        "",
        "```",
        data["command"],
        "```",
        "",
        "Versions: " + json.dumps(data["versions"]),
        "",
    ]
    return "\n".join(parts)


def _md_table_html(text: str) -> str:
    """A Markdown pipe table as an HTML table."""
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.strip()]
    if len(rows) < 2:
        return ""
    head, body = rows[0], rows[2:]
    th = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images-loaded", String(ok));
  document.body.setAttribute("data-images-total", String(imgs.length));
});
</script>"""
_STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:4px}pre{background:#f4f4f4;padding:8px}
</style>"""


def _html(md: str, data: dict, figs: dict[str, Path], overlays: dict[str, list[Path]]) -> str:
    """The Markdown report as HTML: tables, inline images, the command and the versions."""
    body, table = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            body.append(_md_table_html("\n".join(table)))
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            title = line[3:]
            body.append(f"<h2>{html.escape(title)}</h2>")
            if title == "Figures":
                body += [f"<h3>{html.escape(t)}</h3>{_img(p, t)}" for t, p in figs.items()]
            elif title.startswith("Examples"):
                for model, paths in overlays.items():
                    body.append(f"<h3>{html.escape(model)}</h3>" + "".join(_img(p, f"{model} {p.stem}") for p in paths))
            elif title == "Reproduce":
                text = json.dumps(data["versions"], indent=1)
                body.append(f"<pre>{html.escape(data['command'])}</pre><pre>{html.escape(text)}</pre>")
                break
        elif line.startswith(("![", "```")) or not line.strip() or line.startswith(tuple(f"{m}: " for m in overlays)):
            continue
        else:
            body.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    title = html.escape(f"unetpp study: {data['study']['name']}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>{_STYLE}</head>'
        f"<body>{''.join(body)}{_SCRIPT}</body></html>"
    )


def _write(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), overwrite=True, error=ConfigError)


def _results_csv(data: dict, path: Path) -> Path:
    fields = [
        "model",
        "seed",
        "mode",
        "iou",
        "dice",
        "hd95",
        "epochs",
        "seconds",
        "seconds_per_epoch",
        "patches_per_second",
    ]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in data["_results"]:
                for mode in dict.fromkeys(s["mode"] for s in r.scores):
                    w.writerow(
                        {
                            "model": r.model,
                            "seed": r.seed,
                            "mode": mode,
                            **{m: stats.run_mean(r, mode, m) for m in stats.METRICS},
                            **{k: r.info.get(k) for k in fields[6:]},
                        }
                    )

    return atomic_write(path, write, overwrite=True, error=ConfigError)


def _jsonable(x: object) -> object:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_report(spec: StudySpec, out: str | Path, command: str | None = None, *, with_pruning: bool = True) -> str:
    """Write report.md, report.html, results.csv, results.json and figures/ into `out`; returns the main table.

    Raises:
        ConfigError: no run of the study has finished yet.
    """
    out = Path(out)
    data = collect(spec, out, command, with_pruning=with_pruning)
    figs = _figures(data, out)
    overlays = _overlays(data)
    md = _markdown(data, spec, figs, overlays, out)
    _write(out / "report.md", md)
    _write(out / "report.html", _html(md, data, figs, overlays))
    _results_csv(data, out / "results.csv")
    _write(out / "results.json", json.dumps(_jsonable(data), indent=1))
    table = main_table(data["table"], spec)
    if data["missing"]:
        table += f"\n({len(data['missing'])} run(s) not finished yet; the report covers {data['finished']})"
    return table


def missing_runs(spec: StudySpec, out: Path) -> list[Run]:
    return load_results(spec, out)[1]


def command_line() -> str:
    """The command that is running, as a user would type it again."""
    import shlex

    return shlex.join(["unetpp", *sys.argv[1:]])
