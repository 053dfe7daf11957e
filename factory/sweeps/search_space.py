"""A sweep's search space: Hydra's override grammar as Optuna distributions. No TensorFlow.

The sweeper ``hydra/sweeper=factory_optuna`` reads its parameters in the grammar of Hydra's
sweep overrides, from ``hydra.sweeper.params`` and the command line (the command line wins
over a parameter of the same key):

=================================  =================================================================
``key=interval(a, b)``             uniform in ``[a, b]``: ints when both ends are written as ints,
                                   else floats
``key=tag(log, interval(a, b))``   the same on a log scale (``a > 0``)
``key=range(a, b[, step])``        the values of Python's ``range(a, b, step)``: ints, or floats on a
                                   float grid (``range(0.1, 0.5, 0.1)``)
``key=tag(log, range(a, b))``      ints on a log scale (step 1)
``key=choice(x, y, ...)``          categorical (also ``key=x,y``); a value may be a list or a dict,
                                   ``choice([32],[64,64])``
``key=value``                      fixed: every trial gets it as written
=================================  =================================================================

Optuna's categorical values are None, bools, ints, floats and strings: a list or dict in a
``choice()`` is the override text of it there (``"[64,64]"``), and the trial's override
gets that text back. ``shuffle()`` is ignored (a sampler picks its own order); ``glob()``
and other tags are refused. Every problem is a ``ConfigError`` naming the key.

The keys themselves are not checked here: ``factory-train`` composes and validates the config
of every value a sweep names (the ends of an interval, each choice) before Hydra starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from factory.errors import ConfigError

LOG = "log"  # the one tag the sampler understands
_SCALAR = (bool, int, float, str, type(None))
_INTERVAL_ENDS = re.compile(r"interval\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)")
_INT = re.compile(r"[+-]?\d+")
ALLOWED = "interval(a, b), tag(log, interval(a, b)), range(a, b[, step]), tag(log, range(a, b)), choice(x, y, ...)"


@dataclass(frozen=True)
class Param:
    """One sampled parameter: its override key (``+key`` adds one), Optuna's distribution of it,
    each categorical choice's override text, and its grid for the grid sampler (None: an interval)."""

    key: str
    distribution: BaseDistribution
    texts: tuple[str, ...] = ()
    grid: tuple[Any, ...] | None = None

    @property
    def name(self) -> str:
        """Optuna's name of the parameter: the key without ``+``."""
        return self.key.lstrip("+")

    def override(self, value: Any) -> str:
        """The trial's override for the sampled ``value``: ``network.hidden=[64,64]``, ``lr=0.0013``."""
        if isinstance(self.distribution, CategoricalDistribution):  # by type too: True is not 1 here
            choices = self.distribution.choices
            text = self.texts[next(i for i, c in enumerate(choices) if type(c) is type(value) and c == value)]
        elif isinstance(value, float):
            text = repr(value)  # round-trips: the trial gets exactly the sampled value
        else:
            text = str(value)
        return f"{self.key}={text}"


@dataclass(frozen=True)
class SearchSpace:
    """The sampled ``params`` (by Optuna name) and the ``fixed`` overrides every trial gets."""

    params: Mapping[str, Param]
    fixed: tuple[str, ...] = ()

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: p.distribution for name, p in self.params.items()}

    def sampled(self, values: Mapping[str, Any]) -> list[str]:
        """The overrides of sampled ``values`` (Optuna's ``trial.params``)."""
        return [p.override(values[name]) for name, p in self.params.items() if name in values]

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for Optuna's ``GridSampler``; ConfigError for an interval."""
        intervals = [p.key for p in self.params.values() if p.grid is None]
        if intervals:
            raise ConfigError(
                [
                    f"{key}: the grid sampler (hydra.sweeper.sampler=grid) takes choice() and range() only, "
                    "not interval(); use range(a, b, step), or another sampler"
                    for key in intervals
                ]
            )
        return {name: list(p.grid or ()) for name, p in self.params.items()}

    def grid_size(self) -> int:
        size = 1
        for values in self.grid().values():
            size *= len(values)
        return size


def parse_search_space(overrides: Sequence[str]) -> SearchSpace:
    """The search space of ``overrides`` (``hydra.sweeper.params`` as ``key=value``, then the command
    line's): a later override of a key replaces an earlier one. ConfigError lists every problem."""
    parser = OverridesParser.create()
    entries: dict[str, Param | str] = {}
    problems = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except HydraException as err:
            key = text.split("=", 1)[0]
            problems.append(f"{key}: {str(err).strip().splitlines()[0]} (in {text})")
            continue
        name = override.get_key_element().lstrip("+~")
        entries.pop(name, None)  # the later one wins, in its own place
        try:
            entries[name] = _param(override) if override.is_sweep_override() else override.input_line
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        raise ConfigError(problems)
    return SearchSpace(
        params={p.name: p for p in entries.values() if isinstance(p, Param)},
        fixed=tuple(e for e in entries.values() if isinstance(e, str)),
    )


def _param(override: Override) -> Param:
    key = override.get_key_element()
    sweep = override.value()
    tags = set(getattr(sweep, "tags", None) or ())
    unknown = sorted(tags - {LOG})
    if unknown:
        raise ConfigError(f"{key}: unknown tag {', '.join(map(repr, unknown))}; the one tag allowed is tag(log, ...)")
    log = LOG in tags
    if isinstance(sweep, IntervalSweep):
        return _interval(key, sweep, override.input_line, log)
    if isinstance(sweep, RangeSweep):
        return _range(key, override, sweep, log)
    if isinstance(sweep, ChoiceSweep):
        if log:
            raise ConfigError(f"{key}: tag(log, ...) applies to interval() and range(), not to choice()")
        return _choice(key, override, sweep)
    value = override.input_line.split("=", 1)[-1]
    raise ConfigError(f"{key}: {value} is not a distribution a sampler can draw from; allowed: {ALLOWED}")


def _interval(key: str, sweep: IntervalSweep, text: str, log: bool) -> Param:
    low, high = sweep.start, sweep.end
    if low > high:
        raise ConfigError(f"{key}: interval({low:g}, {high:g}) has its lower end above its upper end")
    if log and low <= 0:
        raise ConfigError(f"{key}: a log scale needs a lower end above 0, got {low:g}")
    ends = _INTERVAL_ENDS.search(text.split("=", 1)[-1])
    if ends and all(_INT.fullmatch(e) for e in ends.groups()):  # Hydra reads both ends as floats
        return Param(key, IntDistribution(int(low), int(high), log=log))
    return Param(key, FloatDistribution(float(low), float(high), log=log))


def _range(key: str, override: Override, sweep: RangeSweep, log: bool) -> Param:
    sweep.shuffle = False  # a sampler picks its own order
    values = sorted(override.sweep_iterator())
    if not values:
        raise ConfigError(f"{key}: {override.input_line.split('=', 1)[-1]} holds no value")
    step = abs(sweep.step) if len(values) > 1 else 1
    low, high = values[0], values[-1]
    if all(isinstance(v, int) for v in values) and isinstance(step, int):
        if log and (step != 1 or low < 1):
            raise ConfigError(f"{key}: tag(log, range(a, b)) needs a step of 1 and a >= 1")
        return Param(key, IntDistribution(low, high, step=1 if log else step, log=log), grid=tuple(values))
    if log:
        raise ConfigError(f"{key}: tag(log, ...) over floats takes interval(a, b), not a range with a float step")
    distribution = FloatDistribution(float(low), float(high), step=float(step))
    return Param(key, distribution, grid=tuple(float(v) for v in values))


def _choice(key: str, override: Override, sweep: ChoiceSweep) -> Param:
    sweep.shuffle = False  # a sampler picks its own order
    choices: list[Any] = []
    texts: list[str] = []
    for value, text in zip(override.sweep_iterator(), override.sweep_string_iterator(), strict=True):
        choice = value if isinstance(value, _SCALAR) else text
        if any(type(c) is type(choice) and c == choice for c in choices):
            continue  # a repeated value: one choice
        choices.append(choice)
        texts.append(text)
    return Param(key, CategoricalDistribution(choices), texts=tuple(texts), grid=tuple(choices))
