"""The embedded default: train U-Net and UNet++ on generated microscopy and compare them, no data needed.

It writes a synthetic EM-like data set (touching cells with membranes; seeded, generated here,
never downloaded), trains U-Net (L4) and UNet++ with deep supervision under the same time
budget, evaluates every head and the ensemble on held-out images, and writes overlays, a
learning-curve plot, a CSV and a table.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .config import RunConfig
from .errors import ConfigError
from .evaluate import evaluate, format_table, probabilities_per_mode, summarize, write_csv
from .metrics import masks_from_probs
from .models import load

log = logging.getLogger(__name__)

MODELS = {"U-Net": ["model.name=unet"], "UNet++": ["model.name=unet++", "model.deep_supervision=true"]}


def run_demo(out: str | Path, *, minutes: float = 2.0, images: int = 30, test_images: int = 6, seed: int = 0) -> str:
    """Run the whole demo into `out`; returns the results table (Markdown).

    Raises:
        ConfigError: `out` already holds a demo (nothing is overwritten).
    """
    from .data import FolderPairs, write_synthetic_dataset
    from .engine.train import fit
    from .inference import bf16_supported
    from .visualize import overlay, plot_learning_curves, save_png

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty; choose another --out or remove it")
    train_dir = write_synthetic_dataset(out / "data" / "train", images - test_images, seed=seed)
    test_dir = write_synthetic_dataset(out / "data" / "test", test_images, seed=seed + 1)
    summaries, runs = {}, {}
    for name, overrides in MODELS.items():
        cfg = RunConfig().override(
            [
                f"data.root={train_dir}",
                "data.layout=folders",
                "data.batch_size=8",
                "data.num_workers=0",
                "train.max_epochs=1000",
                f"train.max_minutes={minutes}",
                f"train.precision={'bf16-mixed' if bf16_supported() else '32-true'}",
                f"train.seed={seed}",
                *overrides,
            ]
        )
        run_dir = out / "runs" / name.lower().replace("+", "p").replace("-", "")
        log.info("training %s for %.1f min into %s", name, minutes, run_dir)
        best = fit(cfg, run_dir)
        model = load(best)
        test = FolderPairs(test_dir, spatial_dims=2)
        rows = evaluate(model, test)
        write_csv(rows, run_dir / "evaluation.csv")
        summaries[name] = summarize(rows)
        runs[name] = run_dir
        for k in range(min(3, len(test))):
            sample = test[k]
            probs = probabilities_per_mode(model, sample["image"][None])
            mode = "ensemble" if "ensemble" in probs else next(iter(probs))
            pred = masks_from_probs(probs[mode])[0, 0].numpy()
            picture = overlay(sample["image"].numpy(), pred, sample["mask"][0].numpy())
            save_png(picture, out / "overlays" / f"{run_dir.name}_{sample['id']}.png")
    plot_learning_curves(runs, out / "learning_curves.png")
    table = format_table(summaries)
    (out / "results.md").write_text(table + "\n")
    return table


def next_steps(out: Path) -> str:
    """The commands to run the same on one's own data."""
    return "\n".join(
        [
            "Run the same on your own data (images/ and masks/ with matching file names):",
            "  unetpp train --data path/to/dataset --model unet++ --run-dir runs/mine --minutes 60",
            "  unetpp evaluate --checkpoint runs/mine/checkpoints/best.ckpt --data path/to/test_set",
            f"Results of this demo: {out / 'results.md'}, {out / 'learning_curves.png'}, {out / 'overlays'}",
        ]
    )
