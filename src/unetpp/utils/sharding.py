"""``--part k/n``: split a list of work (study runs, cohort images) over independent jobs, nnU-Net's way.

Part k of n takes items k-1, k-1+n, k-1+2n, ... of a fixed order, so the n parts are disjoint, cover
everything, and need no communication: a SLURM array of n jobs each given its own k does all the work
exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ..errors import ConfigError

T = TypeVar("T")


def parse_part(text: str | None) -> tuple[int, int] | None:
    """``"k/n"`` -> ``(k, n)`` with 1 <= k <= n; None stays None.

    Raises:
        ConfigError: anything else.
    """
    if text is None:
        return None
    k, sep, n = str(text).partition("/")
    try:
        part = (int(k), int(n))
    except ValueError:
        part = (0, 0)
    if not sep or not 1 <= part[0] <= part[1]:
        raise ConfigError(f"--part must be k/n with 1 <= k <= n (e.g. 2/4), got {text!r}")
    return part


def take_part(items: Sequence[T], part: tuple[int, int] | None) -> list[T]:
    """Part k of n of `items` (all of them for ``None``)."""
    if part is None:
        return list(items)
    k, n = part
    return list(items[k - 1 :: n])
