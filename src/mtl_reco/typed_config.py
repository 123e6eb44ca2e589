"""Strict, typed parameter models on Pydantic v2 (no framework import).

Every parameter block of the project is a subclass of :class:`StrictConfig`,
a frozen ``pydantic.BaseModel`` with ``extra="forbid"``. Field rules are
declared on the fields (``Field(ge=1)``, ``Literal[...]``, nested models);
checks across fields are ``model_validator(mode="after")`` methods that raise
:class:`ConfigError`.

Kedro 1.7 builds a ``params:`` node input whose type hint is a pydantic model
with ``Model.model_validate(raw_dict)`` before any node runs; the project
calls :meth:`StrictConfig.from_dict` (or the constructor). All three raise
:class:`ConfigError` with one line naming the block, the key and the rule,
never a multi-line ``pydantic.ValidationError``:

* an unknown key gets the closest known key as a suggestion
  (``unknown key 'epochz' for TrainerConfig (did you mean 'epochs'?)``);
* a bad value names the field and the rule
  (``TrainerConfig.epochs must be >= 1, got 0``);
* an error inside a nested block is prefixed with where the block sits
  (``TrainerConfig.optimizer: unknown key 'lrr' for OptimizerConfig ...``).

Values are converted the way pydantic's default (lax) mode does: ``int``
accepts whole floats and numeric strings, ``float`` accepts ints, ``bool``
accepts ``true``/``false`` strings (``kedro run --params x=true``), a list
becomes a tuple where a tuple is declared.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping
from typing import Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["ConfigError", "StrictConfig", "flatten", "plain"]


class ConfigError(ValueError):
    """A parameter block does not match its typed configuration."""


class StrictConfig(BaseModel):
    """Base of every typed parameter block; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; a problem raises :class:`ConfigError` (one line)."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, type(self))) from None

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: Any = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """Pydantic's ``model_validate`` raising :class:`ConfigError` instead.

        This is the call Kedro makes for a typed ``params:`` input.
        """
        if not isinstance(obj, (Mapping, cls)):
            raise ConfigError(
                f"{cls.__name__} expects a mapping, got {type(obj).__name__}"
            )
        try:
            return super().model_validate(
                obj,
                strict=strict,
                extra=extra,
                from_attributes=from_attributes,
                context=context,
                by_alias=by_alias,
                by_name=by_name,
            )
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, cls)) from None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | StrictConfig | None) -> Self:
        """Build the configuration from a plain mapping (``None`` = defaults)."""
        if raw is None:
            return cls()
        return cls.model_validate(raw)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly nested dictionary (tuples become lists)."""
        out: dict[str, Any] = _lists(self.model_dump(mode="python"))
        return out

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied."""
        return type(self).model_validate({**dict(self), **changes})


def plain(value: Any) -> Any:
    """A typed configuration (a pydantic model) as a plain dictionary."""
    if isinstance(value, StrictConfig):
        return value.to_dict()
    if isinstance(value, BaseModel):
        return _lists(value.model_dump(mode="python"))
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


def _lists(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


# -- one-line messages from pydantic's errors -----------------------------------------
def unknown_key_message(owner: str, unknown: list[str], known: list[str]) -> str:
    """The "unknown key ... (did you mean ...?). Known keys: ..." message."""
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        parts.append(f"unknown key '{key}' for {owner}{hint}")
    return "; ".join(parts) + f". Known keys: {', '.join(sorted(known))}"


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line for every problem of ``exc`` raised while validating ``model``.

    Nested :class:`StrictConfig` blocks describe their own problems (their
    constructor runs during validation and raises :class:`ConfigError`),
    so ``exc`` only holds errors of ``model``'s own fields.
    """
    errors = exc.errors(include_url=False)
    if len(errors) == 1 and not errors[0]["loc"]:
        cause = (errors[0].get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            return str(cause)  # a model validator or a nested constructor
    owner = model.__name__
    known = list(model.model_fields)
    unknown = [
        str(e["loc"][0])
        for e in errors
        if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
    ]
    lines = [unknown_key_message(owner, unknown, known)] if unknown else []
    for err in _pick_union_branches(model, errors):
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            continue
        line = _describe(model, err)
        if line not in lines:
            lines.append(line)
    return "; ".join(lines)


def _describe(model: type[BaseModel], err: Any) -> str:
    loc = err["loc"]
    where, annotation, _ = _walk(model, loc)
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = f"got {value!r}"
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", err["msg"]))
        return f"{where}: {message}" if loc else message
    if kind == "missing":
        return f"{where}: required key missing"
    if kind == "literal_error":
        options = _literal_options(annotation) or str(ctx.get("expected"))
        return f"{where}: {value!r} is not one of {options}"
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"{where} must be {bounds[kind]} {limit}, {got}"
    phrases = {
        "int": "expected an integer",
        "float": "expected a number",
        "bool": "expected true/false",
        "string": "expected a string",
        "model": "expected a mapping",
        "dict": "expected a mapping",
        "list": "expected a list",
        "tuple": "expected a list",
        "finite": "must be a finite number",
    }
    if kind == "too_short":
        return f"{where} needs at least {ctx.get('min_length')} item(s), {got}"
    stem = kind.split("_", 1)[0]
    phrase = phrases.get(stem)
    if phrase:
        return f"{where}: {phrase}, {got}"
    return f"{where}: {err['msg']}, {got}"


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, Any, bool]:
    """``(Model.field[0].key, annotation there, whether loc passed a union)``."""
    where = model.__name__
    if not loc:
        return where, model, False
    field = model.model_fields.get(str(loc[0]))
    tp: Any = field.annotation if field is not None else Any
    where += f".{loc[0]}"
    in_union = False
    for item in loc[1:]:
        tp = _unwrap_optional(tp)
        if _is_union(tp):
            in_union = True
            tp = _union_member(tp, str(item))
            continue
        origin = get_origin(tp)
        args = get_args(tp)
        if isinstance(item, int) and origin in (list, tuple):
            where += f"[{item}]"
            tp = args[0] if args else Any
        elif origin is dict:
            where += f".{item}"
            tp = args[1] if len(args) == 2 else Any
        else:
            where += f".{item}"
            tp = Any
    return where, _unwrap_optional(tp), in_union


def _pick_union_branches(model: type[BaseModel], errors: list[Any]) -> list[Any]:
    """Of the errors of each union member, keep those of the member meant.

    A mapping was meant for a model member, anything else for the others;
    when that leaves nothing, every member's error is kept.
    """
    kept: list[Any] = []
    for err in errors:
        where, annotation, in_union = _walk(model, err["loc"])
        if not in_union:
            kept.append(err)
            continue
        wants_model = isinstance(err.get("input"), Mapping)
        is_model_branch = err["type"] in ("model_type", "value_error") or (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        )
        siblings = [
            e for e in errors if e is not err and _walk(model, e["loc"])[0] == where
        ]
        if is_model_branch == wants_model or not siblings:
            kept.append(err)
    return kept or errors


def _unwrap_optional(tp: Any) -> Any:
    if _is_union(tp, count_none=True):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def _is_union(tp: Any, count_none: bool = False) -> bool:
    if not (get_origin(tp) is Union or isinstance(tp, types.UnionType)):
        return False
    members = [a for a in get_args(tp) if count_none or a is not type(None)]
    return len(members) > 1


def _union_member(tp: Any, tag: str) -> Any:
    for member in get_args(tp):
        if getattr(member, "__name__", None) == tag:
            return member
        if get_origin(member) is Literal and tag.startswith("literal["):
            return member
    return Any


def _literal_options(tp: Any) -> str | None:
    if get_origin(tp) is Literal:
        return ", ".join(repr(a) for a in get_args(tp))
    return None
