"""A cached fingerprint read back from JSON: every field of the type the dataclass says, and consistent.

The cache lives in the user's home and can be damaged (a full disk, an editor, another version): what
fails these checks is rebuilt from the files instead of breaking every later ``plan`` and ``train``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ..errors import DataError


def _valid(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_valid(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is dict:
        return isinstance(value, dict) and all(_valid(v, args[1]) for v in value.values())
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_valid(v, args[0]) for v in value)
        return len(value) == len(args) and all(_valid(v, a) for v, a in zip(value, args, strict=True))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    return True


def check_fields(cls: type, values: dict[str, Any]) -> None:
    """Raise DataError naming the first field of `values` that `cls` (a dataclass) would not hold as typed.

    Raises:
        DataError: a missing field, a value of another type, or shapes that disagree with ``spatial_dims``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in values:
            if required:
                raise DataError(f"fingerprint lacks field {f.name!r}")
            continue
        if not _valid(values[f.name], hints[f.name]):
            raise DataError(f"fingerprint field {f.name!r} is {str(values[f.name])[:40]!r}, not {hints[f.name]}")
    dims = values.get("spatial_dims")
    for name in ("median_shape", "min_shape", "max_shape"):
        shape = values.get(name, ())
        if dims not in (2, 3) or len(shape) != dims or min(shape) < 1:
            raise DataError(f"fingerprint field {name!r} is {shape!r}, not {dims} positive sizes")
    if values.get("n_items", 0) < 1 or values.get("channels", 0) < 1:
        raise DataError("fingerprint has no items or no channels")
