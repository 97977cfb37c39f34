"""Fixtures of the napari plugin's tests: tiny trained models, files the CLI predicts, Qt probed once.

Tests that use a napari viewer (``make_napari_viewer``, ``qtbot``) skip, with the reason, where Qt cannot
start (no display, no X or OpenGL libraries): a viewer is first started in a subprocess, because a Qt
that cannot find its platform aborts the process that tries. ``.ci/run`` installs Xvfb and Qt's X
libraries, and pytest-xvfb starts Xvfb, so in CI they run. The tests of :mod:`unetpp.napari.core`
need no Qt and always run.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  (with Triton, before any viewer: see unetpp.napari.guard)

import unetpp
from unetpp.cli import main

from ..conftest import TINY_RUN

HERE = Path(__file__).resolve().parent
MANIFEST = HERE.parents[1] / "src" / "unetpp" / "napari" / "napari.yaml"
QT_FIXTURES = {"make_napari_viewer", "qtbot", "viewer"}


@functools.cache
def qt_problem() -> str | None:
    """Why a napari viewer cannot start here (None when it can): a viewer with an image, in a subprocess."""
    code = "import napari, numpy\nv = napari.Viewer(show=False)\nv.add_image(numpy.zeros((8, 8)))\nv.close()"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "Qt cannot start here: a napari viewer took over 180 s to open"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {done.returncode}"
    return f"Qt cannot start here ({last}); install Xvfb and Qt's X libraries as .ci/run does"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in Path(str(item.path)).parents]
    qt_items = [item for item in mine if QT_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if qt_items and (reason := qt_problem()) is not None:
        for item in qt_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch) -> Path:
    """The runtime choices and the sample model go to a cache of the test session, not the user's."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


# ------------------------------------------------------------------------------------------------- models


@pytest.fixture(scope="session")
def run_ckpt(tmp_path_factory) -> Path:
    """A run's best.ckpt from `unetpp train` (depth 2, widths 4-8-16, heads 1 and 2, 8 short epochs on 64² synthetic
    EM, about 10 s): it records its preprocessing (grey channels, z-scores), which prediction repeats."""
    run = tmp_path_factory.mktemp("run") / "em"
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(run),
                "--epochs",
                "8",
                "--lr",
                "0.02",
                "--set",
                *TINY_RUN,
                "train.schedule=paper",
            ]
        )
        == 0
    )
    return run / "checkpoints" / "best.ckpt"


def train_few_steps(model: torch.nn.Module, spatial_dims: int, steps: int = 15, size: int = 16) -> torch.nn.Module:
    """Seeded Adam steps on noise (z-scores, as prediction feeds it) whose target is a threshold of the first
    channel: 1 class, above 0; 3 classes, cut at -0.5 and 0.5. Enough for masks with every class."""
    gen = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    loss = unetpp.DeepSupervisionLoss(unetpp.HybridLoss(), [1.0] * len(model.spec.heads))
    for _ in range(steps):
        x = torch.randn((2, model.in_channels) + (size,) * spatial_dims, generator=gen)
        y = (x[:, :1] > 0).float() if model.classes == 1 else ((x[:, :1] > -0.5).long() + (x[:, :1] > 0.5).long())
        value = loss(model(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def volume_model(tmp_path_factory) -> Path:
    """A 3D UNet++ (depth 2, widths 4-8-16, deep supervision) trained a few steps on 16³ volumes, saved as .pt."""
    torch.manual_seed(0)
    model = unetpp.build_model("unet++", depth=2, widths=(4, 8, 16), spatial_dims=3, deep_supervision=True)
    return unetpp.save(train_few_steps(model, 3), tmp_path_factory.mktemp("vol") / "vol.pt")


@pytest.fixture(scope="session")
def multiclass_model(tmp_path_factory) -> Path:
    """A 2D UNet++ with 3 classes (depth 2, widths 4-8-16), trained a few steps, saved as .pt."""
    torch.manual_seed(0)
    model = unetpp.build_model("unet++", depth=2, widths=(4, 8, 16), classes=3, deep_supervision=True)
    return unetpp.save(train_few_steps(model, 2, size=32), tmp_path_factory.mktemp("mc") / "classes3.pt")


@pytest.fixture(scope="session")
def detector_file(tmp_path_factory) -> Path:
    """A tiny Mask R-CNN++ (timm's test_resnet) whose class and mask biases make it find objects untrained."""
    torch.manual_seed(0)
    model = unetpp.build_model(
        "maskrcnn++",
        encoder="test_resnet",
        encoder_weights=None,
        in_channels=1,
        min_size=64,
        max_size=64,
        pyramid_width=16,
        head_width=16,
        anchor_sizes=(8, 16, 32, 64, 128),
        detections_per_img=20,
    )
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-4.0, 4.0]))
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(2.0)
    return unetpp.save(model.eval(), tmp_path_factory.mktemp("det") / "nuclei.pt")


# ------------------------------------------------------------------------------------------------- images


def em_image(size: int = 64, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic EM image (uint8) and its mask (1 = cell interior), not one the tiny run trained on."""
    from unetpp.data.synthetic import make_synthetic_em

    images, masks = make_synthetic_em(k + 1, size, seed=7)
    return images[k], masks[k]


def cli_predict(checkpoint: Path, image: Path, out: Path, *extra: str) -> tuple[np.ndarray, np.ndarray | None]:
    """`unetpp predict` on one file: the mask file's array as stored, and the probabilities with --probabilities."""
    assert main(["predict", "--checkpoint", str(checkpoint), "--inputs", str(image), "--out", str(out), *extra]) == 0
    stem = image.name.split(".")[0]
    mask = next(out.glob(f"{stem}_mask.*"))
    prob = out / f"{stem}_prob.npy"
    return read_stored(mask), (np.load(prob) if prob.exists() else None)


def read_stored(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".tif":
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    return np.asarray(Image.open(path))


def as_stored(labels: np.ndarray, suffix: str) -> np.ndarray:
    """A Labels layer's data as `unetpp predict` stores it: binary masks as 0/255 outside .npy and NIfTI."""
    if labels.max(initial=0) <= 1 and suffix not in (".npy", ".nii", ".gz"):
        return labels.astype(np.uint8) * 255
    return labels
