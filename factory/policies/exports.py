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
    check_int,
    decode_float,
    encode_float,
    is_int,
    require_state,
    state_int,
)


class _ExportPolicy:
    """Version numbers, retention and pending deletions, shared by the export policies."""

    config_key = "export"
    _policy = ""
    _STATE_KEYS = ("next_version", "last_version", "evals_seen", "exports", "pending_delete")

    def __init__(self, keep: int, problems: list[str]):
        problems += check_int(keep, f"{self.config_key}.keep", 1, "exported versions to retain")
        if problems:
            raise ConfigError(problems)
        self._keep = int(keep)
        self._next_version = 1
        self._last_version: int | None = None
        self._evals_seen = 0
        # Retained exports, in retention order (best or newest first); each
        # {"version": int, "eval": int | None, "value": float | None}.
        self._exports: list[dict[str, Any]] = []
        self._pending: list[int] = []
        self._note = "no evaluation yet"

    @property
    def keep(self) -> int:
        """How many exported versions are retained."""
        return self._keep

    @property
    def next_version(self) -> int:
        """Version number the next export gets unless the caller passes one."""
        return self._next_version

    @property
    def last_version(self) -> int | None:
        """Version of the most recent export, or None before the first."""
        return self._last_version

    @property
    def evals_seen(self) -> int:
        """Evaluations passed to ``update`` so far."""
        return self._evals_seen

    def retained(self) -> list[int]:
        """Versions to keep on disk, in retention order (best or newest first)."""
        return [entry["version"] for entry in self._exports]

    def to_delete(self) -> list[int]:
        """Exported versions no longer retained, ascending; they accumulate until ``prune()``."""
        return list(self._pending)

    def prune(self) -> list[int]:
        """Return ``to_delete()`` and forget it: the caller deletes these versions now."""
        pending, self._pending = self._pending, []
        return pending

    def update(self, metrics: Mapping[str, Any] | None = None, version: int | None = None) -> bool:
        """Take one evaluation's results; True means export now, as ``last_version``.

        Args:
            metrics: The evaluation's results. Defaults to ``None`` (for policies that ignore them).
            version: This export's version, >= ``next_version``. Defaults to ``None``
                (``next_version``).

        Raises:
            MetricError: if a monitored metric is missing or not a number.
            ValueError: if ``version`` is below ``next_version`` (versions only increase).
            Either way the state is unchanged.
        """
        raise NotImplementedError

    def finish(self, version: int | None = None) -> bool:
        """Training ended; True means export now, as ``last_version``. Here always False."""
        return False

    def describe(self) -> str:
        """One line explaining the last decision, for the runner's log."""
        return self._note

    def state_dict(self) -> dict[str, Any]:
        """The policy's state as a strict-JSON-serialisable dict (NaN and infinities as strings)."""
        return {
            "policy": self._policy,
            "next_version": self._next_version,
            "last_version": self._last_version,
            "evals_seen": self._evals_seen,
            "exports": [{**e, "value": encode_float(e["value"])} for e in self._exports],
            "pending_delete": list(self._pending),
            "note": self._note,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state_dict()`` output; all-or-nothing.

        ``keep`` and ``min_delta`` come from this object; if ``keep`` shrank,
        the exports that no longer fit go to ``to_delete()``.

        Raises:
            PolicyStateError: if the state belongs to another policy or is malformed.
            ConfigError: if it was saved for another metric, direction or ``weights``.
        """
        require_state(state, self._policy, self._STATE_KEYS)
        vars(self).update(self._parse_state(state))
        self._trim()

    def _parse_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes to restore from ``state``, all checked and none yet assigned."""
        exports = state["exports"]
        if not isinstance(exports, list):
            raise PolicyStateError(f"saved {self._policy} state: exports must be a list")
        parsed = []
        for entry in exports:
            if not isinstance(entry, Mapping) or not {"version", "eval", "value"} <= set(entry):
                raise PolicyStateError(
                    f"saved {self._policy} state: each export needs version, eval and value, "
                    f"got {entry!r}"
                )
            version = state_int(entry, "version")
            eval_ = state_int(entry, "eval", optional=True)
            value = decode_float(entry["value"], "export value")
            parsed.append({"version": version, "eval": eval_, "value": value})
        pending = state["pending_delete"]
        if not isinstance(pending, list) or not all(is_int(v) for v in pending):
            raise PolicyStateError(
                f"saved {self._policy} state: pending_delete must be a list of versions"
            )
        return {
            "_next_version": state_int(state, "next_version"),
            "_last_version": state_int(state, "last_version", optional=True),
            "_evals_seen": state_int(state, "evals_seen"),
            "_exports": parsed,
            "_pending": [int(v) for v in pending],
            "_note": str(state.get("note", "resumed")),
        }

    def _claim_version(self, version: int | None) -> int:
        """The version an export would get (checked, not yet committed)."""
        if version is None:
            return self._next_version
        if not is_int(version) or version < self._next_version:
            raise ValueError(
                f"export version must be a whole number >= {self._next_version} "
                f"(versions only increase), got {version!r}"
            )
        return int(version)

    def _record(self, version: int, eval_: int | None, value: float | None) -> None:
        self._last_version = version
        self._next_version = version + 1
        self._exports.append({"version": version, "eval": eval_, "value": value})
        self._trim()

    def _order(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(entries, key=lambda entry: -entry["version"])

    def _trim(self) -> None:
        # Also run after loading a state: `keep` may have shrunk since it was
        # saved, and what no longer fits must be deleted, not forgotten.
        ordered = self._order(self._exports)
        self._exports = ordered[: self._keep]
        dropped = [entry["version"] for entry in ordered[self._keep :]]
        self._pending = sorted(set(self._pending) | set(dropped))

    def _retention_note(self) -> str:
        note = f"keeping {', '.join(f'v{v}' for v in self.retained())}"
        if self._pending:
            note += f"; delete {', '.join(f'v{v}' for v in self._pending)}"
        return note


class BestExport(BestSoFar, _ExportPolicy):
    """Export whenever the monitored metric improves; retain the ``keep`` best exports.

    An evaluation exports when it beats every earlier one by more than
    ``min_delta`` (the rule of ``ModelCheckpoint(save_best_only=True)``): the
    first number always exports, a tie does not, a NaN never does. Exports are
    ranked by their value (newer first among equals) and only the best
    ``keep`` are retained.

    Args:
        monitor: Metric to rank exports by. Defaults to ``"val_loss"``.
        mode: ``"auto"``, ``"min"`` or ``"max"``; see ``Monitor``. Defaults to ``"auto"``.
        min_delta: Minimum improvement that triggers an export; its sign is
            ignored. Defaults to ``0.0``.
        keep: Number of best exports to retain, >= 1. Defaults to ``1``.
        directions: Metric directions for ``mode="auto"``; see ``Monitor``. Defaults to ``None``.

    Raises:
        ConfigError: listing every bad argument at once (keys start with ``export.``).
    """

    _policy = "BestExport"
    _STATE_KEYS = (*_ExportPolicy._STATE_KEYS, *BestSoFar._BEST_KEYS)

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
        keep: int = 1,
        *,
        directions: Mapping[str, str] | None = None,
    ):
        problems: list[str] = []
        self._set_monitor(problems, monitor, mode, min_delta, directions=directions)
        super().__init__(keep, problems)  # raises if the monitor had problems

    def update(self, metrics: Mapping[str, Any], version: int | None = None) -> bool:
        """True when this evaluation improves on every earlier one; see ``_ExportPolicy.update``."""
        value = self._monitor.value(metrics)
        candidate = self._claim_version(version)
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


class LatestExport(_ExportPolicy):
    """Export at every evaluation; retain the ``keep`` newest exports.

    Args:
        keep: Number of newest exports to retain, >= 1. Defaults to ``1``.

    Raises:
        ConfigError: if ``keep`` is not a whole number >= 1.
    """

    _policy = "LatestExport"

    def __init__(self, keep: int = 1):
        super().__init__(keep, [])

    def update(self, metrics: Mapping[str, Any] | None = None, version: int | None = None) -> bool:
        """Always True, without reading ``metrics``; see ``_ExportPolicy.update``."""
        candidate = self._claim_version(version)
        self._evals_seen += 1
        self._record(candidate, self._evals_seen, None)
        self._note = f"export v{candidate} (latest); {self._retention_note()}"
        return True


class FinalExport(BestSoFar, _ExportPolicy):
    """Export once, when training ends (step limit or early stop).

    ``update`` never exports; ``keep_current_weights`` tells the runner whether
    the weights just evaluated are the ones to export at the end: for
    ``weights="best"`` when they beat every earlier evaluation by more than
    ``min_delta``, for ``weights="last"`` always (``best_eval`` is then the
    latest evaluation). ``finish()`` returns True at most once, even across a resume.

    Args:
        weights: ``"best"`` (the best evaluation's weights) or ``"last"`` (the
            weights at the end of training). Defaults to ``"best"``.
        monitor: Metric that decides the best weights; ignored for
            ``weights="last"``. Defaults to ``"val_loss"``.
        mode: ``"auto"``, ``"min"`` or ``"max"``; see ``Monitor``. Defaults to ``"auto"``.
        min_delta: Minimum improvement for new best weights; its sign is
            ignored. Defaults to ``0.0``.
        directions: Metric directions for ``mode="auto"``; see ``Monitor``. Defaults to ``None``.

    Raises:
        ConfigError: listing every bad argument at once (keys start with ``export.``).
    """

    _policy = "FinalExport"
    _STATE_KEYS = (*_ExportPolicy._STATE_KEYS, "weights", *BestSoFar._BEST_KEYS, "done")
    _WEIGHTS = ("best", "last")

    def __init__(
        self,
        weights: str = "best",
        monitor: str = "val_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
        *,
        directions: Mapping[str, str] | None = None,
    ):
        problems = check_choice(weights, f"{self.config_key}.weights", self._WEIGHTS)
        if weights != "last":
            self._set_monitor(problems, monitor, mode, min_delta, directions=directions)
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

    def update(self, metrics: Mapping[str, Any] | None = None, version: int | None = None) -> bool:
        """Always False, but sets ``keep_current_weights``; see ``_ExportPolicy.update``."""
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

    def finish(self, version: int | None = None) -> bool:
        """Training ended; True (at most once) means export now, as ``last_version``.

        False if the export already happened, or if ``weights="best"`` and no evaluation
        produced a number. Raises ``ValueError`` if ``version`` is below ``next_version``.
        """
        if self._done:
            self._note = f"final export already written (v{self._last_version})"
            return False
        if self._monitor is not None and self._best_value is None:
            name = self._monitor.name
            self._note = f"no final export: no evaluation produced a number for {name}"
            return False
        candidate = self._claim_version(version)
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
