"""Export policies: when to export the model and which exports to retain.

The runner asks ``update`` after each evaluation and ``finish`` at the end whether
to export now; ``to_delete()`` then lists exports no longer retained, until ``prune()``.
All of it is in the saved state, so a resumed run never exports a model worse than
one it already has, nor forgets an export it must delete.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from factory.errors import ConfigError
from factory.policies.monitor import (
    BestSoFar,
    PolicyStateError,
    check_choice,
)
from factory.policies.retention import ExportPolicy


class BestExport(BestSoFar, ExportPolicy):
    """Export whenever the monitored metric improves; retain the ``keep`` best exports.

    An evaluation exports when it beats every earlier one by more than
    ``min_delta`` (the rule of ``ModelCheckpoint(save_best_only=True)``): the
    first number always exports, a tie does not, a NaN never does. Exports are
    ranked by their value (newer first among equals) and only the best
    ``keep`` are retained.

    Every argument is required: the values come from the config's ``export.best``
    group (``factory.config.settings.BestExportConfig``).

    Args:
        monitor: Metric to rank exports by.
        mode: ``"auto"``, ``"min"`` or ``"max"``; see ``Monitor``.
        min_delta: Minimum improvement that triggers an export; its sign is
            ignored.
        keep: Number of best exports to retain, >= 1.

    Raises:
        ConfigError: listing every bad argument at once (keys start with ``export.``).
    """

    _policy = "BestExport"
    _STATE_KEYS = (*ExportPolicy._STATE_KEYS, *BestSoFar._BEST_KEYS)

    def __init__(self, *, monitor: str, mode: str, min_delta: float, keep: int):
        problems: list[str] = []
        self._set_monitor(problems, monitor, mode, min_delta)
        super().__init__(keep, problems)  # raises if the monitor had problems

    def update(self, metrics: Mapping[str, Any]) -> bool:
        """True when this evaluation improves on every earlier one; see ``ExportPolicy.update``."""
        value = self._monitor.value(metrics)
        candidate = self._next_version
        self._evals_seen += 1
        if not self._offer(value, self._evals_seen):
            self._note = f"no export: {self._verdict(value, False)}"
            return False
        self._record(candidate, self._evals_seen, value)
        self._note = f"export v{candidate}: {self._verdict(value, True)}; {self._retention_note()}"
        return True

    def _order(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # By value, not by age: a worse export never displaces a better one.
        def rank(entry: dict[str, Any]) -> tuple[float, int]:
            value = entry["value"]
            unranked = value is None or math.isnan(value)
            return (math.inf if unranked else self._monitor.rank_key(value), -entry["version"])

        return sorted(entries, key=rank)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self._best_state()}

    def _parse_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        self._monitor.check_state(state)
        return {**super()._parse_state(state), **self._parse_best(state)}


class LatestExport(ExportPolicy):
    """Export at every evaluation; retain the ``keep`` newest exports.

    Args:
        keep: Number of newest exports to retain, >= 1 (the config's ``export.latest.keep``).

    Raises:
        ConfigError: if ``keep`` is not a whole number >= 1.
    """

    _policy = "LatestExport"

    def __init__(self, *, keep: int):
        super().__init__(keep, [])

    def update(self, metrics: Mapping[str, Any] | None = None) -> bool:
        """Always True, without reading ``metrics``; see ``ExportPolicy.update``."""
        candidate = self._next_version
        self._evals_seen += 1
        self._record(candidate, self._evals_seen, None)
        self._note = f"export v{candidate} (latest); {self._retention_note()}"
        return True


class FinalExport(BestSoFar, ExportPolicy):
    """Export once, when training ends (step limit or early stop).

    ``update`` never exports; ``keep_current_weights`` tells the runner whether
    the weights just evaluated are the ones to export at the end: for
    ``weights="best"`` when they beat every earlier evaluation by more than
    ``min_delta``, for ``weights="last"`` always (``best_eval`` is then the
    latest evaluation). ``finish()`` returns True at most once, even across a resume.

    Every argument is required: the values come from the config's ``export.final``
    group (``factory.config.settings.FinalExportConfig``).

    Args:
        weights: ``"best"`` (the best evaluation's weights) or ``"last"`` (the
            weights at the end of training).
        monitor: Metric that decides the best weights; ignored for ``weights="last"``.
        mode: ``"auto"``, ``"min"`` or ``"max"``; see ``Monitor``.
        min_delta: Minimum improvement for new best weights; its sign is ignored.

    Raises:
        ConfigError: listing every bad argument at once (keys start with ``export.``).
    """

    _policy = "FinalExport"
    _STATE_KEYS = (*ExportPolicy._STATE_KEYS, "weights", *BestSoFar._BEST_KEYS, "done")
    _WEIGHTS = ("best", "last")

    def __init__(self, *, weights: str, monitor: str, mode: str, min_delta: float):
        problems = check_choice(weights, f"{self.config_key}.weights", self._WEIGHTS)
        if weights != "last":
            self._set_monitor(problems, monitor, mode, min_delta)
        super().__init__(1, problems)
        self._weights = weights
        self._keep_current = False
        self._done = False

    @property
    def weights(self) -> str:
        return self._weights

    @property
    def keep_current_weights(self) -> bool:
        """Whether the last ``update`` made the current weights the ones to export at the end."""
        return self._keep_current

    @property
    def done(self) -> bool:
        """Whether ``finish()`` has already returned True."""
        return self._done

    def update(self, metrics: Mapping[str, Any] | None = None) -> bool:
        """Always False, but sets ``keep_current_weights``; see ``ExportPolicy.update``."""
        value = None if self._monitor is None else self._monitor.value(metrics or {})
        self._evals_seen += 1
        if value is None:  # weights="last": every evaluation's weights replace the last ones
            self._best_eval, self._keep_current = self._evals_seen, True
            self._note = f"weights of eval {self._evals_seen} kept for the final export"
        else:
            self._keep_current = self._offer(value, self._evals_seen)
            kept = "kept for the final export" if self._keep_current else "not kept"
            self._note = f"{self._verdict(value, self._keep_current)}: weights {kept}"
        return False

    def finish(self) -> bool:
        """Training ended; True (at most once) means export now, as ``last_version``.

        False if the export already happened, or if ``weights="best"`` and no evaluation
        produced a number.
        """
        if self._done:
            self._note = f"final export already written (v{self._last_version})"
            return False
        if self._monitor is not None and self._best_value is None:
            name = self._monitor.name
            self._note = f"no final export: no evaluation produced a number for {name}"
            return False
        candidate = self._next_version
        self._done = True
        self._record(candidate, self._best_eval, self._best_value)
        which = f"eval {self._best_eval}" if self._best_eval is not None else "end of training"
        self._note = f"final export v{candidate} ({self._weights} weights, {which})"
        return True

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "weights": self._weights}
        return {**state, **self._best_state(), "done": self._done}

    def _parse_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if state["weights"] != self._weights:
            raise ConfigError(
                f"{self.config_key}.weights: the saved state exports the {state['weights']!r} "
                f"weights but this run asks for {self._weights!r}; restore the original "
                "setting, or start the run in a new directory"
            )
        if self._monitor is not None:
            self._monitor.check_state(state)
        parsed = {**super()._parse_state(state), **self._parse_best(state)}
        if not isinstance(state["done"], bool):
            raise PolicyStateError(f"saved {self._policy} state: done must be true or false")
        return {**parsed, "_done": state["done"], "_keep_current": False}


# Config names of the export policies, for whoever builds one from a config.
EXPORT_POLICIES = {"best": BestExport, "latest": LatestExport, "final": FinalExport}
