"""Typed settings from plain mappings: every key known, every value of the declared type.

One helper serves every settings object of tandem (the training config, the federated settings,
the strategy settings): a key that the target does not declare is a :class:`ConfigError` naming the
key and where it was found, and a value of the wrong type is a :class:`ConfigError` naming the key,
the value and the expected type. Values that arrive as strings (Flower's run config, a
command-line override) are converted when that is unambiguous (``"3"`` for an int, ``"null"`` for
an optional value).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ranking.errors import ConfigError

T = TypeVar("T")

NULL_STRINGS = ("null", "none", "")
"""String forms of ``None`` accepted for optional settings (Flower's run config has no null)."""


def _optional_inner(annotation: Any) -> Any | None:
    """``X`` for ``X | None`` / ``Optional[X]``, else ``None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0]
    return None


def cast_value(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the type ``annotation`` (int, float, str, bool, or one of them ``| None``).

    Other annotations (mappings, nested objects) pass through unchanged. Raises
    :class:`ConfigError` naming ``where`` when the value cannot be read as that type.
    """
    inner = _optional_inner(annotation)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.strip().lower() in NULL_STRINGS):
            return None
        return cast_value(value, inner, where)
    if annotation not in (int, float, str, bool):
        return value
    expected = annotation.__name__
    bad = ConfigError(f"{where}: expected {expected}, got {value!r} ({type(value).__name__})")
    if value is None:
        raise bad
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise bad
    if annotation is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise bad
    if isinstance(value, bool):
        raise bad
    try:
        number = float(value) if isinstance(value, str) else value
        if annotation is int:
            if isinstance(number, float) and not number.is_integer():
                raise bad
            return int(number)
        return float(number)
    except (TypeError, ValueError):
        raise bad from None


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every dataclass field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_keys(values: Mapping[str, Any], known: set[str] | frozenset[str], where: str) -> None:
    """Raise :class:`ConfigError` naming the first keys of ``values`` not in ``known``."""
    unknown = sorted(str(k) for k in values if k not in known)
    if unknown:
        names = ", ".join(f"{where}.{k}" for k in unknown)
        raise ConfigError(f"unknown setting(s) {names}; accepted under {where}: {sorted(known)}")


def dataclass_from_mapping(
    cls: Callable[..., T], values: Mapping[str, Any] | None, where: str
) -> T:
    """An instance of the dataclass ``cls`` from ``values`` (``-`` in keys read as ``_``).

    Unknown keys and ill-typed values raise :class:`ConfigError` naming ``where.<key>``; the
    dataclass's own ``__post_init__`` checks (ranges) run as usual.
    """
    types_ = field_types(cls)  # type: ignore[arg-type]
    values = {str(k).replace("-", "_"): v for k, v in (values or {}).items()}
    check_keys(values, set(types_), where)
    cast = {k: cast_value(v, types_[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**cast)
