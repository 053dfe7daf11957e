"""Export policies wired to the exporter: what the runner calls after each evaluation and at the end."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from factory.config import ExportConfig
from factory.policies import EXPORT_POLICIES
from factory.serving.exporter import Exporter

log = logging.getLogger("factory")


class Publisher:
    """Runs the enabled export policies (``best``, ``latest``, ``final``) against one ``Exporter``.

    ``keep_final_weights`` / ``load_final_weights`` save and restore the weights a
    ``final: {weights: best}`` policy will export at the end (they may be older
    than the weights training ends with).
    """

    def __init__(
        self,
        config: ExportConfig,
        exporter: Exporter | Callable[[], Exporter],
        keep_final_weights: Callable[[], None],
        load_final_weights: Callable[[], None],
    ):
        self.policies = {name: EXPORT_POLICIES[name](**args) for name, args in config.policies.items()}
        self._monitors = {
            name: {"monitor": args["monitor"], "mode": policy.monitor.mode if getattr(policy, "monitor", None) else args.get("mode")}
            for (name, args), policy in zip(config.policies.items(), self.policies.values(), strict=True)
            if args.get("monitor") and args.get("weights") != "last"
        }
        self._exporter = exporter
        self._keep_final = keep_final_weights
        self._load_final = load_final_weights

    @property
    def exporter(self) -> Exporter:
        if callable(self._exporter) and not isinstance(self._exporter, Exporter):
            self._exporter = self._exporter()  # built on first use: it reads eval records
        return self._exporter

    def state_dict(self) -> dict[str, Any]:
        return {name: policy.state_dict() for name, policy in self.policies.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the policies; exports written after the checkpoint are removed (they will be redone)."""
        for name, policy in self.policies.items():
            if name in state:
                policy.load_state_dict(state[name])
            removed = self.exporter.remove_newer(name, policy.next_version)
            if removed:
                log.info(f"export/{name}: removed v{', v'.join(map(str, removed))}, written after the checkpoint resumed from")
            self.exporter.prune(name, policy.prune())

    def after_evaluation(self, metrics: Mapping[str, float], info: Mapping[str, Any]) -> list[str]:
        """Export where a policy says so; returns short notes for the evaluation's log line."""
        notes = []
        for name, policy in self.policies.items():
            if policy.update(metrics):
                path = self.exporter.write(name, policy.last_version, {**info, **self._monitors.get(name, {})})
                notes.append(f"exported {name} v{policy.last_version}")
                log.debug(f"wrote {path}")
            if getattr(policy, "keep_current_weights", False):
                self._keep_final()
            deleted = self.exporter.prune(name, policy.prune())
            if deleted:
                notes.append(f"deleted {name} v{', v'.join(map(str, deleted))}")
        return notes

    def at_end(self, info: Mapping[str, Any]) -> str | None:
        """The final export, if a ``final`` policy is on and has not exported yet."""
        policy = self.policies.get("final")
        if policy is None or not policy.finish():
            return None
        if policy.weights == "best":
            self._load_final()
        path = self.exporter.write("final", policy.last_version, {**info, "eval": policy.best_eval, **self._monitors.get("final", {})})
        return str(path)

    def published(self) -> dict[str, str]:
        """``{policy: path of its current export}`` for the run's summary."""
        out = {}
        for name in self.policies:
            version = self.exporter.current(name)
            if version is not None:
                out[name] = str(self.exporter.policy_dir(name) / str(version))
        return out
