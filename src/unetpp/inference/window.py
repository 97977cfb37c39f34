"""N-D sliding window, window positions, importance map, default window and flip TTA: tensors only.

Nothing here knows a model or a file: :func:`sliding_window` takes any function that maps windows
``(n, C, *roi)`` to predictions ``(n, K, *roi)``, so 2D and 3D, eager models and ONNX Runtime share it.

* Windows overlap and are batched; their predictions are blended with a Gaussian importance map (the
  window centre is trusted more than its border, where the receptive field is cut), as MONAI and
  nnU-Net do. Window positions follow MONAI's ``sliding_window_inference``.
* Images smaller than the window, or whose size the model cannot take (UNet++ needs sizes divisible
  by 2^depth), are padded and the output is cropped back, so the result has the input's size.
* Flip test-time augmentation (:func:`with_flips`) averages over every flip of the spatial axes inside
  each window, so it composes with the tiling.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError, InputShapeError
from ..utils.padding import pad_end

Blend = Literal["gaussian", "constant"]
BLENDS = ("gaussian", "constant")


def sliding_window(
    predict_fn: Callable[[Tensor], Tensor],
    image: Tensor,
    roi_size: int | Sequence[int] | None,
    overlap: float = 0.5,
    blend: Blend = "gaussian",
    sw_batch_size: int = 4,
    *,
    multiple: int = 1,
    sigma_scale: float = 0.125,
) -> Tensor:
    """Run `predict_fn` on overlapping windows of `image` and blend the results into one map.

    Window positions follow MONAI's ``sliding_window_inference``: a step of ``int(roi * (1 - overlap))``
    per axis, the last window flush with the border, so both tile an image the same way. Each window
    covers all ``B`` images, and ``sw_batch_size`` windows go through `predict_fn` together.

    Args:
        predict_fn: maps ``(n, C, *roi)`` to ``(n, K, *roi)`` (e.g. probabilities).
        image: ``(B, C, *spatial)``.
        roi_size: window size per spatial axis (an int for all axes); ``None`` is the whole image. A
            window larger than the image shrinks to the image (rounded up to `multiple`), and the image
            is padded with zeros to the window and cropped back, so the output has the input's size.
        overlap: fraction of a window shared with its neighbour along each axis, in [0, 1).
        blend: ``"gaussian"`` weights each window by a Gaussian of sigma ``sigma_scale * roi`` centred
            on it (fewer seams where the receptive field is cut at the window border); ``"constant"``
            averages overlapping windows equally.
        sw_batch_size: windows per call of `predict_fn`.
        multiple: every window size must be divisible by it (2^depth for a UNet++).
        sigma_scale: see `blend`.

    Returns:
        ``(B, K, *spatial)`` float32 on `image`'s device.

    Raises:
        ConfigError: a bad argument (the value is in the message), or a window not divisible by `multiple`.
        InputShapeError: `image` is not ``(B, C, *spatial)`` or `predict_fn` returns the wrong shape.
    """
    if image.ndim < 3:
        raise InputShapeError(f"image must be (B, C, *spatial), got shape {tuple(image.shape)}")
    check_window_args(overlap, blend, sw_batch_size, multiple)
    size = tuple(int(s) for s in image.shape[2:])
    roi = window_size(size, roi_size, multiple)
    padded = tuple(max(s, r) for s, r in zip(size, roi, strict=True))
    image = pad_end(image, padded)
    windows = [
        tuple(slice(a, a + r) for a, r in zip(starts, roi, strict=True))
        for starts in itertools.product(*(window_starts(s, r, overlap) for s, r in zip(padded, roi, strict=True)))
    ]
    weight = importance_map(roi, blend, sigma_scale, str(image.device))  # (*roi)
    batch = image.shape[0]
    out: Tensor | None = None
    norm = torch.zeros(padded, device=image.device)
    for first in range(0, len(windows), sw_batch_size):
        chunk = windows[first : first + sw_batch_size]
        pred = predict_fn(torch.cat([image[(..., *w)] for w in chunk]))
        if pred.ndim != image.ndim or pred.shape[0] != batch * len(chunk) or tuple(pred.shape[2:]) != roi:
            raise InputShapeError(
                f"predict_fn returned shape {tuple(pred.shape)} for windows of shape "
                f"{(batch * len(chunk), image.shape[1], *roi)}; it must keep the batch and spatial sizes"
            )
        if out is None:
            out = torch.zeros((batch, pred.shape[1], *padded), device=image.device)
        pred = pred.float()
        for k, w in enumerate(chunk):
            out[(..., *w)].addcmul_(pred[k * batch : (k + 1) * batch], weight)
            norm[w] += weight
    assert out is not None  # there is always at least one window
    out /= norm
    return out[(..., *(slice(0, s) for s in size))] if padded != size else out


def check_window_args(overlap: float, blend: str, sw_batch_size: int, multiple: int = 1) -> None:
    """Validate the window options once, with the value in the message.

    Raises:
        ConfigError: a value out of range.
    """
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    if blend not in BLENDS:
        raise ConfigError(f"blend must be one of {BLENDS}, got {blend!r}")
    if not isinstance(sw_batch_size, int) or sw_batch_size < 1:
        raise ConfigError(f"sw_batch_size must be a positive integer, got {sw_batch_size!r}")
    if not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"multiple must be a positive integer, got {multiple!r}")


def window_size(size: Sequence[int], roi_size: int | Sequence[int] | None, multiple: int = 1) -> tuple[int, ...]:
    """The window actually used for an image of `size`: the request, shrunk to the image rounded up to `multiple`.

    Raises:
        ConfigError: a window of the wrong length, non-positive, or not divisible by `multiple`.
    """
    fit = tuple(-(-s // multiple) * multiple for s in size)  # the image rounded up to the multiple
    if roi_size is None:
        return fit
    roi = (roi_size,) * len(size) if isinstance(roi_size, int) else tuple(roi_size)
    if len(roi) != len(size) or not all(isinstance(r, int) and r > 0 for r in roi):
        raise ConfigError(f"roi_size must be {len(size)} positive integers (one per spatial axis), got {roi_size!r}")
    if any(r % multiple for r in roi):
        near = ", ".join(str(max(multiple, r // multiple * multiple)) for r in roi)
        raise ConfigError(f"roi_size {roi} is not divisible by {multiple} (2^depth of the model); use e.g. ({near})")
    return tuple(min(r, f) for r, f in zip(roi, fit, strict=True))


# Whole-image passes above these sizes would need several GB for the paper's UNet++ (activations grow with
# the image), so larger inputs go through windows by default: memory stays that of one window batch.
WHOLE_IMAGE_LIMIT = {2: 1024 * 1024, 3: 128**3}
DEFAULT_WINDOW = {2: 512, 3: 96}


def auto_window(size: Sequence[int], multiple: int = 1) -> tuple[int, ...] | None:
    """The default window for an image of `size`: ``None`` (one pass) up to ``WHOLE_IMAGE_LIMIT``, else windows.

    The window is ``DEFAULT_WINDOW`` (512² in 2D, 96³ in 3D) rounded up to `multiple`.
    """
    dims = len(size)
    if math.prod(size) <= WHOLE_IMAGE_LIMIT.get(dims, WHOLE_IMAGE_LIMIT[3]):
        return None
    side = DEFAULT_WINDOW.get(dims, DEFAULT_WINDOW[3])
    return (-(-side // multiple) * multiple,) * dims


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start of each window along one axis; the last window ends at the border (MONAI's positions)."""
    if roi >= size:
        return [0]
    step = max(1, int(roi * (1.0 - overlap)))
    n = math.ceil((size - roi) / step) + 1
    return sorted({min(i * step, size - roi) for i in range(n)})


@lru_cache(maxsize=16)
def importance_map(
    roi: tuple[int, ...], blend: Blend = "gaussian", sigma_scale: float = 0.125, device: str = "cpu"
) -> Tensor:
    """Weight of each voxel of a window, largest at the centre; cached because every image reuses it.

    The Gaussian has sigma ``sigma_scale * roi`` per axis (nnU-Net and MONAI use 1/8), is scaled to a
    maximum of 1 and floored at 1e-3 (as MONAI does) so that border voxels covered by one window only
    keep a usable weight. The returned tensor is shared: do not modify it in place.
    """
    if blend == "constant":
        return torch.ones(roi, device=device)
    weight = torch.ones((), dtype=torch.float64)
    for r in roi:
        x = torch.arange(r, dtype=torch.float64) - (r - 1) / 2
        g = torch.exp(-0.5 * (x / (sigma_scale * r)) ** 2)
        weight = weight[..., None] * g
    return (weight / weight.max()).clamp_min(1e-3).float().to(device)


def flip_axes(spatial_dims: int) -> list[tuple[int, ...]]:
    """The tensor axes of every subset of the spatial axes of ``(N, C, *spatial)``, the empty one (identity) first."""
    return [
        tuple(a + 2 for a in sub)
        for k in range(spatial_dims + 1)
        for sub in itertools.combinations(range(spatial_dims), k)
    ]


def with_flips(fn: Callable[[Tensor], Tensor], spatial_dims: int) -> Callable[[Tensor], Tensor]:
    """Flip test-time augmentation: the mean of ``flip(fn(flip(x)))`` over every subset of spatial axes.

    2^spatial_dims passes (4 in 2D, 8 in 3D, the identity included), run one after the other so that
    memory stays that of one pass. For a flip-equivariant `fn` the result equals ``fn(x)``.
    """
    axes = flip_axes(spatial_dims)

    def run(x: Tensor) -> Tensor:
        total = fn(x).float()
        for dims in axes[1:]:
            total += fn(x.flip(dims)).float().flip(dims)
        return total / len(axes)

    return run


__all__ = [
    "BLENDS",
    "DEFAULT_WINDOW",
    "WHOLE_IMAGE_LIMIT",
    "Blend",
    "auto_window",
    "check_window_args",
    "flip_axes",
    "importance_map",
    "sliding_window",
    "window_size",
    "window_starts",
    "with_flips",
]
