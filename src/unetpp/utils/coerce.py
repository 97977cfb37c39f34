"""A value read from YAML or typed on the command line, checked and converted to a field's type hint.

One rule for the run config (:mod:`unetpp.config`) and the plan's fields (:mod:`unetpp.plan.record`): a bad
value is one line naming the field, the value and what the hint allows.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from ..errors import ConfigError


def describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin is tuple:
        inner = describe(args[0])  # "an integer" -> "a list of integers"
        if inner.startswith("a list"):
            return "a list of " + inner.replace("a list", "lists", 1)
        return "a list of " + (inner.split(" ", 1)[1] + "s" if inner.startswith(("a ", "an ")) else inner)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ConfigError(f"{where}: got {value!r}; expected {describe(hint)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        return tuple(coerce(v, args[0], f"{where}[{k}]") for k, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            return float(value)
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # ids written as numbers: val_ids=[20, 21]
            return str(value)
        raise bad
    raise bad
