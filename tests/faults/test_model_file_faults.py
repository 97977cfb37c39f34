"""Model files that claim more than they hold, or hold NaN (issue 23, items 2 and 5): one line, under a memory cap."""

from __future__ import annotations

import pytest
import torch

from unetpp import build_model, save
from unetpp.errors import CheckpointError

from .conftest import MEMORY_CAP, cli, one_line, snapshot

pytestmark = pytest.mark.bad_input


def test_a_config_claiming_huge_widths_fails_before_allocating(model_file, data, tmp_path) -> None:
    ckpt = torch.load(model_file, weights_only=True)
    ckpt["config"]["spec"]["widths"] = [4096, 8192, 16384]  # 31 GiB of parameters if it were built
    torch.save(ckpt, tmp_path / "tampered.pt")
    before = snapshot(tmp_path)
    done = cli(
        ["evaluate", "--checkpoint", tmp_path / "tampered.pt", "--data", data, "--out", tmp_path / "e.csv"],
        fault=f"memory:{MEMORY_CAP}",
    )
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert "tampered.pt: weights do not fit the saved config" in line
    assert "expected (4096, 1, 3, 3)" in line
    assert snapshot(tmp_path) == before


def test_nan_weights_are_never_scored_or_used(model_file, data, tmp_path, fails) -> None:
    ckpt = torch.load(model_file, weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.ndim == 4)
    ckpt["state_dict"][key][0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    before = snapshot(tmp_path)
    for args in (
        ["evaluate", "--checkpoint", tmp_path / "nan.pt", "--data", data, "--out", tmp_path / "e.csv"],
        ["predict", "--checkpoint", tmp_path / "nan.pt", "--inputs", data / "images", "--out", tmp_path / "masks"],
        ["export", "--checkpoint", tmp_path / "nan.pt", "--format", "safetensors", "--out", tmp_path / "m.safetensors"],
    ):
        line = fails(args)
        assert f"nan.pt: 1 weight tensor(s) hold NaN or infinite values, e.g. {key}" in line
    assert snapshot(tmp_path) == before


def test_nan_weights_are_not_saved(tmp_path) -> None:
    model = build_model("unet++", depth=2, widths=(4, 8, 16))
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(CheckpointError, match="m.pt: not saved: 1 weight tensor.* NaN or infinite"):
        save(model, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
