"""Padding to the sizes a model accepts, and the crop that undoes it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pad_to_multiple(x: Tensor, multiple: int, value: float = 0.0) -> tuple[Tensor, tuple[slice, ...]]:
    """Pad the spatial axes of ``(B, C, *spatial)`` at their end up to a multiple; return the crop back.

    The models refuse sizes not divisible by 2^depth rather than pad silently; inference pads here.
    """
    sizes = x.shape[2:]
    pad: list[int] = []
    for s in reversed(sizes):
        pad += [0, -s % multiple]
    crop = (slice(None), slice(None), *(slice(0, s) for s in sizes))
    return (F.pad(x, pad, value=value) if any(pad) else x), crop
