"""What every export policy shares: version numbers, retention and pending deletions.

A policy decides when to export (``update`` after each evaluation, ``finish`` at the
end); this base numbers the exports, keeps the ``keep`` it ranks first, and lists the
rest in ``to_delete()`` until ``prune()``. All of it is in the saved state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.errors import ConfigError
from factory.policies.monitor import (
    PolicyStateError,
    check_int,
    decode_float,
    encode_float,
    is_int,
    require_state,
    state_int,
)


class ExportPolicy:
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

    def update(self, metrics: Mapping[str, Any] | None = None) -> bool:
        """Take one evaluation's results; True means export now, as ``last_version``.

        Args:
            metrics: The evaluation's results. Defaults to ``None`` (for policies that ignore them).

        Raises:
            MetricError: if a monitored metric is missing or not a number; the
                state is then unchanged.
        """
        raise NotImplementedError

    def finish(self) -> bool:
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
                    f"saved {self._policy} state: each export needs version, eval and value, got {entry!r}"
                )
            version = state_int(entry, "version")
            eval_ = state_int(entry, "eval", optional=True)
            value = decode_float(entry["value"], "export value")
            parsed.append({"version": version, "eval": eval_, "value": value})
        pending = state["pending_delete"]
        if not isinstance(pending, list) or not all(is_int(v) for v in pending):
            raise PolicyStateError(f"saved {self._policy} state: pending_delete must be a list of versions")
        return {
            "_next_version": state_int(state, "next_version"),
            "_last_version": state_int(state, "last_version", optional=True),
            "_evals_seen": state_int(state, "evals_seen"),
            "_exports": parsed,
            "_pending": [int(v) for v in pending],
            "_note": str(state.get("note", "resumed")),
        }

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
