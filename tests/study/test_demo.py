"""The demo is `compare` with a preset on the hard synthetic set; the default synthetic set is unchanged."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from unetpp.data import make_synthetic_em
from unetpp.errors import ConfigError
from unetpp.study.demo import next_steps, run_demo


def test_default_synthetic_images_are_unchanged() -> None:
    images, masks = make_synthetic_em(2, size=64, seed=0)
    digest = hashlib.sha256(images.tobytes() + masks.tobytes()).hexdigest()
    assert digest == "b5c8634061b0cdd3bdac7ce6cbc1dfab0e88c6c6b1f12f7c7f25a7edf9305a2b"  # before `difficulty`


def _best_threshold_accuracy(images: np.ndarray, masks: np.ndarray) -> float:
    return max(float(((images > t) == (masks == 1)).mean()) for t in range(0, 256, 2))


def test_hard_synthetic_set_defeats_a_threshold() -> None:
    easy = make_synthetic_em(3, size=128, seed=1)
    hard = make_synthetic_em(3, size=128, seed=1, difficulty="hard")
    again = make_synthetic_em(3, size=128, seed=1, difficulty="hard")
    np.testing.assert_array_equal(hard[0], again[0])
    assert not np.array_equal(hard[0], easy[0])
    # the default set is 90% right by one global threshold; the hard one is no better than "all interior"
    assert _best_threshold_accuracy(*easy) > float(easy[1].mean()) + 0.05
    assert _best_threshold_accuracy(*hard) < float(hard[1].mean()) + 0.01
    with pytest.raises(ConfigError, match="difficulty must be one of"):
        make_synthetic_em(1, size=64, difficulty="brutal")  # type: ignore[arg-type]


def test_demo_at_tiny_settings(tmp_path) -> None:
    text = run_demo(tmp_path / "demo", budget="smoke", images=4, test_images=1, size=64)
    assert re.search(r"\| unet \(reference\) \| head2 \|", text)
    assert re.search(r"\| unet\+\+ \| ensemble \|", text)
    assert "s/epoch" in text
    assert "patches/s" in text
    assert "`unetpp prune --auto` would keep L" in text
    for mode in ("L1", "L2", "ensemble"):
        assert re.search(rf"{mode}: IoU .* ms .* params", text), mode
    assert (tmp_path / "demo" / "study" / "report.html").is_file()
    assert (tmp_path / "demo" / "results.md").read_text().startswith("| model |")
    assert "unetpp compare" in next_steps(tmp_path / "demo")


def test_demo_refuses_a_used_folder(tmp_path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="folder is not empty"):
        run_demo(tmp_path, budget="smoke")
    assert (tmp_path / "keep.txt").read_text() == "mine"
