"""Config validation: raw dicts in, every problem at once with its dotted path out.

This module is the only one that looks at raw config dicts; it imports neither
TensorFlow nor Hydra, so a typo costs a fraction of a second. It validates
against the JSON Schemas in ``schemas/`` and turns jsonschema's errors into
messages that name the key, what was found and what is allowed.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from factory.errors import ConfigError

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Directory of the project's ``schemas`` or ``conf``.

    A source checkout (and an editable install) has them at the top level; a
    wheel carries copies inside the package as ``factory/_schemas`` and
    ``factory/_conf``.
    """
    for candidate in (_PACKAGE_DIR / f"_{name}", _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"factory is installed without its {name}/ directory")


@functools.cache
def _validator(schema_file: str):
    schema_dir = resource_dir("schemas")
    resources = []
    for path in sorted(schema_dir.glob("*.schema.json")):
        contents = json.loads(path.read_text())
        resources.append((path.name, Resource.from_contents(contents)))
    registry = Registry().with_resources(resources)
    schema = json.loads((schema_dir / schema_file).read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry)


def dotted(path: Iterable[Any], prefix: str = "") -> str:
    """``['features', 'image', 'shape', 0]`` -> ``features.image.shape[0]``."""
    out = prefix
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'shape'?)`` or an empty string."""
    close = difflib.get_close_matches(str(word), sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def type_name(value: Any) -> str:
    """The JSON-ish kind of a config value: null, boolean, number, string, list, mapping (else the Python type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error) -> list[str]:
    """One or more user-facing lines for one jsonschema error."""
    path = dotted(error.absolute_path)
    kind, schema, value = error.validator, error.schema, error.instance
    if kind == "additionalProperties" and schema.get("additionalProperties") is False:
        allowed = sorted(schema.get("properties", {}))
        return [
            f"{dotted([*error.absolute_path, key])}: unknown key{did_you_mean(key, allowed)};"
            f" allowed keys: {', '.join(allowed)}"
            for key in value
            if key not in allowed
        ]
    if kind == "required":
        missing = error.validator_value
        return [
            f"{dotted([*error.absolute_path, key])}: required key is missing"
            for key in missing
            if isinstance(value, Mapping) and key not in value
        ]
    if kind == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return [f"{path}: {_short(value)} is not one of {allowed}"]
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return [f"{path}: expected {expected}, got {type_name(value)} {_short(value)}"]
    if kind == "pattern":
        hint = schema.get("description", f"must match {error.validator_value}")
        return [f"{path}: {_short(value)} is not a valid name: {hint}"]
    if kind == "propertyNames":
        sub = error.context[0] if error.context else None
        hint = sub.schema.get("description", "") if sub is not None else ""
        return [f"{path}: {_short(value)} is not a valid name: {hint}".rstrip(": ")]
    if kind in ("minimum", "exclusiveMinimum"):
        return [f"{path}: {_short(value)} is below the minimum of {error.validator_value}"]
    if kind in ("maximum", "exclusiveMaximum"):
        return [f"{path}: {_short(value)} is above the maximum of {error.validator_value}"]
    if kind == "minProperties":
        return [f"{path}: needs at least {error.validator_value} entr{'y' if error.validator_value == 1 else 'ies'}"]
    if kind in ("minItems", "maxItems"):
        return [f"{path}: {_short(value)} has the wrong length: {error.message.split(' is ')[-1]}"]
    if kind == "uniqueItems":
        seen, dupes = set(), []
        for item in value:
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                dupes.append(item)
            seen.add(key)
        return [f"{path}: duplicate entries {', '.join(_short(d) for d in dupes)}"]
    if kind in ("anyOf", "oneOf"):
        # Prefer the alternative whose type matches the value: its message is the useful one.
        alternatives = [e for e in error.context if e.validator != "type"]
        if alternatives:
            return _describe(min(alternatives, key=lambda e: len(e.path)))
        kinds = sorted({str(e.validator_value) for e in error.context if e.validator == "type"})
        return [f"{path}: {_short(value)} is not valid here; expected {' or '.join(kinds) or 'another value'}"]
    return [f"{path}: {error.message}"]


def schema_problems(instance: Any, schema_file: str) -> list[str]:
    """Every problem of ``instance`` against ``schemas/<schema_file>``, sorted by path."""
    problems: list[str] = []
    errors = _validator(schema_file).iter_errors(instance)
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        for line in _describe(error):
            if line not in problems:
                problems.append(line)
    return problems


def validate(instance: Any, schema_file: str, source: str | None = None) -> None:
    """Raise ``ConfigError`` listing every problem, or return quietly."""
    problems = schema_problems(instance, schema_file)
    if problems:
        raise ConfigError(problems, source)


def plain(value: Any) -> Any:
    """Deep copy into plain dicts and lists (from Hydra's DictConfig, tuples, ...)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing file or bad YAML is a ``ConfigError`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
