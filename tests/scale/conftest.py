"""2 gloo processes on CPU, tiny models: the same code path as DDP on GPUs (process group, samplers, reduction)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import TINY_MODEL

SRC = Path(__file__).resolve().parents[2] / "src"
HERE = Path(__file__).resolve().parent
DDP = ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"]
TINY = [
    "--layout",
    "synthetic",
    "--set",
    *TINY_MODEL,
    "data.synthetic_images=10",
    "data.synthetic_size=48",
    "data.patch_size=[32,32]",
    "data.patches_per_image=3",  # 7 training images x 3 = 21 patches: not a multiple of 2 ranks
    "data.batch_size=2",
    "data.num_workers=0",
    "data.val_fraction=0.3",  # 3 validation images: an odd count, which a repeating sampler would pad
    "train.progress=false",
]


def env() -> dict[str, str]:
    # one thread per process, in every run compared: float sums then match bit for bit
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def unetpp(args: list[str], timeout: float = 180, script: str | None = None) -> subprocess.CompletedProcess:
    """`python -m unetpp ...` (or a test script) as its own process, so Lightning's launcher re-runs a real command."""
    head = [sys.executable, str(HERE / script)] if script else [sys.executable, "-m", "unetpp"]
    return subprocess.run(
        [*head, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env(), cwd=HERE
    )


class Scale:
    """What the tests of this folder share (a fixture: conftest is not importable under --import-mode=importlib)."""

    DDP, TINY, HERE = DDP, TINY, HERE
    run = staticmethod(unetpp)


@pytest.fixture(scope="session")
def scale() -> type[Scale]:
    return Scale
