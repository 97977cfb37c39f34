"""Padding to the sizes a model or a patch needs, and the crop that undoes it."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor


def pad_end(x: Tensor, size: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad the last ``len(size)`` axes of `x` at their end up to at least `size` (no copy when they fit)."""
    pad: list[int] = []
    for have, want in zip(reversed(x.shape[-len(size) :]), reversed(size), strict=True):
        pad += [0, max(0, want - have)]  # F.pad lists the last axis first
    return F.pad(x, pad, value=value) if any(pad) else x


def pad_to_multiple(x: Tensor, multiple: int, value: float = 0.0) -> tuple[Tensor, tuple[slice, ...]]:
    """Pad the spatial axes of ``(B, C, *spatial)`` at their end up to a multiple; return the crop back.

    The models refuse sizes not divisible by 2^depth rather than pad silently; inference pads here.
    """
    sizes = x.shape[2:]
    crop = (slice(None), slice(None), *(slice(0, s) for s in sizes))
    return pad_end(x, [s + -s % multiple for s in sizes], value), crop
