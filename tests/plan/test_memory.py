"""The memory model against measured peaks (fresh subprocesses, /proc high-water mark), and batch fitting."""

from __future__ import annotations

import sys

import pytest

from unetpp.errors import ConfigError
from unetpp.plan.memory import GB, estimate_peak_bytes, fit_batch, measure_peak_bytes

WIDTHS = (8, 16, 32, 64, 128)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


@linux_only
@pytest.mark.parametrize(
    ("spatial_dims", "patch", "batch"),
    [(2, (64, 64), 4), (2, (96, 96), 8), (3, (32, 32, 32), 2), (3, (48, 48, 48), 2)],
)
def test_estimate_is_within_30_percent_of_the_measured_training_peak(spatial_dims, patch, batch) -> None:
    cfg = {"name": "unet++", "widths": WIDTHS, "spatial_dims": spatial_dims, "classes": 1}
    measured = measure_peak_bytes(cfg, patch, batch, threads=1)
    estimated = estimate_peak_bytes(cfg, patch, batch)
    assert measured is not None
    assert abs(estimated - measured) <= 0.3 * measured, (estimated / 2**20, measured / 2**20)


def test_estimate_grows_with_batch_patch_width_and_the_grid() -> None:
    base = {"name": "unet++", "widths": WIDTHS}
    one = estimate_peak_bytes(base, (64, 64), 1)
    assert estimate_peak_bytes(base, (64, 64), 4) > one
    assert estimate_peak_bytes(base, (128, 128), 1) > one
    assert estimate_peak_bytes({**base, "widths": tuple(2 * w for w in WIDTHS)}, (64, 64), 1) > one
    assert estimate_peak_bytes({**base, "name": "unet"}, (64, 64), 1) < one  # fewer nodes store less
    assert estimate_peak_bytes(base, (64, 64), 1, training=False) < one


def test_fit_batch_is_the_largest_batch_within_the_budget() -> None:
    cfg = {"name": "unet++", "widths": WIDTHS}
    budget = estimate_peak_bytes(cfg, (96, 96), 5) + 1
    assert fit_batch(cfg, (96, 96), budget, cap=16) == 5
    assert fit_batch(cfg, (96, 96), budget, cap=3) == 3
    assert fit_batch(cfg, (96, 96), 100 * GB, cap=16) == 16


def test_budget_below_batch_one_is_one_line_with_the_estimate_the_budget_and_what_fits() -> None:
    cfg = {"name": "unet++", "widths": WIDTHS, "depth": 4}
    need = estimate_peak_bytes(cfg, (256, 256), 1)
    with pytest.raises(ConfigError) as e:
        fit_batch(cfg, (256, 256), need - 1)
    message = str(e.value)
    assert "\n" not in message
    assert f"{need / GB:.2f} GB at batch 1" in message
    assert "data.patch_size=[" in message  # a smaller patch fits this budget


def test_meta_counting_refuses_a_patch_the_model_refuses() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        estimate_peak_bytes({"name": "unet++", "widths": WIDTHS}, (60, 60), 1)
