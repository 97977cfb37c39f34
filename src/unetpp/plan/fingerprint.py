"""What a data set is: channels, shapes, spacing, intensities, label values, classes and object sizes.

The data fingerprint of nnU-Net (Isensee et al., "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation", Nat. Methods 2021): read once, summarised in a few
numbers, from which :mod:`unetpp.plan.rules` derives a training plan. Reading is bounded: at most
``max_items`` images are read (evenly spaced over the set) and intensity statistics use at most
``VOXELS_PER_IMAGE`` foreground voxels of each, as nnU-Net does. The result is cached as JSON keyed
by the files' names, sizes and modification times, so a second call on unchanged data is instant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import ArrayDataset, Item, SegmentationDataset
from ..data.io import (
    PILLOW_SUFFIXES,
    TIFF_SUFFIXES,
    read_mask_values,
    read_with_meta,
    stem,
    suffix,
)
from ..data.mask_values import full_scale_binary, value_counts
from ..errors import ConfigError, DataError
from ..utils.atomic import atomic_write
from . import labels

logger = logging.getLogger(__name__)

VERSION = 2  # 2: 0/65535 masks are binary, sparse label maps refused (older caches are recomputed)
VOXELS_PER_IMAGE = 10_000  # foreground voxels sampled per image for intensity statistics (nnU-Net's number)


Source = SegmentationDataset | Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str] | None]]


@dataclass(frozen=True)
class Fingerprint:
    """A data set's properties that training choices depend on (plain types: saved as JSON/YAML).

    Shapes and spacings are per spatial axis in the files' order (NIfTI: X, Y, Z). ``channel_kind`` is
    "grey" (one channel), "grey-as-colour" (RGB/RGBA files whose colour channels are equal), "rgb"
    (colour) or "multi-modal" (several channels of another kind, e.g. MRI sequences). ``label_kind`` is
    "binary" ({0, 1}), "binary-255" ({0, 255}), "noisy-binary" (two values blurred by JPEG or resizing:
    thresholded at ``mask_threshold``), "soft" (non-integer or too many values; thresholded too),
    "label-map" (class ids) or "unlabelled".
    """

    source: str
    n_items: int
    n_sampled: int
    spatial_dims: int
    channels: int
    channel_kind: str
    grey_fraction: float  # share of sampled multi-channel colour images whose colour channels are equal
    modalities: tuple[str, ...]
    dtype: str
    ids: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    median_shape: tuple[int, ...]
    min_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    spacings: tuple[tuple[float, ...], ...]
    median_spacing: tuple[float, ...]
    anisotropy: float  # largest / smallest axis of the median spacing
    intensity: tuple[dict[str, float], ...]  # per channel, over foreground: mean, std, p00_5, p99_5, min, max
    value_range: tuple[float, float]  # lowest and highest value of all voxels read (CT: air is about -1000)
    label_kind: str
    label_values: tuple[float, ...]  # mask values seen, 0/255 files read as 0/1 (the first MAX_LABELS of plan.labels)
    mask_threshold: float | None  # the midpoint for noisy/soft masks, else None
    noisy_fraction: float  # share of mask voxels that are neither of the two clean values
    classes: tuple[int, ...]  # class ids present once masks are read (after thresholding)
    class_frequencies: tuple[float, ...]  # share of voxels of class id 0, 1, ...
    objects: tuple[dict[str, float], ...]  # per foreground class: class, per_image, median, p05, p95 (voxels)
    bytes_per_item: float  # one decoded sample in memory: float32 image + int64 mask (sizes the cache)
    key: str = ""
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists: plain JSON/YAML types

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        from .cached import check_fields

        if not isinstance(d, dict):
            raise DataError(f"fingerprint is a {type(d).__name__}, not a mapping; delete the cached file to rebuild it")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DataError(f"fingerprint has unknown field(s) {sorted(unknown)}; delete the cached file to rebuild it")
        values = {k: _tuples(v) for k, v in d.items()}
        check_fields(cls, values)  # a damaged cache must fail here, not as a TypeError inside the plan rules
        return cls(**values)


def _tuples(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return x


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/unetpp/fingerprints`` (``~/.cache/...``): never inside the user's data folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unetpp" / "fingerprints"


# --------------------------------------------------------------------------------------------- entry point


def fingerprint(
    source: Source,
    *,
    spatial_dims: int | None = None,
    max_items: int = 200,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> Fingerprint:
    """Read (a sample of) a data set and summarise it.

    Args:
        source: a :class:`~unetpp.data.SegmentationDataset` (its ``items`` and readers are used, so any
            layout works: ISBI stacks, DSB instance masks...) or a list of ``(image_path, mask_path)``
            pairs (``mask_path`` may be None).
        spatial_dims: 2 or 3 for a list of paths; None takes it from the files. A data set's own wins.
        max_items: read at most this many items, evenly spaced over the set.
        cache_dir: where fingerprints are cached (default :func:`default_cache_dir`).
        use_cache: False always reads the files (the result is still cached).

    Raises:
        DataError: an empty source, or an unreadable file (naming it).
    """
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise ConfigError(f"--max-items: got {max_items!r}; expected an integer >= 1 (images to read)")
    reader = _Reader(source, spatial_dims)
    if not reader.items:
        raise DataError(f"{reader.source}: the data set has no items; check the path and layout")
    key = reader.key(max_items)
    cache = (cache_dir or default_cache_dir()) / f"{key[:20]}.json" if key else None
    if cache is not None and use_cache and cache.is_file():
        try:
            return Fingerprint.from_dict(json.loads(cache.read_text()))
        except (OSError, ValueError, TypeError, DataError) as e:
            reason = str(e).split(";")[0][:120] if isinstance(e, DataError) else type(e).__name__
            logger.warning(
                "unetpp: note: %s: cached fingerprint unreadable (%s); rebuilt from the files", cache, reason
            )
    fp = dataclasses.replace(_compute(reader, max_items), key=key)
    if cache is not None:
        try:
            text = json.dumps(fp.to_dict())
            atomic_write(cache, lambda tmp: tmp.write_text(text), overwrite=True)
        except (OSError, DataError) as e:  # a read-only home (or a folder in the cache's place) must not stop a run
            logger.debug("could not cache the fingerprint in %s: %s", cache, e)
    return fp


class _Reader:
    """Uniform access to the items of a data set or a list of path pairs."""

    def __init__(self, source: Source, spatial_dims: int | None) -> None:
        if isinstance(source, SegmentationDataset):
            self.dataset: SegmentationDataset | None = source
            self.items = list(source.items)
            self.spatial_dims: int | None = source.spatial_dims
            root = getattr(source, "root", None)
            self.source = str(root) if root is not None else repr(source)
            info = getattr(source, "info", None) or {}
            modality = info.get("modality") if isinstance(info, dict) else None
            self.modalities = tuple(str(v) for _, v in sorted(modality.items())) if isinstance(modality, dict) else ()
        else:
            self.dataset = None
            self.items = [Item(stem(i), Path(i), None if m is None else Path(m)) for i, m in source]
            self.spatial_dims = spatial_dims
            self.source = str(Path(os.path.commonpath([str(i.image.parent) for i in self.items]))) if self.items else ""
            self.modalities = ()

    def key(self, max_items: int) -> str:
        """Hash of every file's name, size and mtime (empty when an item is not a file: no caching)."""
        h = hashlib.sha256(f"v{VERSION} n{max_items} d{self.spatial_dims} {type(self.dataset).__name__}".encode())
        for item in self.items:
            masks = item.mask if isinstance(item.mask, tuple) else (item.mask,) if item.mask is not None else ()
            for path in (item.image, *masks):
                try:
                    st = path.stat()
                except OSError:
                    return ""
                # absolute, not resolved: resolving walks every link of every path (2 s for DSB's 30,000 files
                # on each run); a data set reached through another link is only a cache miss
                h.update(f"{item.id}|{item.index}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def image(self, item: Item) -> tuple[np.ndarray, tuple[float, ...]]:
        """Raw image ``(C, *spatial)`` and its spacing."""
        if item.index is None and item.image.is_file():
            arr, meta = read_with_meta(item.image, self.spatial_dims)
            return arr, tuple(float(s) for s in meta.spacing)
        assert self.dataset is not None
        arr = self.dataset.read_image(item)
        return arr, (1.0,) * (arr.ndim - 1)

    def mask(self, item: Item) -> np.ndarray | None:
        """The mask's stored values (a single file), or the data set's class ids (stacks, instance files)."""
        if item.mask is None:  # in-memory arrays (the synthetic layout) hold their masks without files
            return self.dataset.read_mask(item) if isinstance(self.dataset, ArrayDataset) else None
        if isinstance(item.mask, Path) and item.index is None:
            return read_mask_values(item.mask, self.spatial_dims)[0]
        assert self.dataset is not None
        return self.dataset.read_mask(item)


# --------------------------------------------------------------------------------------------- computing


def _compute(reader: _Reader, max_items: int) -> Fingerprint:
    n = len(reader.items)
    picks = sorted(set(np.linspace(0, n - 1, min(n, max_items)).round().astype(int).tolist()))
    rng = np.random.default_rng(0)
    shapes, spacings, ids, dtypes, channel_counts = [], [], [], set(), set()
    grey, colour_images, nbytes = 0, 0, []
    values: Counter = Counter()
    soft_values = False
    n255 = 0  # masks stored as 0/255
    lowest, highest = np.inf, -np.inf
    samples: list[tuple[np.ndarray, np.ndarray | None]] = []  # sampled voxels (C, k) and their stored mask values
    masks: list[np.ndarray | None] = []
    tops: list[tuple[str, float]] = []  # per mask file: its largest value (read as class ids)
    stored: Counter = Counter()  # mask values as stored (0/255 files not read as 0/1)
    raw: dict[int, np.ndarray] = {}  # masks of full-scale binary files as stored, by position in `masks`
    for k in picks:
        item = reader.items[k]
        image, spacing = reader.image(item)
        mask = reader.mask(item)
        if mask is not None and mask.shape != image.shape[1:]:
            raise DataError(
                f"{item.mask if isinstance(item.mask, Path) else item.image}: mask is {mask.shape} but its image is "
                f"{image.shape[1:]}; masks must match their image"
            )
        ids.append(item.id)
        shapes.append(tuple(int(s) for s in image.shape[1:]))
        spacings.append(spacing)
        dtypes.add(str(image.dtype))
        lowest, highest = min(lowest, float(image.min())), max(highest, float(image.max()))
        channel_counts.add(image.shape[0])
        nbytes.append(image[0].size * (4 * image.shape[0] + 8))
        if _is_colour_file(item, image):
            colour_images += 1
            grey += _grey_content(image)
        if mask is not None:
            if mask.dtype.kind == "f" and not np.array_equal(mask, np.round(mask)):
                soft_values = True
            u, c = value_counts(mask)
            if len(stored) <= 4 * labels.MAX_LABELS:
                stored.update(dict(zip(u.tolist(), c.tolist(), strict=True)))
            top = full_scale_binary(u)  # 0/255 (0/65535) means 0/1, file by file, as read_mask reads it
            if top is not None:
                raw[len(masks)] = labels.compact(mask)  # as stored: a threshold applies to these values
                mask, u = (mask == top).astype(np.uint8), (u == top).astype(np.uint8)
                n255 += 1
            tops.append((_mask_name(item), u[-1].item()))
            if len(values) <= 4 * labels.MAX_LABELS:
                values.update(dict(zip(u.tolist(), c.tolist(), strict=True)))
        samples.append(_sample_voxels(image, raw.get(len(masks), mask), rng))  # stored values: any threshold applies
        masks.append(None if mask is None else labels.compact(mask))
    if len(channel_counts) > 1:
        raise DataError(
            f"{reader.source}: images have different numbers of channels {sorted(channel_counts)}; "
            "a data set needs one channel count (convert the odd images)"
        )
    channels = channel_counts.pop()
    labelled = sum(m is not None for m in masks)
    label_kind, threshold, noisy = labels.label_kind(values, soft_values, labelled > 0)
    if threshold is not None and 0 < n255 < labelled:  # clean 0/255 files among noisy ones: they are not noise
        label_kind, threshold, noisy = labels.label_kind(stored, soft_values, True)
        masks = [raw.get(k, m) for k, m in enumerate(masks)]  # thresholded as stored, like the noisy ones
    if label_kind == "binary" and n255 == labelled:
        label_kind = "binary-255"
    if label_kind == "label-map":  # mask values are class ids: refuse what would be hundreds of empty classes
        labels.check_label_map(values, tops)
    class_masks = [None if m is None else labels.class_ids(m, threshold) for m in masks]
    intensity = _intensity(samples, threshold, channels)
    classes, freqs = labels.class_frequencies(class_masks)
    median_spacing = tuple(float(s) for s in np.median(np.array(spacings), axis=0))
    kind = _channel_kind(channels, colour_images, grey, len(picks))
    return Fingerprint(
        source=reader.source,
        n_items=n,
        n_sampled=len(picks),
        spatial_dims=len(shapes[0]),
        channels=channels,
        channel_kind=kind,
        grey_fraction=round(grey / colour_images, 4) if colour_images else float(channels == 1),
        modalities=reader.modalities or (_guess_modality(lowest, highest),) * channels,
        dtype="/".join(sorted(dtypes)),
        ids=tuple(ids),
        shapes=tuple(shapes),
        median_shape=tuple(int(s) for s in np.median(np.array(shapes), axis=0)),
        min_shape=tuple(int(s) for s in np.min(np.array(shapes), axis=0)),
        max_shape=tuple(int(s) for s in np.max(np.array(shapes), axis=0)),
        spacings=tuple(spacings),
        median_spacing=median_spacing,
        anisotropy=round(max(median_spacing) / min(median_spacing), 4),
        intensity=intensity,
        value_range=(lowest, highest),
        label_kind=label_kind,
        label_values=tuple(sorted(values))[: labels.MAX_LABELS],
        mask_threshold=threshold,
        noisy_fraction=noisy,
        classes=classes,
        class_frequencies=freqs,
        objects=labels.objects(class_masks, classes),
        bytes_per_item=float(np.mean(nbytes)),
    )


def _mask_name(item: Item) -> str:
    return str(item.mask if isinstance(item.mask, Path) else item.image)


def _is_colour_file(item: Item, image: np.ndarray) -> bool:
    return image.shape[0] in (2, 3, 4) and suffix(item.image) in PILLOW_SUFFIXES + TIFF_SUFFIXES


def _grey_content(image: np.ndarray) -> bool:
    """Equal colour channels (alpha, the last of 2 or 4, ignored): a grey image stored as RGB(A)."""
    colour = image[:-1] if image.shape[0] in (2, 4) else image
    return all(np.array_equal(colour[0], c) for c in colour[1:])


def _channel_kind(channels: int, colour_images: int, grey: int, n: int) -> str:
    if channels == 1:
        return "grey"
    if colour_images == n:
        return "grey-as-colour" if grey == n else "rgb"
    return "multi-modal"


def _sample_voxels(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to 2 * VOXELS_PER_IMAGE random voxels (C, k), from the non-zero mask when there is one, and their mask values.

    The mask's kind (and so its threshold) is known only once every mask is read; the voxels kept here
    are filtered to foreground afterwards, so whole images need not be kept.
    """
    candidates = np.flatnonzero(mask) if mask is not None else np.zeros(0, dtype=np.int64)
    if candidates.size == 0:
        candidates, mask = np.arange(image[0].size), None
    pick = rng.choice(candidates, size=min(2 * VOXELS_PER_IMAGE, candidates.size), replace=False)
    flat = image.reshape(image.shape[0], -1)
    return flat[:, pick].astype(np.float64), None if mask is None else mask.reshape(-1)[pick]


def _intensity(
    samples: list[tuple[np.ndarray, np.ndarray | None]], threshold: float | None, channels: int
) -> tuple[dict[str, float], ...]:
    """Per channel over foreground voxels (all voxels of images without foreground), as nnU-Net."""
    pooled: list[np.ndarray] = []
    for voxels, mask_values in samples:
        if mask_values is not None:
            fg = labels.class_ids(mask_values, threshold) > 0
            voxels = voxels[:, fg] if fg.any() else voxels
        pooled.append(voxels[:, :VOXELS_PER_IMAGE])
    v_all = np.concatenate(pooled, axis=1)
    stats = []
    for c in range(channels):
        v = v_all[c]
        p_lo, p_hi = np.percentile(v, [0.5, 99.5])
        stats.append(
            {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "p00_5": float(p_lo),
                "p99_5": float(p_hi),
                "min": float(v.min()),
                "max": float(v.max()),
            }
        )
    return tuple(stats)


def _guess_modality(lowest: float, highest: float) -> str:
    """ "CT" when the values span Hounsfield units (air at about -1000, tissue and bone above 0), else "unknown"."""
    return "CT" if lowest <= -500 and highest >= 100 else "unknown"
