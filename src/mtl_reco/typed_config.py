"""Strict, typed parameter dataclasses (no framework import).

Kedro turns a ``params:`` input into a dataclass by calling ``Cls(**raw_dict)``
before any node runs. :class:`StrictConfig` makes that call fail loudly and
helpfully:

* an unknown key is rejected with the closest known key as a suggestion
  (``unknown key 'epochz' for TrainerConfig (did you mean 'epochs'?)``);
* nested dictionaries are converted into the nested dataclasses their fields
  declare (Kedro only converts the top level);
* scalar fields are type-checked (``int`` accepts whole floats, ``float``
  accepts ints, ``bool`` accepts only ``True``/``False``).

Subclasses are ordinary ``@dataclass(frozen=True)`` classes that inherit from
:class:`StrictConfig`; they may add a ``validate`` method for value checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

T = TypeVar("T", bound="StrictConfig")


class ConfigError(ValueError):
    """A parameter block does not match its typed configuration."""


class _StrictMeta(type):
    """Metaclass that checks keyword names before the dataclass ``__init__``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if dataclasses.is_dataclass(cls):
            known = [f.name for f in dataclasses.fields(cls) if f.init]
            unknown = [k for k in kwargs if k not in known]
            if unknown:
                raise ConfigError(_unknown_key_message(cls.__name__, unknown, known))
        return super().__call__(*args, **kwargs)


def _unknown_key_message(owner: str, unknown: list[str], known: list[str]) -> str:
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        parts.append(f"unknown key '{key}' for {owner}{hint}")
    return "; ".join(parts) + f". Known keys: {', '.join(sorted(known))}"


class StrictConfig(metaclass=_StrictMeta):
    """Base class for typed parameter dataclasses; see the module docstring."""

    _type_hints_cache: ClassVar[dict[type, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            converted = _coerce(
                value, hints[field.name], f"{type(self).__name__}.{field.name}"
            )
            if converted is not value:
                object.__setattr__(self, field.name, converted)
        self.validate()

    def validate(self) -> None:
        """Check values after conversion; subclasses raise :class:`ConfigError`."""

    @classmethod
    def from_dict(cls: type[T], raw: Mapping[str, Any] | None) -> T:
        """Build the configuration from a plain mapping (``None`` = defaults)."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{cls.__name__} expects a mapping, got {type(raw).__name__}"
            )
        return cls(**dict(raw))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly nested dictionary of this configuration."""
        return _to_plain(self)  # type: ignore[no-any-return]


def plain(value: Any) -> Any:
    """A typed configuration (anything with ``to_dict``) as a plain dictionary."""
    if hasattr(value, "to_dict") and not isinstance(value, Mapping):
        return value.to_dict()
    return value


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings and typed configs into ``a.b.c`` keys.

    >>> flatten({"optimizer": {"lr": 0.01}, "epochs": 3}, "trainer.")
    {'trainer.optimizer.lr': 0.01, 'trainer.epochs': 3}
    """
    value = plain(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _hints(cls: type) -> dict[str, Any]:
    cache = StrictConfig._type_hints_cache
    if cls not in cache:
        cache[cls] = typing.get_type_hints(cls)
    return cache[cls]


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _type_label(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Union or isinstance(tp, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} matches none of {_type_label(tp)}")
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{where}: {value!r} is not one of "
                f"{', '.join(repr(a) for a in allowed)}"
            )
        return value
    if isinstance(tp, type) and issubclass(tp, StrictConfig):
        if isinstance(value, tp):
            return value
        if value is None:
            return tp()
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping for {tp.__name__}, got {value!r}"
            )
        try:
            return tp(**dict(value))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"  # from `kedro run --params x=true`
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            return int(value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
