"""Plans of the shared public data sets (marked `data`: skipped when ../shared/data is absent)."""

from __future__ import annotations

import pytest

from unetpp.data import ISBI2012, Decathlon
from unetpp.plan import fingerprint, make_plan

pytestmark = pytest.mark.data


def test_isbi_plan(shared_data, tmp_path) -> None:
    fp = fingerprint(ISBI2012(shared_data / "isbi2012-em"), cache_dir=tmp_path)
    assert (fp.label_kind, fp.median_shape) == ("binary-255", (512, 512))
    plan = make_plan(fp, memory_gb=8)
    assert (plan.in_channels, plan.classes, plan.mask_threshold) == (1, 1, None)
    assert (plan.patch_size, plan.depth) == ((96, 96), 4)
    assert plan.estimated_peak_gb <= 8


def test_hippocampus_plan_fits_the_small_volumes(shared_data, tmp_path) -> None:
    fp = fingerprint(Decathlon(shared_data / "msd-hippocampus", classes=None), cache_dir=tmp_path)
    plan = make_plan(fp, memory_gb=8)
    assert plan.classes == 3
    assert all(p <= s for p, s in zip(plan.patch_size, fp.median_shape, strict=True))
    assert plan.depth == 3
    assert plan.estimated_peak_gb <= 8
