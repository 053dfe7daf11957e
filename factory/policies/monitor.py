"""The monitored metric and what "better" means, plus what every policy shares.

``Monitor`` owns the metric name, the direction (``mode``), ``min_delta`` and the
improvement test, so early stopping and the export policies agree on "better".
Its rules are those of Keras 3's ``MonitorCallback``, except where Keras only
warns and carries on, or where its answer is a trap:

- an unknown ``mode`` (Keras falls back to ``'auto'``) is a ``ConfigError``;
- a monitored metric missing from an evaluation's results (Keras skips the
  epoch, so training silently runs to the end) is a ``MetricError``;
- a NaN value is never an improvement, not even the first (Keras takes a first
  NaN as its best value, after which nothing can beat it);
- values compare as Python floats; Keras compares float32 tensors, so values
  closer than float32 resolution tie there and differ here.

Also here, for every policy: argument checks that report all problems at once,
numbers for messages, the best value so far (``BestSoFar``) and saved states.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping
from typing import Any

from factory.errors import ConfigError, FactoryError
from factory.names import EVAL_PREFIX
from factory.validation import did_you_mean

__all__ = ["DIRECTIONS", "MetricError", "Monitor", "PolicyStateError"]


class MetricError(FactoryError, LookupError):
    """A monitored metric is missing from (or not a number in) an evaluation's results."""


class PolicyStateError(FactoryError, ValueError):
    """A saved policy state that does not belong to this policy or is malformed."""


MODES = ("auto", "min", "max")

# What `auto` mode infers, by metric name without the `val_` prefix: the directions Keras
# declares for the metrics factory evaluates (`factory.names.TASK_METRICS`). Any other
# name needs `mode='min'` or `mode='max'`.
DIRECTIONS = {"loss": "min", "mae": "min", "mse": "min", "accuracy": "max", "auc": "max"}


# -- argument checks and messages ------------------------------------------------------------


def config_path(prefix: str | None, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, key: str, minimum: int, meaning: str) -> list[str]:
    if not is_int(value):
        return [f"{key}: must be a whole number ({meaning}), got {value!r}"]
    if value < minimum:
        return [f"{key}: {value} is below the minimum of {minimum} ({meaning})"]
    return []


def check_finite(value: Any, key: str, *, allow_none: bool = False) -> list[str]:
    if (value is None and allow_none) or (is_real(value) and math.isfinite(value)):
        return []
    return [f"{key}: must be a finite number{' or null' if allow_none else ''}, got {value!r}"]


def check_choice(value: Any, key: str, choices: tuple[str, ...]) -> list[str]:
    if value in choices:
        return []
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    return [f"{key}: {value!r} is not one of {', '.join(choices)}{hint}"]


def fmt(value: float | None) -> str:
    """4 significant digits for messages: ``0.3981``, ``1.235e+06``, ``nan``, ``none``."""
    return "none" if value is None else f"{value:.4g}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# -- saved states ----------------------------------------------------------------------------


def encode_float(value: float | None) -> float | str | None:
    # Strict JSON has no NaN or infinity; spell them as strings.
    if value is None or math.isfinite(value):
        return value
    return str(value)  # 'nan', 'inf', '-inf'


def decode_float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if is_real(value):
        return float(value)
    raise PolicyStateError(f"saved policy state: {what} must be a number, got {value!r}")


def require_state(state: Mapping[str, Any], policy: str, keys: tuple[str, ...]) -> None:
    """Refuse a saved state that is not a mapping, belongs to another policy or lacks ``keys``."""
    if not isinstance(state, Mapping):
        kind = type(state).__name__
        raise PolicyStateError(f"saved {policy} state must be a mapping, got {kind}")
    if state.get("policy") != policy:
        raise PolicyStateError(
            f"saved policy state belongs to {state.get('policy')!r}, not {policy}; "
            "the config's policy changed since the run started"
        )
    missing = [key for key in keys if key not in state]
    if missing:
        raise PolicyStateError(f"saved {policy} state lacks {', '.join(missing)}")


def state_int(state: Mapping[str, Any], key: str, *, optional: bool = False) -> int | None:
    value = state[key]
    if value is None and optional:
        return None
    if not is_int(value) or value < 0:
        raise PolicyStateError(f"saved policy state: {key} must be a whole number >= 0, got {value!r}")
    return int(value)


# -- the monitor -----------------------------------------------------------------------------


class Monitor:
    """The monitored metric, its direction and the improvement test.

    Args:
        monitor: Name of the metric in the evaluation results.
        mode: ``"min"`` (lower is better), ``"max"`` (higher is better) or
            ``"auto"``, which takes the direction of the name without a ``val_``
            prefix from ``DIRECTIONS`` (loss, mae and mse are minimised; accuracy
            and auc maximised).
        min_delta: A value must beat the reference by more than this to count
            as an improvement; its sign is ignored, as in Keras. Defaults to
            ``0.0`` (no threshold: for callers that only need the direction;
            the policies always pass their configured value).
        config_key: Dotted config path prefixed to error messages
            (``"early_stop"`` gives ``early_stop.mode: ...``). Defaults to
            ``None`` (bare argument names).

    Raises:
        ConfigError: listing every bad argument at once; in particular when
            ``mode="auto"`` cannot tell the direction of ``monitor`` (the
            message asks for ``mode='min'`` or ``mode='max'``).
    """

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0, *, config_key: str | None = None):
        self._config_key = config_key
        problems: list[str] = []
        if not isinstance(monitor, str) or not monitor:
            problems.append(
                f"{config_path(config_key, 'monitor')}: must be a metric name such as 'val_loss', got {monitor!r}"
            )
        problems += check_choice(mode, config_path(config_key, "mode"), MODES)
        problems += check_finite(min_delta, config_path(config_key, "min_delta"))
        if not problems and mode == "auto":
            mode = DIRECTIONS.get(monitor.removeprefix(EVAL_PREFIX))
            if mode is None:
                problems.append(
                    f"{config_path(config_key, 'mode')}: cannot tell whether '{monitor}' should be "
                    "minimised or maximised; pass mode='min' to keep the lowest value "
                    "or mode='max' to keep the highest"
                )
        if problems:
            raise ConfigError(problems)

        self._name = monitor
        self._mode = mode
        self._min_delta = abs(float(min_delta))
        # Keras folds the direction into the sign of min_delta and then always
        # asks `op(value - min_delta, reference)`: in min mode a value must be
        # below reference - |min_delta|, in max mode above reference + |min_delta|.
        self._signed_delta = -self._min_delta if mode == "min" else self._min_delta
        self._op = operator.lt if mode == "min" else operator.gt

    @property
    def name(self) -> str:
        """The monitored metric's name."""
        return self._name

    @property
    def mode(self) -> str:
        """The resolved direction, ``"min"`` or ``"max"`` (never ``"auto"``)."""
        return self._mode

    @property
    def min_delta(self) -> float:
        """The minimum improvement, always >= 0."""
        return self._min_delta

    @property
    def config_key(self) -> str | None:
        """The dotted config path used in error messages."""
        return self._config_key

    def value(self, metrics: Mapping[str, Any]) -> float:
        """The monitored value in ``metrics``, as a float (NaN passes through).

        Raises:
            MetricError: if the metric is missing (the message lists the
                available names and suggests the closest) or is not a number.
        """
        key = config_path(self._config_key, "monitor")
        if self._name not in metrics or metrics[self._name] is None:
            names = sorted(str(name) for name in metrics)
            available = ", ".join(names) if names else "none"
            raise MetricError(
                f"{key}: '{self._name}' is not among the evaluation metrics "
                f"({available}){did_you_mean(self._name, names)}; set {key} to one of them"
            )
        raw = metrics[self._name]
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise MetricError(
                f"{key}: the evaluation reported {raw!r} for '{self._name}', which is not a number"
            ) from None

    def is_improvement(self, value: float, reference: float | None) -> bool:
        """Whether ``value`` beats ``reference`` by more than ``min_delta``.

        Any number beats a ``None`` reference; NaN never improves; ties do not.
        """
        if math.isnan(value):
            return False
        if reference is None:
            return True
        return bool(self._op(value - self._signed_delta, reference))

    def rank_key(self, value: float) -> float:
        """Sort key that puts better values first (ascending sort)."""
        return value if self._mode == "min" else -value

    def check_state(self, state: Mapping[str, Any]) -> None:
        """Refuse a saved state that monitored another metric or direction.

        Its best value means nothing for another metric, so a resumed run must
        not carry it over.

        Raises:
            ConfigError: naming both monitors and how to fix it.
        """
        saved = (state.get("monitor"), state.get("mode"))
        if saved != (self._name, self._mode):
            raise ConfigError(
                f"{config_path(self._config_key, 'monitor')}: the saved state monitored "
                f"'{saved[0]}' (mode {saved[1]}) but this run monitors '{self._name}' "
                f"(mode {self._mode}); restore the original monitor and mode, or start "
                "the run in a new directory"
            )

    def __repr__(self) -> str:
        return f"Monitor({self._name!r}, mode={self._mode!r}, min_delta={self._min_delta!r})"


class BestSoFar:
    """Mixin for the policies that keep a best value: its monitor, value, evaluation and state."""

    config_key: str
    _BEST_KEYS = ("monitor", "mode", "best_value", "best_eval")
    _monitor: Monitor | None = None
    _best_value: float | None = None
    _best_eval: int | None = None

    @property
    def monitor(self) -> Monitor | None:
        """The monitor that defines "better" (name, resolved mode, min_delta)."""
        return self._monitor

    @property
    def best_value(self) -> float | None:
        """Best monitored value so far, or None."""
        return self._best_value

    @property
    def best_eval(self) -> int | None:
        """Evaluation (counted from 1) that produced ``best_value``, or None."""
        return self._best_eval

    def _set_monitor(self, problems: list[str], monitor: str, mode: str, min_delta: float) -> None:
        """``_monitor = Monitor(monitor, mode, min_delta)``, or add its problems to ``problems``."""
        try:
            self._monitor = Monitor(monitor, mode, min_delta, config_key=self.config_key)
        except ConfigError as error:
            problems.extend(error.problems)

    def _offer(self, value: float, eval_: int) -> bool:
        """Make ``value`` (seen at evaluation ``eval_``) the best if it is an improvement."""
        if not self._monitor.is_improvement(value, self._best_value):
            return False
        self._best_value, self._best_eval = value, eval_
        return True

    def _verdict(self, value: float, improved: bool) -> str:
        """The note on a value just offered, e.g. ``val_loss 0.4 not better than 0.39 (eval 3)``."""
        said = f"{self._monitor.name} {fmt(value)}"
        if improved:
            return f"{said} improved (best so far)"
        if self._best_value is None:
            return f"{said} is not a number"
        return f"{said} not better than {fmt(self._best_value)} (eval {self._best_eval})"

    def _best_state(self) -> dict[str, Any]:
        monitor = self._monitor
        return {
            "monitor": monitor.name if monitor else None,
            "mode": monitor.mode if monitor else None,
            "best_value": encode_float(self._best_value),
            "best_eval": self._best_eval,
        }

    @staticmethod
    def _parse_best(state: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "_best_value": decode_float(state["best_value"], "best_value"),
            "_best_eval": state_int(state, "best_eval", optional=True),
        }
