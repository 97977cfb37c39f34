"""The embedded default: U-Net against UNet++ on generated microscopy, for the same number of epochs.

The demo is ``unetpp compare`` with the ``demo`` preset (``unetpp/study/presets/demo.yaml``): it writes
a synthetic EM-like data set of the *hard* kind (thin, faint, broken membranes; seeded, generated
here, never downloaded) and a separate test set, trains U-Net (L4) and UNet++ with deep supervision
for equal epochs (the paper's fair unit; time per epoch and training patches/s are shown beside the
scores, so the cost of UNet++ is visible rather than hidden in a shorter training), scores every head
and the ensemble on the test images, and ends with the deploy trade-off of the trained UNet++: IoU,
latency and size of each pruning level, and the depth ``unetpp prune --auto`` would keep.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..deploy.bench import AUTO_TOLERANCE
from ..errors import ConfigError

log = logging.getLogger(__name__)


def deploy_tradeoff(study: Path) -> str:
    """The pruning levels of the study's deeply supervised UNet++ (from its ``results.json``), as text."""
    data = json.loads((Path(study) / "results.json").read_text())
    lines = []
    for p in data["pruning"]:
        lines += [f"Deploying {p['model']}: every pruning level (latency of one {p['shape']} input on this machine)"]
        for r in p["rows"]:
            iou = "–" if r.get("iou") is None else f"{100 * r['iou']:.2f}"
            lines.append(
                f"  {r['mode']:>8}: IoU {iou:>6} %  {r['latency_ms']:7.1f} ms  {r['params']:>10,} params"
                f"  ({r['gflops']:.2f} GFLOPs)"
            )
        if p["auto_depth"] is not None:
            lines.append(
                f"  `unetpp prune --auto` would keep L{p['auto_depth']}: the shallowest depth within "
                f"{100 * AUTO_TOLERANCE:.1f} IoU points of the best head (scored here on the test images)."
            )
    return "\n".join(lines)


def run_demo(
    out: str | Path,
    *,
    budget: str = "cpu",
    epochs: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    images: int = 30,
    test_images: int = 6,
    size: int = 256,
) -> str:
    """Run the whole demo into `out`; returns the results table and the deploy trade-off (text).

    Args:
        out: a new or empty folder: ``data/`` (generated), ``study/`` (runs, report.html, results).
        budget: the demo preset's budget (``cpu`` for the demo, ``smoke`` for tests).
        epochs: override the preset's epochs (the same for both models).
        minutes: an optional wall-clock cap per model (off by default: it would make epochs unequal).
        seed: data and training seed.
        images, test_images, size: how many synthetic images (test ones included) and their side.

    Raises:
        ConfigError: `out` already holds files (nothing is overwritten).
    """
    from ..data import write_synthetic_dataset
    from ..utils.atomic import write_text
    from . import compare, load_preset

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty; choose another --out or remove it")
    if not 1 <= test_images < images:
        raise ConfigError(f"test_images must be in 1..{images - 1}, got {test_images}")
    train_dir, test_dir = out / "data" / "train", out / "data" / "test"
    fields: dict = {"test_folder": str(test_dir.resolve()), "seeds": (seed,), "name": "demo"}
    if epochs is not None:
        fields["epochs"] = epochs
    if minutes is not None:
        fields["minutes"] = minutes
    # the spec is checked (--epochs 0...) before the data is written: a refusal leaves nothing behind
    spec = load_preset("demo", budget, data=str(train_dir.resolve()), **fields)  # the study picks the precision
    write_synthetic_dataset(train_dir, images - test_images, size, seed, difficulty="hard")
    write_synthetic_dataset(test_dir, test_images, size, seed + 1000, difficulty="hard")
    log.info("training %s for %s epochs each into %s", " and ".join(spec.models), spec.epochs, out / "study")
    table = compare(spec, out / "study", command=f"unetpp demo --out {out}")
    text = f"{table}\n\n{deploy_tradeoff(out / 'study')}"
    write_text(out / "results.md", text + "\n")
    return text


def next_steps(out: Path) -> str:
    """The commands to run the same on one's own data."""
    return "\n".join(
        [
            "Compare the same models on your own data (images/ and masks/ with matching file names):",
            "  unetpp compare --data path/to/dataset --models unet unet++ --seeds 0 1 2 --epochs 40 "
            "--test-fraction 0.2 --out studies/mine",
            "  unetpp reproduce --list            # the paper's experiments as presets",
            f"Report of this demo: {Path(out) / 'study' / 'report.html'} (tables, curves, overlays, pruning)",
        ]
    )
