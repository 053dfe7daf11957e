"""Early stopping counted in evaluations, by the rules of ``keras.callbacks.EarlyStopping``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.errors import ConfigError
from factory.policies.monitor import (
    BestSoFar,
    check_finite,
    check_int,
    encode_float,
    fmt,
    plural,
    require_state,
    state_int,
)


class EarlyStopping(BestSoFar):
    """Stop training when the monitored metric has stopped improving, counted in evaluations.

    Call ``update(metrics)`` after every evaluation; True means stop now. The
    rules are those of ``keras.callbacks.EarlyStopping.on_epoch_end`` with one
    evaluation per epoch:

    - evaluations up to ``start_from_eval`` are a warm-up and are ignored;
    - every other evaluation adds one to ``wait``;
    - an evaluation better than the best so far by more than ``min_delta``
      becomes the best and never stops; it resets ``wait`` to 0 only if it also
      beats ``baseline`` (when given) by more than ``min_delta``;
    - otherwise training stops once ``wait >= patience``, but never at the
      first evaluation.

    So ``patience=3`` stops after three evaluations in a row without
    improvement; with a ``baseline`` the count runs from the first evaluation
    and only a value beyond the baseline resets it.

    Every argument is required: the values come from the config's ``early_stop``
    group, whose defaults are declared in ``factory.config.settings.EarlyStopConfig``.

    Args:
        monitor: Metric to watch in the evaluation results.
        mode: ``"auto"``, ``"min"`` or ``"max"``; see ``Monitor``.
        patience: Evaluations without improvement after which training stops; ``None``
            follows the metric (the best evaluation, ``wait``) and never stops.
        min_delta: Minimum change that counts as an improvement; its sign is
            ignored.
        baseline: Value the metric must beat (by more than ``min_delta``)
            before the count resets, or ``None``.
        start_from_eval: Initial evaluations to ignore (a warm-up in which no
            improvement is expected).

    Raises:
        ConfigError: listing every bad argument at once (keys start with
            ``early_stop.``).
    """

    config_key = "early_stop"
    _STATE_KEYS = (
        "monitor", "mode", "evals_seen", "wait", "best_value", "best_eval", "stopped_eval"
    )  # fmt: skip

    def __init__(
        self,
        *,
        monitor: str,
        mode: str,
        patience: int | None,
        min_delta: float,
        baseline: float | None,
        start_from_eval: int,
    ):
        key = self.config_key
        problems: list[str] = []
        self._set_monitor(problems, monitor, mode, min_delta)
        if patience is not None:
            problems += check_int(patience, f"{key}.patience", 0, "evaluations without improvement to allow")
        problems += check_finite(baseline, f"{key}.baseline", allow_none=True)
        problems += check_int(start_from_eval, f"{key}.start_from_eval", 0, "evaluations to ignore at first")
        if problems:
            raise ConfigError(problems)

        self._patience = None if patience is None else int(patience)
        self._baseline = None if baseline is None else float(baseline)
        self._start_from_eval = int(start_from_eval)
        self._evals_seen = 0
        self._wait = 0
        self._stopped_eval: int | None = None
        self._note = f"{self._monitor.name}: no evaluation yet"

    @property
    def patience(self) -> int | None:
        return self._patience

    @property
    def baseline(self) -> float | None:
        return self._baseline

    @property
    def start_from_eval(self) -> int:
        return self._start_from_eval

    @property
    def evals_seen(self) -> int:
        """Evaluations passed to ``update`` so far, warm-up included."""
        return self._evals_seen

    @property
    def wait(self) -> int:
        """Evaluations counted since the count last reset (Keras' ``wait``)."""
        return self._wait

    @property
    def stopped_eval(self) -> int | None:
        """Evaluation (counted from 1) at which ``update`` last returned True, or None."""
        return self._stopped_eval

    def update(self, metrics: Mapping[str, Any]) -> bool:
        """Take one evaluation's results; True means stop training now.

        Raises:
            MetricError: if the monitored metric is missing or not a number
                (the state is then unchanged).
        """
        value = self._monitor.value(metrics)
        self._evals_seen += 1
        n = self._evals_seen
        said = f"{self._monitor.name} {fmt(value)}"
        if n <= self._start_from_eval:
            self._note = f"{said} warm-up {n}/{self._start_from_eval}, not monitored yet"
            return False

        self._wait += 1
        if self._offer(value, n):
            self._note = self._verdict(value, improved=True)
            # As in Keras: restart the count only for a value that beats both
            # the previous best and the baseline.
            if self._baseline is None or self._monitor.is_improvement(value, self._baseline):
                self._wait = 0
            else:
                self._note += f" but not beyond baseline {fmt(self._baseline)}: {self._no_improvement()}"
            return False

        best = (
            f"best {fmt(self._best_value)} @ eval {self._best_eval}" if self._best_value is not None else "no best yet"
        )
        # Keras' `epoch > 0`: the first evaluation never stops training.
        if self._patience is not None and self._wait >= self._patience and n > 1:
            self._stopped_eval = n
            beyond = ""
            if self._baseline is not None and not (
                self._best_value is not None and self._monitor.is_improvement(self._best_value, self._baseline)
            ):
                beyond = f" beyond baseline {fmt(self._baseline)}"
            evals = plural(self._wait, "evaluation")
            self._note = f"{said} ({best}) stop: no improvement{beyond} in {evals}"
            return True
        self._note = f"{said} ({best}) {self._no_improvement()}"
        return False

    def _no_improvement(self) -> str:
        limit = "" if self._patience is None else f"/{self._patience}"
        return f"no improvement {self._wait}{limit}"

    def describe(self) -> str:
        """One line explaining the last decision, for the runner's log.

        For example ``val_loss 0.412 (best 0.398 @ eval 5) no improvement 2/3``,
        ``val_loss 0.398 improved (best so far)`` or
        ``val_loss 0.45 (best 0.398 @ eval 5) stop: no improvement in 3 evaluations``.
        """
        return self._note

    def state_dict(self) -> dict[str, Any]:
        """The policy's state as a strict-JSON-serialisable dict (NaN and infinities as strings)."""
        return {
            "policy": "EarlyStopping",
            "monitor": self._monitor.name,
            "mode": self._monitor.mode,
            "evals_seen": self._evals_seen,
            "wait": self._wait,
            "best_value": encode_float(self._best_value),
            "best_eval": self._best_eval,
            "stopped_eval": self._stopped_eval,
            "note": self._note,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state_dict()`` output; all-or-nothing.

        ``patience``, ``min_delta``, ``baseline`` and ``start_from_eval`` come
        from this object (the config may change them between runs); the
        monitored metric and resolved mode must match the saved ones.

        Raises:
            PolicyStateError: if the state belongs to another policy or is malformed.
            ConfigError: if it monitored another metric or direction.
        """
        require_state(state, "EarlyStopping", self._STATE_KEYS)
        self._monitor.check_state(state)
        # Everything is parsed before anything is assigned.
        parsed = {
            "_evals_seen": state_int(state, "evals_seen"),
            "_wait": state_int(state, "wait"),
            **self._parse_best(state),
            "_stopped_eval": state_int(state, "stopped_eval", optional=True),
        }
        vars(self).update(parsed, _note=str(state.get("note", f"{self._monitor.name}: resumed")))

    def __repr__(self) -> str:
        return (
            f"EarlyStopping({self._monitor!r}, patience={self._patience}, "
            f"baseline={self._baseline!r}, start_from_eval={self._start_from_eval})"
        )
