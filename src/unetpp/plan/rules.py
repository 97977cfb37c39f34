"""From a data fingerprint to a training plan: channels, classes, mask handling, patch, depth, batch, normalisation.

nnU-Net's rule-based configuration (Isensee et al., Nat. Methods 2021), adapted to a network that
pools every axis by 2 (the UNet++ grid): the patch follows the median image (never larger), the
depth follows the patch (each level at least ``MIN_BOTTLENECK`` voxels), anisotropic volumes are
resampled towards isotropy, and the batch is the largest that the memory model of
:mod:`unetpp.plan.memory` fits into the budget. Where even a batch of ``MIN_USEFUL_BATCH`` would not fit,
memory-efficient training (recomputation, about 0.6x the training memory at about the same time) is
switched on before the patch is shrunk: a smaller patch costs context, recomputation only time.
Every choice is a plain field of :class:`Plan` with the reason beside it; any field can be overridden,
and what depends on it is derived from the override.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..utils.precision import canonical_precision, training_precision
from ..utils.system import memory_budget_bytes
from .fingerprint import Fingerprint
from .memory import GB, estimate_peak_bytes, fit_batch, needs_recompute
from .record import Plan, as_tuples, checked_fields, sizes_text

MAX_DEPTH = 4  # the paper's L
MIN_BOTTLENECK = 4  # voxels per axis at the deepest level
PATCH_CEILING = {(2, "cpu"): 96, (2, "cuda"): 256, (3, "cpu"): 64, (3, "cuda"): 128}  # per axis; 96²: the paper
# where objects are large the patch grows to hold the median object with context, up to these sizes per axis; not
# on a CPU, where a larger patch at a smaller batch scored lower at equal wall clock in 2D and 3D
# (benchmarks/RESULTS.md: 176² at batch 4 against 96² at batch 16 on large objects; the hippocampus' whole volume)
OBJECT_PATCH_CEILING = {(2, "cuda"): 512, (3, "cuda"): 192}
OBJECT_CONTEXT = 2.0  # patch side / the median object's side (the object and as much context around it)
BATCH_CAP = {2: 16, 3: 8}
MIN_USEFUL_BATCH = 2  # below this batch norm's statistics are noise; recompute rather than go lower
BATCH_DATA_SHARE = 0.05  # nnU-Net: a batch covers at most 5% of the data set's voxels (but >= 2)
GREY_SHARE = 0.9  # colour images below this share of colour -> train on grey
ANISOTROPY = 3.0  # spacing ratio from which volumes are resampled (nnU-Net's threshold)
CACHE_SHARE = 0.25  # keep decoded images in memory only while they take at most this share of the budget
DATA_COPIES = 2  # the cache lives in the main process (validation) and in the loader's worker
WORKER_BYTES = 0.5 * GB  # a data-loading worker process (Python + torch), beyond its cache


# --------------------------------------------------------------------------------------------- rules


def make_plan(
    fp: Fingerprint,
    model_name: str = "unet++",
    memory_gb: float | None = None,
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    *,
    precision: str | None = None,
    workers: int = 1,
) -> Plan:
    """Derive a plan from a fingerprint; `overrides` (plan field -> value) win, and what depends on them follows.

    `precision` None: bf16 where the device computes it natively, else float32 (or float16 on a GPU).

    Raises:
        DataError: the data set has no masks, or images too small for any network.
        ConfigError: an unknown or invalid override, or a memory budget too small for batch 1 at the
            smallest reasonable patch (one line: the estimate, the budget and what would fit).
    """
    over = checked_fields(overrides or {})  # types and ranges: batch_size=abc is one line naming the field
    why: dict[str, str] = dict.fromkeys(over, "set by you")
    model_name = str(over.get("model", model_name))
    dev = "cuda" if str(device).startswith("cuda") else "cpu"
    dims = fp.spatial_dims
    precision = _precision(precision, dev, why)
    channels, in_channels = _input(fp, over, why)
    classes, threshold = _classes(fp, over, why)
    target, shape = _grid(fp, over, why)
    depth, patch, widths = _network(shape, _object_side(fp, target), dims, dev, model_name, over, why)
    normalize, clip, mean, std = _intensities(fp, over, why)
    budget, cache, other = _memory(fp, in_channels, target, memory_gb, dev, workers, over, why)
    model_cfg = {
        "name": model_name,
        "in_channels": in_channels,
        "classes": classes,
        "depth": depth,
        "widths": widths,
        "spatial_dims": dims,
    }
    cap = _batch_cap(fp, patch, shape, PATCH_CEILING[(dims, dev)])
    patch, batch = _batch(model_cfg, patch, depth, budget, other, cap, precision, dev, over, why)
    efficient = model_cfg["memory_efficient"]
    peak = estimate_peak_bytes(model_cfg, patch, batch, True, precision, dev) + other
    why.setdefault("memory_budget_gb", "given" if memory_gb is not None else f"most of the free {dev} memory now")
    plan = Plan(
        model=model_name,
        spatial_dims=dims,
        in_channels=in_channels,
        channels=channels,
        classes=classes,
        mask_threshold=None if threshold is None else float(threshold),
        depth=depth,
        widths=widths,
        patch_size=tuple(patch),
        batch_size=batch,
        normalize=normalize,
        intensity_clip=clip,
        intensity_mean=mean,
        intensity_std=std,
        target_spacing=None if target is None else tuple(float(t) for t in target),
        cache=cache,
        device=dev,
        precision=precision,
        memory_budget_gb=round(budget / GB, 3),
        estimated_peak_gb=round(peak / GB, 3),
        memory_efficient=bool(efficient),
        reasons=why,
    )
    rest = {k: as_tuples(v) for k, v in over.items() if k not in _DERIVED}
    return dataclasses.replace(plan, **rest) if rest else plan


# overrides that make_plan reads while deriving the others; the rest are copied into the plan as given
_DERIVED = frozenset(
    {"model", "channels", "in_channels", "classes", "mask_threshold", "target_spacing", "depth", "patch_size"}
    | {"widths", "normalize", "cache", "batch_size", "memory_efficient"}
)


# --------------------------------------------------------------------------------------------- steps
# Each step derives a few plan fields from the fingerprint, lets the user's overrides win, and writes its reason
# into `why` unless the user set the field.


def _precision(precision: str | None, dev: str, why: dict[str, str]) -> str:
    """bf16 where the device computes it natively, else float32 (float16 on a GPU); a given one is checked."""
    if precision is None:
        precision, why["precision"] = training_precision(dev)
    else:
        precision, why["precision"] = canonical_precision(precision, where="precision"), "set by you"
    return precision


def _input(fp: Fingerprint, over: dict[str, Any], why: dict[str, str]) -> tuple[str, int]:
    """Channel mode and input channels (``--channels rgb`` gives 3)."""
    channels, in_channels, reason = _channels(fp)
    channels = over.get("channels", channels)
    in_channels = int(over.get("in_channels", {"grey": 1, "rgb": 3}.get(channels, in_channels)))
    why.setdefault("channels", reason)
    return channels, in_channels


def _classes(fp: Fingerprint, over: dict[str, Any], why: dict[str, str]) -> tuple[int, float | None]:
    """Classes (binary or a label map) and the mask threshold of noisy masks."""
    classes, threshold, reason = _labels(fp)
    classes, threshold = int(over.get("classes", classes)), over.get("mask_threshold", threshold)
    why.setdefault("classes", reason)
    return classes, threshold


def _grid(
    fp: Fingerprint, over: dict[str, Any], why: dict[str, str]
) -> tuple[tuple[float, ...] | None, tuple[int, ...]]:
    """The target spacing of anisotropic volumes (None: as stored) and the median image shape on that grid."""
    target = over.get("target_spacing", _target_spacing(fp))
    if target is not None:
        ratio = f"ratio {fp.anisotropy:.1f} >= {ANISOTROPY:g}"
        why.setdefault(
            "target_spacing", f"voxels {sizes_text(fp.median_spacing)} ({ratio}): resampled, predictions back"
        )
    return target, _grid_shape(fp.median_shape, fp.median_spacing, target)


def _network(
    shape: tuple[int, ...],
    object_side: float,
    dims: int,
    dev: str,
    model_name: str,
    over: dict[str, Any],
    why: dict[str, str],
) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Depth, patch and widths: as deep as the median image allows; the patch at most the device's ceiling, or on a
    GPU larger (up to ``OBJECT_PATCH_CEILING``) where it must hold the median object with context."""
    ceiling, reason = PATCH_CEILING[(dims, dev)], ""
    wanted = math.ceil(OBJECT_CONTEXT * object_side)
    if wanted > ceiling and (dims, dev) in OBJECT_PATCH_CEILING:
        ceiling = min(wanted, OBJECT_PATCH_CEILING[(dims, dev)])
        reason = f"; median object about {object_side:.0f} per axis: {OBJECT_CONTEXT:g}x that for context"
    elif wanted > ceiling:
        reason = (
            f"; median object about {object_side:.0f} per axis, not grown for it on a CPU: a larger patch at a "
            "smaller batch scored lower at equal time"
        )
    depth = int(over.get("depth", 0)) or _fit_depth(shape, ceiling)
    patch = tuple(int(p) for p in over.get("patch_size", ())) or _fit_patch(shape, ceiling, depth)
    _check_patch(patch, depth, dims)
    widths = tuple(int(w) for w in over.get("widths", ())) or _default_widths(model_name, depth)
    why.setdefault(
        "depth", f"each level >= {MIN_BOTTLENECK} voxels on a {sizes_text(patch)} patch (at most {MAX_DEPTH})"
    )
    why.setdefault(
        "patch_size",
        f"median image {sizes_text(shape)}, at most {ceiling} per axis{reason}, divisible by {2**depth}",
    )
    return depth, patch, widths


def _object_side(fp: Fingerprint, target: tuple[float, ...] | None) -> float:
    """The side of a cube as large as the median object of the class with the largest objects (on the grid)."""
    medians = [float(o.get("median", 0.0)) for o in fp.objects]
    voxels = max(medians, default=0.0) * _grid_growth(fp, target)
    return voxels ** (1 / fp.spatial_dims) if voxels > 0 else 0.0


def _intensities(fp: Fingerprint, over: dict[str, Any], why: dict[str, str]) -> tuple[str, Any, Any, Any]:
    """The normalisation: per-image z-scores, or CT's data-set statistics."""
    normalize, clip, mean, std, reason = _normalisation(fp)
    normalize = over.get("normalize", normalize)
    why.setdefault("normalize", reason)
    return normalize, clip, mean, std


def _memory(
    fp: Fingerprint,
    in_channels: int,
    target: tuple[float, ...] | None,
    memory_gb: float | None,
    dev: str,
    workers: int,
    over: dict[str, Any],
    why: dict[str, str],
) -> tuple[float, bool, float]:
    """The budget (bytes), whether the decoded data set is cached, and the bytes other than the model's."""
    budget = float(memory_gb) * GB if memory_gb is not None else memory_budget_bytes(dev)
    # decoded as trained: `in_channels` float32 channels (grey DSB: 1 of its 4 stored) and an int64 mask
    per_voxel = (4 * in_channels + 8) / (4 * fp.channels + 8)
    data_bytes = fp.n_items * fp.bytes_per_item * _grid_growth(fp, target) * per_voxel
    cache = bool(over.get("cache", data_bytes * DATA_COPIES <= CACHE_SHARE * budget))
    why.setdefault("cache", f"decoded data set about {data_bytes / GB:.2f} GB per copy")
    other = WORKER_BYTES * workers + (data_bytes * DATA_COPIES if cache else 0)
    return budget, cache, other


def _batch(
    model_cfg: dict[str, Any],
    patch: tuple[int, ...],
    depth: int,
    budget: float,
    other: float,
    cap: int,
    precision: str,
    dev: str,
    over: dict[str, Any],
    why: dict[str, str],
) -> tuple[tuple[int, ...], int]:
    """Memory-efficient training (set in `model_cfg`), then the patch and batch that fit the budget.

    Raises:
        ConfigError: a batch the user set that does not fit (naming the estimate, the budget and what fits).
    """
    wanted = int(over.get("batch_size", min(MIN_USEFUL_BATCH, cap)))
    efficient = over.get("memory_efficient")
    if efficient is None:
        efficient, why["memory_efficient"] = _recompute(model_cfg, patch, wanted, budget - other, precision, dev)
    model_cfg["memory_efficient"] = bool(efficient)
    if "batch_size" not in over:
        patch, batch = _fit_patch_and_batch(model_cfg, patch, depth, budget, other, cap, precision, dev, over)
        why.setdefault("batch_size", f"largest <= {cap} within the budget")
        return patch, batch
    batch = int(over["batch_size"])
    need = estimate_peak_bytes(model_cfg, patch, batch, True, precision, dev) + other
    if need > budget:
        fits = fit_batch(model_cfg, patch, budget, batch, precision, dev, reserved=other)
        raise ConfigError(
            f"batch_size={batch} needs about {need / GB:.2f} GB, over the memory budget of {budget / GB:.2f} GB; "
            f"batch_size={fits} fits, or raise --memory-gb"
        )
    return patch, batch


def _channels(fp: Fingerprint) -> tuple[str, int, str]:
    if fp.channel_kind == "grey":
        return "grey", 1, "grey images"
    if fp.channel_kind == "grey-as-colour":
        return "grey", 1, f"{fp.channels}-channel files with grey content (equal colour channels)"
    if fp.channel_kind == "rgb":
        colour = 1 - fp.grey_fraction
        if fp.grey_fraction >= GREY_SHARE:
            return "grey", 1, f"{colour:.0%} of the images are colour, the rest grey: colour ones are made grey"
        return "rgb", 3, f"colour images ({colour:.0%} of those read)"
    return "keep", fp.channels, f"{fp.channels} channels ({', '.join(fp.modalities)})"


def _labels(fp: Fingerprint) -> tuple[int, float | None, str]:
    kind = fp.label_kind
    if kind == "unlabelled":
        raise DataError(f"{fp.source}: no masks found; training needs a mask per image")
    if kind in ("binary", "binary-255"):
        return 1, None, f"binary masks {sorted({int(v) for v in fp.label_values})}"
    if kind in ("noisy-binary", "soft"):
        return (
            1,
            fp.mask_threshold,
            f"{kind} masks ({fp.noisy_fraction:.2%} of pixels between the two values): thresholded at the midpoint",
        )
    k = max(fp.classes) + 1
    if k <= 2:
        return 1, None, "label map with one foreground class"
    return k, None, f"label map with classes {list(fp.classes)} (background included)"


def _target_spacing(fp: Fingerprint) -> tuple[float, ...] | None:
    """Isotropic along the coarse axes: every axis coarser than ANISOTROPY x the finest gets the finest spacing.

    The grid pools every axis by 2 with isotropic kernels, so it sees isotropic voxels best; nnU-Net
    instead pools the coarse axis later, which this network cannot.
    """
    if fp.spatial_dims != 3 or fp.anisotropy < ANISOTROPY:
        return None
    finest = min(fp.median_spacing)
    return tuple(finest if s >= ANISOTROPY * finest else float(s) for s in fp.median_spacing)


def _grid_shape(
    shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...] | None
) -> tuple[int, ...]:
    if target is None:
        return tuple(shape)
    return tuple(int(round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def _grid_growth(fp: Fingerprint, target: tuple[float, ...] | None) -> float:
    return 1.0 if target is None else math.prod(s / t for s, t in zip(fp.median_spacing, target, strict=True))


def _fit_depth(shape: tuple[int, ...], ceiling: int) -> int:
    for depth in range(MAX_DEPTH, 0, -1):
        m = 2**depth
        if all(min(n, ceiling) // m >= MIN_BOTTLENECK for n in shape):
            return depth
    if all(n >= 2 for n in shape):
        return 1
    raise DataError(f"images of median size {sizes_text(shape)} are too small for a network that halves every axis")


def _fit_patch(shape: tuple[int, ...], ceiling: int, depth: int) -> tuple[int, ...]:
    m = 2**depth
    return tuple(max(m, min(n, ceiling) // m * m) for n in shape)


def _check_patch(patch: tuple[int, ...], depth: int, dims: int) -> None:
    if len(patch) != dims or any(p % 2**depth or p < 2**depth for p in patch):
        raise ConfigError(
            f"patch_size {list(patch)} must have {dims} sizes, each a multiple of {2**depth} (2^depth, depth {depth})"
        )


def _default_widths(model_name: str, depth: int) -> tuple[int, ...]:
    from ..models.registry import PAPER_WIDTHS, WIDE_WIDTHS

    base = WIDE_WIDTHS if model_name == "wide_unet" else PAPER_WIDTHS
    if depth + 1 > len(base):
        raise ConfigError(f"depth {depth} needs {depth + 1} widths; set widths")
    return tuple(base[: depth + 1])


def _batch_cap(fp: Fingerprint, patch: tuple[int, ...], shape: tuple[int, ...], ceiling: int) -> int:
    """At most BATCH_CAP, 5% of the data set's voxels, and the voxels of BATCH_CAP patches at the device's
    ceiling: a patch grown for large objects takes a smaller batch, so a step takes about as long as before."""
    dims = fp.spatial_dims
    share = BATCH_DATA_SHARE * fp.n_items * math.prod(shape) / math.prod(patch)
    step = BATCH_CAP[dims] * ceiling**dims / math.prod(patch)
    return int(max(MIN_USEFUL_BATCH, min(BATCH_CAP[dims], share, step)))


def _fit_patch_and_batch(
    model_cfg: dict[str, Any],
    patch: tuple[int, ...],
    depth: int,
    budget: float,
    reserved: float,
    cap: int,
    precision: str,
    device: str,
    over: Mapping[str, Any],
) -> tuple[tuple[int, ...], int]:
    """Shrink the patch (largest axis first, down to MIN_BOTTLENECK * 2^depth) until batch 1 fits; then the batch."""
    m, smallest = 2**depth, MIN_BOTTLENECK * 2**depth
    patch = tuple(patch)
    while (
        "patch_size" not in over
        and estimate_peak_bytes(model_cfg, patch, 1, True, precision, device) + reserved > budget
    ):
        axis = int(np.argmax(patch))
        if patch[axis] - m < smallest:
            break
        patch = tuple(p - m if a == axis else p for a, p in enumerate(patch))
    return patch, fit_batch(model_cfg, patch, budget, cap, precision, device, reserved)


def _recompute(
    model_cfg: dict[str, Any], patch: tuple[int, ...], batch: int, budget: float, precision: str, device: str
) -> tuple[bool, str]:
    """Whether to train memory-efficiently: only when `batch` at `patch` does not fit otherwise, and why."""
    over, stored, recomputed = needs_recompute(model_cfg, patch, batch, budget, precision, device)
    if not over:
        return False, f"batch {batch} fits without recomputation"
    return True, (
        f"batch {batch} of {sizes_text(patch)} needs about {stored / GB:.2f} GB stored, "
        f"{recomputed / GB:.2f} GB recomputed (budget {budget / GB:.2f} GB)"
    )


def _normalisation(fp: Fingerprint) -> tuple[str, Any, Any, Any, str]:
    if any(m.upper() == "CT" for m in fp.modalities):
        clip = tuple((s["p00_5"], s["p99_5"]) for s in fp.intensity)
        mean = tuple(s["mean"] for s in fp.intensity)
        std = tuple(max(s["std"], 1e-8) for s in fp.intensity)
        return "ct", clip, mean, std, "CT: clip to the foreground's 0.5-99.5th percentiles, z-score with the data set's"
    return "zscore", None, None, None, f"per-image z-score ({', '.join(sorted(set(fp.modalities)))} intensities)"


# --------------------------------------------------------------------------------------------- printing
