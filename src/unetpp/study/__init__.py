"""Which variant wins on *my* data? The paper's controlled comparisons as a tool.

A study trains several models of the family (``unet``, ``wide_unet``, ``unet+:ds=false``, ``unet++``...)
with several seeds on one data set for the same budget, scores them on held-out images (every head
and the ensemble), and reports mean ± s.d. over seeds, t-tests against a reference, scores by object
size, learning curves over epochs and time, and the pruning trade-off (Zhou et al., UNet++, IEEE TMI
2019, doi:10.1109/TMI.2019.2959609: Tables I and IV, Figs. 5-7).

Example:
    >>> from unetpp.study import StudySpec, compare
    >>> spec = StudySpec(data="data/em", models=("unet", "unet++"), seeds=(0, 1, 2), epochs=30, test_fraction=0.2)
    >>> print(compare(spec, "studies/em"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from ..utils.sharding import parse_part
from .report import write_report
from .reproduce import PRESETS, list_presets, load_preset
from .runner import run_study
from .spec import ModelSpec, StudySpec


def compare(
    spec: StudySpec, out: str | Path, *, part: tuple[int, int] | None = None, command: str | None = None
) -> str:
    """Train what is missing of `spec` (or of its `part`) into `out`, write the report; returns the main table."""
    run_study(spec, out, part=part)
    return write_report(spec, out, command)


__all__ = [
    "PRESETS",
    "ModelSpec",
    "StudySpec",
    "compare",
    "list_presets",
    "load_preset",
    "parse_part",
    "run_study",
    "write_report",
]
