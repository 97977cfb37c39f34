"""The plan as a record: its fields (with why each was chosen), its ``plan.yaml`` and its printed table.

:mod:`unetpp.plan.rules` derives a :class:`Plan` from a fingerprint; training, prediction and the CLI
read it through this module only.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..utils.atomic import atomic_write
from ..utils.coerce import coerce
from ..utils.precision import OLD_NAMES, Precision
from .fingerprint import Fingerprint


@dataclasses.dataclass(frozen=True)
class Plan:
    """A training plan: config fields (``model.*``, ``data.*``) and why each was chosen (``reasons``)."""

    model: str
    spatial_dims: Literal[2, 3]
    in_channels: int
    channels: Literal["grey", "rgb", "keep"]  # data.channels
    classes: int
    mask_threshold: float | None  # data.mask_threshold: binarise masks at this value (noisy JPEG-like masks)
    depth: int
    widths: tuple[int, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    # "zscore" (per image) or "ct" (clip to intensity_clip, then intensity_mean/std)
    normalize: Literal["zscore", "percentile", "ct", "none"]
    intensity_clip: tuple[tuple[float, float], ...] | None
    intensity_mean: tuple[float, ...] | None
    intensity_std: tuple[float, ...] | None
    target_spacing: tuple[float, ...] | None  # resample volumes to this spacing for training; None: as stored
    cache: bool
    device: Literal["cpu", "cuda"]
    precision: Precision  # "32", "bf16" or "16": train.precision
    memory_budget_gb: float
    estimated_peak_gb: float
    memory_efficient: bool = False  # model.memory_efficient: recompute cheap activations in backward
    augment: Literal["light", "full", "none"] = "light"  # data.augment: chosen by a wall-clock budget's steps
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: _lists(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "") -> Plan:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = unknown_field(set(d), names, source)
        if unknown is not None:
            raise unknown
        optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        optional |= {"reasons"}  # plans saved before a field with a default existed still load
        missing = [n for n in names if n not in d and n not in optional]
        if missing:
            raise ConfigError(f"{source}plan lacks field(s) {missing}; write it with `unetpp plan` or add them")
        if str(d.get("precision")) in OLD_NAMES:  # plans written before the project's own spelling
            d = {**d, "precision": OLD_NAMES[str(d["precision"])]}
        return cls(**checked_fields(d, source))


def _lists(x: Any) -> Any:
    if isinstance(x, tuple | list):
        return [_lists(v) for v in x]
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    return x


def as_tuples(x: Any) -> Any:
    return tuple(as_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def save_plan(plan: Plan, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``plan.yaml`` atomically (refuses to overwrite unless asked)."""
    import yaml

    text = yaml.safe_dump(plan.to_dict(), sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite, error=ConfigError)


def load_plan(path: str | Path) -> Plan:
    """Read a ``plan.yaml``.

    Raises:
        ConfigError: unreadable YAML, unknown or missing fields.
    """
    import yaml

    try:
        d = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise ConfigError(f"{path}: cannot read the plan ({reason}); check the path or rerun `unetpp plan`") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a plan is a mapping of fields; rerun `unetpp plan`")
    return Plan.from_dict(d, f"{path}: ")


def sizes_text(sizes: Any) -> str:
    """``96x96``, ``1.5x1x1``: sizes or spacings as the plan prints them."""
    return "x".join(f"{s:g}" if isinstance(s, float) else str(s) for s in sizes)


def format_plan(plan: Plan, fp: Fingerprint | None = None) -> str:
    """The fingerprint in three lines and the plan as a table of field, value and reason."""
    lines = []
    if fp is not None:
        kinds = ", ".join(f"{c}: {f:.1%}" for c, f in enumerate(fp.class_frequencies) if f > 0)
        lines += [
            f"data       {fp.source}: {fp.n_items} images ({fp.n_sampled} read), {fp.spatial_dims}D, "
            f"{fp.channels} channel(s) {fp.channel_kind}, {fp.dtype}",
            f"shape      median {sizes_text(fp.median_shape)} (min {sizes_text(fp.min_shape)}, "
            f"max {sizes_text(fp.max_shape)}), spacing {sizes_text(fp.median_spacing)}",
            f"labels     {fp.label_kind}, values {_values(fp.label_values)}, classes {kinds}",
        ]
        for o in fp.objects:
            lines.append(
                f"objects    class {o['class']}: {o['per_image']:.3g} per image, median {o['median']:.0f} voxels "
                f"(5-95%: {o['p05']:.0f}-{o['p95']:.0f})"
            )
        lines.append("")
    rows = [
        (
            "model",
            f"{plan.model}, depth {plan.depth}, widths {sizes_text(plan.widths)}",
            plan.reasons.get("widths", plan.reasons.get("depth", "")),
        ),
        ("channels", f"{plan.in_channels} ({plan.channels})", plan.reasons.get("channels", "")),
        ("classes", str(plan.classes), plan.reasons.get("classes", "")),
        ("mask_threshold", "-" if plan.mask_threshold is None else f"{plan.mask_threshold:g}", ""),
        ("patch_size", sizes_text(plan.patch_size), plan.reasons.get("patch_size", "")),
        ("batch_size", str(plan.batch_size), plan.reasons.get("batch_size", "")),
        ("memory_efficient", str(plan.memory_efficient).lower(), plan.reasons.get("memory_efficient", "")),
        ("precision", plan.precision, plan.reasons.get("precision", "")),
        ("normalize", plan.normalize, plan.reasons.get("normalize", "")),
        ("target_spacing", sizes_text(plan.target_spacing or ()) or "-", plan.reasons.get("target_spacing", "")),
        ("cache", str(plan.cache).lower(), plan.reasons.get("cache", "")),
        ("augment", plan.augment, plan.reasons.get("augment", "")),
        (
            "memory",
            f"{plan.estimated_peak_gb:.2f} of {plan.memory_budget_gb:.2f} GB ({plan.device})",
            plan.reasons.get("memory_budget_gb", ""),
        ),
    ]
    width = max(len(r[1]) for r in rows)
    lines += [f"{name:<18}{value:<{width + 2}}{reason}".rstrip() for name, value, reason in rows]
    return "\n".join(lines)


def _values(values: tuple[float, ...]) -> str:
    shown = [f"{v:g}" for v in values[:8]]
    return "{" + ", ".join(shown) + (", ..." if len(values) > 8 else "") + "}"


# numeric fields (or every item of a list field) that must be positive
POSITIVE = frozenset(
    {"in_channels", "classes", "depth", "widths", "patch_size", "batch_size"}
    | {"intensity_std", "target_spacing", "memory_budget_gb"}
)


def unknown_field(names: set[str], known: list[str], source: str = "") -> ConfigError | None:
    """One short line for names that are not plan fields (with the closest field, if one is close)."""
    unknown = sorted(names - set(known))
    if not unknown:
        return None
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "`unetpp plan --help` lists them"
    return ConfigError(f"{source}unknown plan field {unknown[0]!r}; {hint}")


def checked_fields(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """`values` (plan field -> value, lists as read from YAML) converted to the Plan's types.

    `source` starts every message (a file: ``"plan.yaml: "``).

    Raises:
        ConfigError: an unknown field, or a value of the wrong type or range (one line naming the field).
    """
    known = [f.name for f in dataclasses.fields(Plan)]
    problem = unknown_field(set(values), known, source)
    if problem is not None:
        raise problem
    hints = typing.get_type_hints(Plan)
    out: dict[str, Any] = {}
    for name, value in values.items():
        where = f"{source}plan.{name}"
        if name == "reasons":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: got {value!r}; expected a mapping of field to text")
            out[name] = {str(k): str(v) for k, v in value.items()}
            continue
        got = coerce(as_tuples(value), hints[name], where)
        if name in POSITIVE:
            items = got if isinstance(got, tuple) else (got,)
            if any(v is not None and v <= 0 for v in items):
                raise ConfigError(f"{where}: got {value!r}; expected values > 0")
        out[name] = got
    return out
