"""Plan fields as a user types them (``unetpp plan --set``, an edited ``plan.yaml``): checked before use.

Each value is checked against the :class:`~unetpp.plan.record.Plan` field's type (choices, integers,
lists) and range, so ``batch_size=abc`` or ``widths=5`` is one line naming the field, not a traceback
from deep inside the rules. Unknown names get a "did you mean".
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

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
    from ..config import _coerce
    from .record import Plan, as_tuples

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
        got = _coerce(as_tuples(value), hints[name], where)
        if name in POSITIVE:
            items = got if isinstance(got, tuple) else (got,)
            if any(v is not None and v <= 0 for v in items):
                raise ConfigError(f"{where}: got {value!r}; expected values > 0")
        out[name] = got
    return out
