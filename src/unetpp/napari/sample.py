"""napari sample data: the demo's synthetic EM image, its ground truth, and a tiny UNet++ trained at first use.

Nothing is downloaded. The image is image 0 of :func:`unetpp.data.synthetic.make_synthetic_em` (seed 0,
256²); the model is a depth-4 UNet++ with deep supervision (widths 4-8-16-32-64, 0.14 M parameters)
trained on other images of the same generator (seed 1) for :data:`STEPS` steps, seeded, the first time
the widget runs it (80 s to 4 minutes measured on 2 shared cores; in the widget's worker thread, with a
progress bar), then
kept in ``$XDG_CACHE_HOME/unetpp/napari/v1/em-sample.pt`` (``~/.cache`` when unset) for every later use.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .core import Cancelled, Progress

IMAGE_NAME = "synthetic EM"
TRUTH_NAME = "synthetic EM truth"
VERSION = 1  # in the file's path: a change of recipe trains a new model instead of reusing an old one
STEPS = 150
WIDTHS = (4, 8, 16, 32, 64)
_lock = threading.Lock()  # one training at a time in this process


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/unetpp/napari`` (``~/.cache/unetpp/napari`` when unset), as the runtime cache."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "unetpp" / "napari"


def sample_model_path() -> Path:
    return cache_dir() / f"v{VERSION}" / "em-sample.pt"


def sample_image() -> tuple[np.ndarray, np.ndarray]:
    """The sample image (uint8 256²) and its ground truth (1 = cell interior, 0 = membrane)."""
    from ..data.synthetic import make_synthetic_em

    images, masks = make_synthetic_em(1, 256, seed=0)
    return images[0], masks[0]


def synthetic_em() -> list[tuple[Any, dict[str, Any], str]]:
    """The napari sample: the image (its metadata names the sample model) and its ground truth.

    Opening it also docks the "unetpp: segment" widget, so that a new user's second click is "Run".
    """
    image, truth = sample_image()
    _dock_widget()
    meta = {"unetpp": {"model": str(sample_model_path()), "truth": TRUTH_NAME}}
    return [
        (image, {"name": IMAGE_NAME, "metadata": meta}, "image"),
        (truth, {"name": TRUTH_NAME, "opacity": 0.35, "visible": False}, "labels"),
    ]


def _dock_widget() -> None:
    try:
        import napari

        viewer = napari.current_viewer()
        if viewer is not None:  # napari docks a plugin's widget once: a second call shows the first
            viewer.window.add_plugin_dock_widget("unetpp", "unetpp: segment")
    except Exception:  # the plugin is not registered (e.g. run from a source tree): the sample still opens
        return


def ensure_sample_model(progress: Progress | None = None, cancel: threading.Event | None = None) -> Path:
    """The sample model's file, trained and cached first if missing (see the module docstring)."""
    path = sample_model_path()
    with _lock:
        if not path.is_file():
            train_sample_model(path, STEPS, progress=progress, cancel=cancel)
    return path


def train_sample_model(
    path: Path,
    steps: int = STEPS,
    *,
    widths: tuple[int, ...] = WIDTHS,
    size: int = 64,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Train the tiny UNet++ on synthetic EM crops of `size`² (batch 4, Adam, seeded) and save it to `path`.

    Images are z-scored per image, as prediction does for a model file that records no preprocessing.
    :func:`unetpp.save` writes atomically, so a cancelled or killed training leaves no file.

    Raises:
        Cancelled: `cancel` was set (nothing is written).
    """
    import torch

    import unetpp

    from ..data.synthetic import make_synthetic_em
    from .guard import import_dynamo_safely

    import_dynamo_safely()  # the optimizer imports torch._dynamo: in a napari session, without Triton

    images, masks = make_synthetic_em(8, 128, seed=1)
    x = images.astype(np.float32)[:, None]
    x = (x - x.mean(axis=(2, 3), keepdims=True)) / np.maximum(x.std(axis=(2, 3), keepdims=True), 1e-8)
    xs, ys = torch.from_numpy(x), torch.from_numpy(masks.astype(np.float32)[:, None])
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = unetpp.build_model("unet++", depth=len(widths) - 1, widths=widths, deep_supervision=True)
    loss_fn = unetpp.DeepSupervisionLoss(unetpp.HybridLoss(), [1.0] * (len(widths) - 1))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for step in range(steps):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        idx = torch.randint(0, len(xs), (4,), generator=gen)
        y0, x0 = (int(v) for v in torch.randint(0, 128 - size + 1, (2,), generator=gen))
        crop = (slice(None), slice(None), slice(y0, y0 + size), slice(x0, x0 + size))
        loss = loss_fn(model(xs[idx][crop]), ys[idx][crop])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, steps, "training the sample model")
    path.parent.mkdir(parents=True, exist_ok=True)
    return unetpp.save(model.eval(), path, overwrite=True)  # atomic: a killed training leaves no file


__all__ = ["ensure_sample_model", "sample_image", "sample_model_path", "synthetic_em", "train_sample_model"]
