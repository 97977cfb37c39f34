"""A cohort over several processes: --devices 2 and --part 1/2 + 2/2 give exactly the files of one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetpp.models import save


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    for k in range(5):  # odd: the parts and ranks differ in size
        Image.fromarray((rng.random((40, 48)) * 255).astype("uint8")).save(root / f"case{k}.png")
    model = tiny_model()
    return root, save(model, root.parent / "model.pt")


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def predict(scale, model: Path, inputs: Path, out: Path, *extra: str) -> str:
    done = scale.run(["predict", "--checkpoint", model, "--inputs", inputs, "--out", out, "--probabilities", *extra])
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_two_processes_and_two_parts_write_what_one_process_writes(cohort, tmp_path: Path, scale) -> None:
    inputs, model = cohort
    predict(scale, model, inputs, tmp_path / "one")
    one = contents(tmp_path / "one")
    assert len(one) == 15  # mask, overlay, probabilities for each of 5 inputs

    said = predict(scale, model, inputs, tmp_path / "ddp", "--devices", "2", "--accelerator", "cpu")
    assert contents(tmp_path / "ddp") == one  # the same bytes: masks, overlays and float32 probabilities
    assert "predict: 5/5 inputs (" in said  # progress: done / total and throughput

    first = predict(scale, model, inputs, tmp_path / "parts", "--part", "1/2")
    assert "wrote 3 mask(s)" in first
    assert len(contents(tmp_path / "parts")) == 9
    predict(scale, model, inputs, tmp_path / "parts", "--part", "2/2")
    assert contents(tmp_path / "parts") == one

    again = predict(scale, model, inputs, tmp_path / "parts", "--part", "1/2")  # a rerun of a finished part
    assert "wrote 0 mask(s)" in again
    assert contents(tmp_path / "parts") == one
