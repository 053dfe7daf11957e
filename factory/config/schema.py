"""The training config's JSON Schema, generated from ``settings.py``.

    python -m factory.config.schema          # rewrite schemas/config.schema.json
    python -m factory.config.schema --check  # exit 1 if the checked-in file is stale

Each key becomes the construct ``factory.validation`` turns into its message:
``additionalProperties: false`` (unknown key, did you mean), ``enum`` (is not one of),
``type`` (expected X or null), ``minimum``/``exclusiveMinimum`` (below the minimum);
a key without a default is ``required``.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Sequence
from dataclasses import Field
from pathlib import Path
from typing import Any

from factory.config.declaration import (
    default_of,
    group_type,
    has_default,
    hints,
    keys,
    to_raw,
    unwrap_optional,
)
from factory.config.settings import SCHEMA_FILE, Config
from factory.validation import resource_dir

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a composed training config (``features`` refers to the feature spec schema)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_FILE,
        "title": "factory training config",
        "description": "The composed, resolved Hydra config of one training run. Generated from "
        "factory/config/settings.py by `python -m factory.config.schema`: edit that, not this file.",
        **_object(Config),
    }


def _object(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False}
    required = [f.name for f in keys(cls) if not has_default(f)]
    if required:
        out["required"] = required
    out["properties"] = {f.name: _key(f, cls) for f in keys(cls)}
    return out


def _key(field: Field, owner: type) -> dict[str, Any]:
    meta = field.metadata
    hint, optional = unwrap_optional(hints(owner)[field.name])
    group = group_type(field, owner)
    if meta["schema"] is not None:
        out = copy.deepcopy(dict(meta["schema"]))
    elif group is not None:
        return {"description": meta["doc"], **_object(group)}
    elif meta["enum"] is not None:
        choices = list(meta["enum"])
        # Listing None makes messages name it; otherwise null is allowed beside the choices.
        out = {"enum": choices} if not optional or None in choices else {"anyOf": [{"enum": choices}, {"type": "null"}]}
    else:
        out = {"type": [_JSON_TYPES[hint], "null"] if optional else _JSON_TYPES[hint]}
    for bound in ("minimum", "exclusiveMinimum"):
        if meta[bound] is not None:
            out[bound] = meta[bound]
    description = meta["doc"]
    if has_default(field):
        description += f" Default: {_shown(to_raw(default_of(field)))}."
    out["description"] = description
    return out


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def dumps(value: Any, indent: int = 0) -> str:
    """JSON with every object or list that fits in 120 columns on one line."""
    flat = json.dumps(value)
    if not isinstance(value, dict | list) or not value or indent + len(flat) <= 120:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + dumps(v, indent + 2) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def schema_path() -> Path:
    return resource_dir("schemas") / SCHEMA_FILE


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the schema file (or with ``--check``, return 1 if it differs from the generated one)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    text = dumps(config_schema()) + "\n"
    path = schema_path()
    if "--check" in argv:
        if path.read_text() != text:
            print(f"{path} is stale: run python -m factory.config.schema", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
