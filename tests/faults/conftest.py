"""What every fault test checks: the CLI's return code, exactly one line on stderr, no traceback, nothing changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unetpp import build_model, save
from unetpp.cli import main
from unetpp.data import write_synthetic_dataset

from ..conftest import TINY_RUN

SRC = Path(__file__).resolve().parents[2] / "src"
TINY_TRAIN = ["--set", *TINY_RUN]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with a hash of its content: 'nothing created or changed' compares two of these."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in err
    assert lines[0].startswith("unetpp: ")
    return lines[0]


@pytest.fixture
def fails(capsys):
    """Run the CLI in this process; assert it failed with `code` and one line; return that line."""

    def run(args: list[str], code: int = 2) -> str:
        capsys.readouterr()
        got = main([str(a) for a in args])
        captured = capsys.readouterr()
        assert got == code, captured.err
        return one_line(captured.err)

    return run


def cli(args: list[str], fault: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI as a separate process with one fault injected (see child.py): for signals, limits and kills."""
    return subprocess.run(
        [sys.executable, str(Path(__file__).with_name("child.py")), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(SRC), "UNETPP_FAULT": fault},
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A finished tiny run (2 epochs, best and last checkpoints) to copy and damage."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--run-dir", str(run), "--epochs", "2", *TINY_TRAIN]) == 0
    return run


# address space of a capped child (RLIMIT_AS): a tiny training fits (oneDNN maps generously); 13-31 GB do not
MEMORY_CAP = 6 * 2**30


@pytest.fixture
def model_file(tmp_path) -> Path:
    """A tiny saved model (depth 2, widths 4-8-16)."""
    return save(build_model("unet++", depth=2, widths=(4, 8, 16)), tmp_path / "model.pt")


@pytest.fixture
def data(tmp_path) -> Path:
    """Three generated 32x32 images with masks (``images/``, ``masks/``)."""
    return write_synthetic_dataset(tmp_path / "data", n_images=3, size=32)
