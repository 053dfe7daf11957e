"""How a config key is declared: one dataclass field carrying its type, default, bounds and doc.

``setting(default, doc, ...)`` is a ``dataclasses.field`` whose metadata the rest of
the config layer reads: ``schema.py`` turns it into JSON Schema, ``defaults`` into
the raw-dict defaults Hydra composes and ``load_config`` fills in, ``build`` into
the frozen objects. A field made without ``setting`` (``Config.raw``) is no key.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, dataclass_transform

REQUIRED = dataclasses.MISSING


def setting(
    default: Any = REQUIRED,
    doc: str = "",
    *,
    enum: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    schema: Mapping[str, Any] | None = None,
    convert: Callable[[Any], Any] | None = None,
) -> Any:
    """A config key: a dataclass field with its default and what ``schema.py`` needs.

    Args:
        default: The value an absent key takes; a dataclass (the class itself) for a
            nested group of keys; ``REQUIRED`` (the default) for a key without one.
        doc: One line for the schema's ``description``.
        enum: Allowed values, in the order error messages list them. For an optional
            key, list ``None`` to have messages name it; otherwise null is allowed
            silently beside the choices.
        minimum, exclusive_minimum: Bounds of a number.
        schema: The key's JSON Schema, where its type alone cannot say it (lists of
            globs, the feature spec, a network's free-form parameters).
        convert: Raw value -> field value (say a list to a tuple); defaults to the
            value itself, or ``build`` for a nested group.
    """
    metadata = {
        "doc": doc,
        "enum": enum,
        "minimum": minimum,
        "exclusiveMinimum": exclusive_minimum,
        "schema": schema,
        "convert": convert,
    }
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=metadata)
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass_transform(frozen_default=True, field_specifiers=(setting, dataclasses.field))
def config_class(cls: type) -> type:
    """A frozen dataclass whose ``setting`` fields are config keys."""
    return dataclasses.dataclass(frozen=True)(cls)


def keys(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are config keys, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "doc" in f.metadata]


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of ``cls`` (its module uses postponed annotations)."""
    return typing.get_type_hints(cls)


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(hint, False)``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def group_type(field: dataclasses.Field, owner: type) -> type | None:
    """The dataclass of a nested group of keys (built and filled recursively), else None."""
    hint = hints(owner)[field.name]
    declared = field.metadata.get("convert") is None and field.metadata.get("schema") is None
    if declared and isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    return None


def has_default(field: dataclasses.Field) -> bool:
    return field.default is not REQUIRED or field.default_factory is not REQUIRED


def default_of(field: dataclasses.Field) -> Any:
    return field.default if field.default is not REQUIRED else field.default_factory()


def to_raw(value: Any) -> Any:
    """A field value as it appears in a composed config: groups as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_raw(getattr(value, f.name)) for f in keys(type(value))}
    if isinstance(value, Mapping):
        return {str(k): to_raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_raw(v) for v in value]
    return value


def defaults(cls: type) -> dict[str, Any]:
    """The defaults of every key of ``cls`` that has one, as a raw (composed-config) dict."""
    return {f.name: to_raw(default_of(f)) for f in keys(cls) if has_default(f)}


def fill(raw: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """``raw`` with every absent key of ``cls`` (and of its nested groups) set to its default.

    Keys ``cls`` does not declare, and values of the wrong kind, are left for the
    schema to report.
    """
    out = dict(raw)
    for f in keys(cls):
        group = group_type(f, cls)
        if f.name not in out:
            if has_default(f):
                out[f.name] = to_raw(default_of(f))
        elif group is not None and isinstance(out[f.name], Mapping):
            out[f.name] = fill(out[f.name], group)
    return out


def build(cls: type, values: Mapping[str, Any], **given: Any) -> Any:
    """The frozen ``cls`` from a validated raw dict; ``given`` fields are passed as they are."""
    kwargs = dict(given)
    for f in keys(cls):
        if f.name in kwargs or f.name not in values:
            continue
        value, convert, group = values[f.name], f.metadata["convert"], group_type(f, cls)
        if convert is not None:
            value = convert(value)
        elif group is not None:
            value = build(group, value)
        kwargs[f.name] = value
    return cls(**kwargs)
