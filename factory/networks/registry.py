"""The network registry: configs name networks by key, never by import path.

A network is a plain function registered under a short name::

    from factory import register_network

    @register_network("wide")
    def build(features, num_outputs, width=256):
        ...
        return representation  # a KerasTensor [batch, units]; factory adds the head

The config's ``network`` group selects it (``network: {name: wide, width: 512}``);
everything but ``name`` is passed to the function as keyword arguments.

Where names come from, in lookup order:

1. the built-in networks (``linear``, ``mlp``, ``cnn``, ``wide_deep``, ``text``), registered by importing
   ``factory.networks``;
2. modules listed in the config's ``imports:`` (``import_modules``), whose
   ``@register_network`` decorators run when they are imported;
3. the ``factory.networks`` entry-point group of installed distributions, loaded
   only when a name is not found otherwise (``name = "package.module"`` or
   ``name = "package.module:build"``).

Nothing here imports TensorFlow: looking a name up and checking its parameters
take milliseconds, so a typo is reported before the 2-3 s TensorFlow import.
Duplicate names fail at registration, naming both functions; an unknown name
lists the known ones and says how to make a new one known.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from factory.errors import ConfigError, FactoryError
from factory.validation import did_you_mean, type_name

if TYPE_CHECKING:  # pragma: no cover
    from importlib.metadata import EntryPoint

    from factory.features.spec import FeatureSpec

ENTRY_POINT_GROUP = "factory.networks"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# The network group's selector key: a build function cannot take a parameter of this name.
SELECTOR = "name"

F = TypeVar("F", bound=Callable[..., Any])

_networks: dict[str, Callable[..., Any]] = {}
# The features a network receives as they are read (``register_network(..., raw=[...])``), by network.
_raw: dict[str, tuple[str, ...]] = {}
_loaded_entry_points: set[tuple[str, str]] = set()
_failed_entry_points: dict[tuple[str, str], list[str]] = {}
# Entry points that name a module rather than a function: entry point name -> networks it registered.
_module_entry_points: dict[str, list[str]] = {}


def _where(fn: Callable[..., Any]) -> str:
    """``package.module.function`` - how error messages name a build function."""
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
    return f"{module}.{qualname}"


def _signature_problem(fn: Callable[..., Any]) -> str | None:
    """Why ``fn`` cannot be called as ``fn(features, num_outputs, **params)``, or None."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # builtins and some C callables have no signature: trust them
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        return "it must accept (features, num_outputs, **params)"
    if SELECTOR in sig.parameters and sig.parameters[SELECTOR] not in positional[:2]:
        return f"its parameter '{SELECTOR}' cannot be set from the config, where `network.{SELECTOR}` selects the network; rename it"
    return None


def _add(name: str, fn: Callable[..., Any]) -> None:
    existing = _networks.get(name)
    if existing is not None and existing is not fn:
        same_origin = _where(existing) == _where(fn)
        if not same_origin:
            raise ConfigError(
                f"network '{name}' is already registered by {_where(existing)}; "
                f"{_where(fn)} cannot register it again: choose another name"
            )
        # The same function from the same module again (a reloaded module): the newer one wins.
    _networks[name] = fn


def register_network(name: str, raw: Sequence[str] = ()) -> Callable[[F], F]:
    """Decorator: register ``build(features, num_outputs, **params) -> KerasTensor`` as ``name``.

    ``name`` is what configs use (``network.name``); it starts with a letter and
    holds letters, digits and underscores. ``features`` is a dict of ``keras.Input``
    tensors keyed by input name (``FeatureSpec.input_names``), each encoded as the spec
    says (normalized numbers, ids of a vocabulary, a text's vector...); ``num_outputs``
    is the size of the head that factory adds on top of the returned representation.
    The function is returned unchanged.

    ``raw``: features the network receives as they are read instead (the dtype and
    shape the spec declares, what ``serving_default`` takes: a text as its string, an
    image as uint8 pixels), for a network that encodes them itself; fixed-shape
    features only.

    Raises ``ConfigError`` when the name is malformed, already taken by another
    function (both are named), or the function cannot take
    ``(features, num_outputs, **params)``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"register_network({name!r}): a network name starts with a letter and holds only "
            "letters, digits and underscores (it is typed in configs: network.name=...)"
        )
    if isinstance(raw, str) or not all(isinstance(r, str) for r in raw):
        raise ConfigError(f"register_network({name!r}, raw={raw!r}): give a list of feature names")

    def decorator(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"register_network({name!r}) decorates {fn!r}, which is not callable")
        problem = _signature_problem(fn)
        if problem:
            raise ConfigError(f"register_network({name!r}) on {_where(fn)}: {problem}")
        _add(name, fn)
        _raw[name] = tuple(raw)
        return fn

    return decorator


def raw_inputs(name: str) -> tuple[str, ...]:
    """The features network ``name`` receives as read (``register_network(..., raw=...)``)."""
    get_network(name)
    return _raw.get(name, ())


def raw_input_problems(name: str, spec: FeatureSpec) -> list[str]:
    """Why network ``name`` cannot have the raw features it asks for in ``spec`` (empty: it can)."""
    problems = []
    known = [f.name for f in spec.features]
    for wanted in raw_inputs(name):
        f = next((f for f in spec.features if f.name == wanted), None)
        where = f"network.name: '{name}' (register_network(raw=...))"
        if f is None:
            problems.append(
                f"{where} asks for the raw feature '{wanted}', which the spec lacks{did_you_mean(wanted, known)}; "
                f"features: {', '.join(known)}"
            )
        elif f.variable:
            problems.append(
                f"{where} asks for '{wanted}' raw, but it has variable length; only fixed-shape features come raw"
            )
        elif any(wanted in cross.features for cross in spec.crosses):
            problems.append(f"{where} asks for '{wanted}' raw, but a cross needs its ids; drop it from `crosses`")
    return problems


# -- lookups -----------------------------------------------------------------------------------


def _entry_points() -> list[EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _entry_point_origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    dist_name = getattr(dist, "name", None) if dist is not None else None
    owner = f" of the distribution '{dist_name}'" if dist_name else ""
    return f"entry point '{ep.name} = {ep.value}'{owner} (group {ENTRY_POINT_GROUP})"


def _load_entry_point(ep: EntryPoint) -> None:
    """Import an entry point's module; register the callable it names if it is not yet registered.

    Failures are remembered: a module that failed halfway is not imported
    again, but every later lookup reports the same reason.
    """
    key = (ep.name, ep.value)
    if key in _failed_entry_points:
        raise ConfigError(_failed_entry_points[key])
    if key in _loaded_entry_points:
        return
    _loaded_entry_points.add(key)
    before = set(_networks)
    origin = _entry_point_origin(ep)
    try:
        target = ep.load()
        if inspect.ismodule(target) or not callable(target):
            # A module: its decorators did the registering.
            _module_entry_points[ep.name] = sorted(set(_networks) - before)
            return
        if not _NAME.match(ep.name):
            raise ConfigError(f"'{ep.name}' is not a valid network name (letters, digits, underscores)")
        problem = _signature_problem(target)
        if problem:
            raise ConfigError(f"{_where(target)}: {problem}")
        if _networks.get(ep.name) is not target:
            # Registered under another name (or not at all): the entry point's name must resolve too.
            _add(ep.name, target)
    except FactoryError as err:
        _failed_entry_points[key] = [f"{origin}: {p}" for p in getattr(err, "problems", [str(err)])]
    except Exception as err:
        _failed_entry_points[key] = [f"{origin} failed to load: {failure_reason(err)}"]
    if key in _failed_entry_points:
        raise ConfigError(_failed_entry_points[key])


def _load_entry_points(name: str) -> list[str]:
    """Load the entry points that may define ``name``; returns the failures of unrelated ones."""
    eps = _entry_points()
    for ep in eps:
        if ep.name == name:
            _load_entry_point(ep)  # a failure here is the answer: raise it
    if name in _networks:
        return []
    # A module may register names other than its entry point's: load the rest, but a broken
    # unrelated plugin only gets a mention, it does not hide the real problem.
    failures = []
    for ep in eps:
        try:
            _load_entry_point(ep)
        except ConfigError as err:
            failures.extend(err.problems)
        if name in _networks:
            break
    return failures


def registered_names() -> set[str]:
    """Names registered so far (without loading built-ins or entry points)."""
    return set(_networks)


def known_networks() -> list[str]:
    """Sorted names of every network available: built-in, imported and installed entry points.

    Entry points not loaded yet are listed by their names (loading them would
    import their modules); an entry point that turned out to be a module is
    listed by the names its module registered.
    """
    names = set(_networks)
    # Broken metadata of some installed distribution: list what we have.
    with contextlib.suppress(Exception):
        names.update(ep.name for ep in _entry_points())
    # A loaded module entry point is known by the names it registered, not by its own.
    names -= {n for n in _module_entry_points if n not in _networks}
    return sorted(names)


def get_network(name: str, key: str = "network.name") -> Callable[..., Any]:
    """The build function registered as ``name``.

    Looks in the registry (the built-ins register when ``factory.networks`` is imported), then the ``factory.networks``
    entry points. An unknown name raises ``ConfigError`` at ``key``, with a
    did-you-mean, the known names and how to register a new one.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key}: expected the name of a network, got {name!r}; known: {', '.join(known_networks())}")
    failures: list[str] = []
    if name not in _networks:
        failures = _load_entry_points(name)
    if name in _networks:
        return _networks[name]
    known = known_networks()
    message = (
        f"{key}: unknown network '{name}'{did_you_mean(name, known)}; known: {', '.join(known)}; "
        "register yours with @register_network or list its module under imports:"
    )
    if name in _module_entry_points:
        registered = ", ".join(_module_entry_points[name]) or "nothing"
        message += f"; the entry point '{name}' is a module that registers {registered}"
    if failures:
        message += "; these installed networks failed to load: " + "; ".join(failures)
    raise ConfigError(message)


def failure_reason(err: BaseException) -> str:
    """One line: the exception and where in the user's code it was raised."""
    if isinstance(err, SyntaxError):
        return f"SyntaxError: {err.msg} ({err.filename}, line {err.lineno})"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    where = ""
    frames = traceback.extract_tb(err.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    if user:
        last = user[-1]
        where = f" ({last.filename}, line {last.lineno})"
    return f"{type(err).__name__}: {text}{where}" if text else f"{type(err).__name__}{where}"


# -- parameters --------------------------------------------------------------------------------


def split_network_group(group: Mapping[str, Any], key: str = "network") -> tuple[str, dict[str, Any]]:
    """``{name: mlp, hidden: [64]}`` -> ``("mlp", {"hidden": [64]})``; a missing name is a ``ConfigError``."""
    if not isinstance(group, Mapping):
        raise ConfigError(f"{key}: expected a mapping with `{SELECTOR}` and the network's parameters, got {group!r}")
    if SELECTOR not in group:
        raise ConfigError(f"{key}.{SELECTOR}: required key is missing; known networks: {', '.join(known_networks())}")
    params = {str(k): v for k, v in group.items() if k != SELECTOR}
    return group[SELECTOR], params


_KIND_WORDS = {"boolean": "true or false", "number": "a number", "string": "a string", "list": "a list"}


def accepted_params(name: str) -> dict[str, inspect.Parameter]:
    """The parameters a config may set for network ``name`` (everything after ``num_outputs``)."""
    sig = inspect.signature(get_network(name))
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    skip = {p.name for p in positional[:2]}
    return {p.name: p for p in params if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def default_params(name: str) -> dict[str, Any]:
    """The parameters of network ``name`` that have defaults, with them (tuples as lists): the
    values ``network=<name>`` starts from, declared once, in the build function's signature."""

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, list | tuple) else value

    return {n: plain(p.default) for n, p in accepted_params(name).items() if p.default is not p.empty}


def check_params(name: str, params: Mapping[str, Any], key: str = "network") -> list[str]:
    """Problems of ``params`` for network ``name``, one line each, ``[]`` when they fit.

    Compares against the build function's signature, without calling it and
    without importing TensorFlow:

    - a parameter the function does not take (unless it takes ``**kwargs``),
      with a did-you-mean and the accepted names;
    - a parameter without a default that the config does not set;
    - a value of another kind than the parameter's default: a default number
      wants a number, ``True``/``False`` wants a boolean, a string a string, a
      list or tuple a list. A ``None`` default (or none) accepts anything.

    Value ranges are the build function's business (it raises ``ConfigError``).
    """
    fn = get_network(name, key=f"{key}.{SELECTOR}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    accepted = accepted_params(name)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    problems = []
    for param, value in params.items():
        spec = accepted.get(param)
        if spec is None:
            if not takes_kwargs:
                names = ", ".join(sorted(accepted)) or "none"
                problems.append(
                    f"{key}.{param}: unknown parameter of network '{name}'{did_you_mean(param, accepted)}; accepted: {names}"
                )
            continue
        default = spec.default
        if default is inspect.Parameter.empty or default is None:
            continue
        want, got = type_name(default), type_name(value)
        if want in _KIND_WORDS and want != got:
            problems.append(f"{key}.{param}: expected {_KIND_WORDS[want]} like the default {default!r}, got {value!r}")
    for param, spec in accepted.items():
        if spec.default is inspect.Parameter.empty and param not in params:
            problems.append(f"{key}.{param}: required parameter of network '{name}' is missing; set {key}.{param}=...")
    return problems
