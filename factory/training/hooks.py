"""What happens after each evaluation: early stopping, exports, and the record of it. No TensorFlow.

The schedule calls each hook of its list, in order, with one ``Evaluation``:

- ``EarlyStop`` decides whether training stops (``Evaluation.stop``) and saves the best weights;
- ``Pruning`` (in a sweep that prunes) reports the monitored value to the sweep's study and stops
  a trial the study's pruner judges unpromising;
- ``Exports`` runs the export policies (``best``, ``latest``, ``final``) against an exporter;
- ``MetricsLog`` writes the evaluation's log line, its TensorBoard scalars and its
  ``metrics.jsonl`` row. The row is the evaluation's commit: until it is written, an
  interrupted evaluation is rolled back and done again on resume, so ``MetricsLog`` comes last.

A hook with a ``state_key`` keeps state that goes into every checkpoint under that key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from factory.config import EarlyStopConfig, ExportConfig
from factory.policies import EXPORT_POLICIES, EarlyStopping
from factory.policies.monitor import fmt
from factory.run_dir import append_json_line, read_json_lines, torn_tail, write_json_lines

if TYPE_CHECKING:
    from factory.serving.exporter import Exporter

log = logging.getLogger("factory")


@dataclass
class Evaluation:
    """One evaluation as the hooks see it; ``number`` counts from 1."""

    number: int
    step: int
    metrics: Mapping[str, float]
    stop: bool = False  # set by EarlyStop: training ends after this evaluation
    notes: list[str] = field(default_factory=list)  # set by Exports: what was exported or deleted


class EvaluationHook(Protocol):
    state_key: str | None  # None: nothing to checkpoint

    def after_evaluation(self, evaluation: Evaluation) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class EarlyStop:
    """The ``early_stop`` policy as a hook; its best evaluation also picks the best weights.

    With ``early_stop.enabled: false`` the policy still follows the monitored metric (the
    best weights, ``best`` and ``wait`` in the metrics rows, the summary's best value) and
    this hook never stops training. ``agree(stop)`` makes the workers of a multi-worker run
    decide together (a collective, called at every evaluation); ``save_best_weights`` is
    called whenever the best evaluation changes.
    """

    state_key = "early_stop"

    def __init__(self, config: EarlyStopConfig, agree: Callable[[bool], bool], save_best_weights: Callable[[], None]):
        self.enabled = config.enabled
        self.policy = EarlyStopping(
            monitor=config.monitor,
            mode=config.mode,
            patience=config.patience if config.enabled else None,
            min_delta=config.min_delta,
            baseline=config.baseline,
            start_from_eval=config.start_from_eval,
        )
        self._agree = agree
        self._save_best_weights = save_best_weights

    @property
    def stopped(self) -> bool:
        """Whether an evaluation (before a resume, too) stopped the run; never with early stopping off."""
        return self.enabled and self.policy.stopped_eval is not None

    def after_evaluation(self, evaluation: Evaluation) -> None:
        previous_best = self.policy.best_eval
        evaluation.stop = self._agree(self.policy.update(evaluation.metrics))
        if self.policy.best_eval != previous_best:
            self._save_best_weights()

    def describe(self) -> str:
        """The policy's verdict on the last evaluation, for its log line."""
        note = self.policy.describe()
        return note if self.enabled else f"{note} (early stopping off)"

    def state_dict(self) -> dict[str, Any]:
        return self.policy.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state)


class TrialReporter(Protocol):
    """A sweep trial's line to its study (``factory.sweeps.study.TrialReporter``)."""

    def report(self, step: int, value: float) -> str | None:
        """Record ``value`` at ``step``; a one-line reason when the trial is to stop (pruned), else None."""
        ...


class Pruning:
    """A sweep's pruner as a hook: every evaluation's monitored value goes to the trial's study.

    When the study's pruner judges the trial unpromising, training stops after this evaluation
    as an early stop does (the checkpoint and the best weights are kept) and ``reason`` says why;
    the run's summary marks it pruned. The decision is in the checkpoint: a pruned trial resumed
    stays stopped. ``agree(stop)`` makes the workers of a multi-worker run decide together.
    """

    state_key = "pruning"

    def __init__(self, reporter: TrialReporter, monitor: str, agree: Callable[[bool], bool]):
        self.reporter = reporter
        self.monitor = monitor
        self._agree = agree
        self.reason: str | None = None

    @property
    def pruned(self) -> bool:
        return self.reason is not None

    def after_evaluation(self, evaluation: Evaluation) -> None:
        reason = self.reporter.report(evaluation.step, float(evaluation.metrics[self.monitor]))
        if self._agree(reason is not None):
            self.reason = reason or "pruned by the study (another worker's verdict)"
            evaluation.stop = True
            evaluation.notes.append(self.reason)

    def state_dict(self) -> dict[str, Any]:
        return {"reason": self.reason} if self.reason else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reason = state.get("reason")


class Exports:
    """Runs the enabled export policies against one ``Exporter`` (built on first use: it reads eval records).

    ``keep_final_weights`` / ``load_final_weights`` save and restore the weights a
    ``final: {weights: best}`` policy will export at the end (they may be older than the
    weights training ends with).
    """

    state_key = "exports"

    def __init__(
        self,
        config: ExportConfig,
        make_exporter: Callable[[], Exporter],
        keep_final_weights: Callable[[], None],
        load_final_weights: Callable[[], None],
    ):
        self.policies = {name: EXPORT_POLICIES[name](**args) for name, args in config.policies.items()}
        # What each export's manifest says it was chosen by.
        self._monitors = {
            name: {
                "monitor": args["monitor"],
                "mode": policy.monitor.mode if getattr(policy, "monitor", None) else args.get("mode"),
            }
            for (name, args), policy in zip(config.policies.items(), self.policies.values(), strict=True)
            if args.get("monitor") and args.get("weights") != "last"
        }
        self._make_exporter = make_exporter
        self._exporter: Exporter | None = None
        self._keep_final = keep_final_weights
        self._load_final = load_final_weights

    @property
    def exporter(self) -> Exporter:
        if self._exporter is None:
            self._exporter = self._make_exporter()
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
                log.info(
                    f"export/{name}: removed v{', v'.join(map(str, removed))}, written after the checkpoint resumed from"
                )
            self.exporter.prune(name, policy.prune())

    def after_evaluation(self, evaluation: Evaluation) -> None:
        """Export where a policy says so; notes for the evaluation's log line."""
        info = {"step": evaluation.step, "eval": evaluation.number, "metrics": dict(evaluation.metrics)}
        for name, policy in self.policies.items():
            if policy.update(evaluation.metrics):
                path = self.exporter.write(name, policy.last_version, {**info, **self._monitors.get(name, {})})
                evaluation.notes.append(f"exported {name} v{policy.last_version}")
                log.debug(f"wrote {path}")
            if getattr(policy, "keep_current_weights", False):
                self._keep_final()
            deleted = self.exporter.prune(name, policy.prune())
            if deleted:
                evaluation.notes.append(f"deleted {name} v{', v'.join(map(str, deleted))}")

    def at_end(self, step: int) -> str | None:
        """The final export (its path), if a ``final`` policy is on and has not exported yet."""
        policy = self.policies.get("final")
        if policy is None or not policy.finish():
            return None
        if policy.weights == "best":
            self._load_final()
        info = {"step": step, "metrics": {}, "eval": policy.best_eval, **self._monitors.get("final", {})}
        return str(self.exporter.write("final", policy.last_version, info))

    def published(self) -> dict[str, str]:
        """``{policy: path of its current export}`` for the run's summary."""
        out = {}
        for name in self.policies:
            version = self.exporter.current(name)
            if version is not None:
                out[name] = str(self.exporter.policy_dir(name) / str(version))
        return out


def evaluated_steps(path: Path) -> set[int]:
    """The steps that have a row in the metrics file ``path``."""
    return {row["step"] for row in read_json_lines(path)}


def rewind_metrics(path: Path, step: int) -> None:
    """Cut the metrics file ``path`` back to the rows up to ``step``, the step the run resumes at.

    The rows after it (evaluations the resumed run will do again) and a last line torn
    mid-write go, with a message saying what was cut.
    """
    torn = torn_tail(path)
    rows = read_json_lines(path)
    kept = [row for row in rows if row["step"] <= step]
    if not torn and len(kept) == len(rows):
        return
    write_json_lines(path, kept)
    cut = [f"{len(rows) - len(kept)} evaluation(s) after step {step}"] if len(kept) < len(rows) else []
    cut += ["a last line cut off mid-write"] if torn else []
    log.warning(f"{path.name}: cut {' and '.join(cut)}; the resumed run does them again")


class MetricsLog:
    """The record of each evaluation: one log line, TensorBoard scalars, one row in ``path`` (metrics.jsonl).

    The log line reads ``eval N @ step S: <metrics> | <early stopping's verdict>[ | <export notes>]``;
    the row is ``{eval, step, <metrics>, best, wait, stop, seconds}`` with ``seconds`` since ``started``
    (a ``time.perf_counter()`` value). ``scalars(step, metrics)`` writes the TensorBoard summaries.
    """

    state_key = None

    def __init__(
        self,
        path: Path,
        early_stop: EarlyStop,
        scalars: Callable[[int, Mapping[str, float]], None],
        started: float,
    ):
        self.path = path
        self.early_stop = early_stop
        self.scalars = scalars
        self.started = started

    def after_evaluation(self, evaluation: Evaluation) -> None:
        metrics, early = evaluation.metrics, self.early_stop.policy
        values = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
        exported = f" | {'; '.join(evaluation.notes)}" if evaluation.notes else ""
        log.info(
            f"eval {evaluation.number} @ step {evaluation.step}: {values} | {self.early_stop.describe()}{exported}"
        )
        self.scalars(evaluation.step, metrics)
        row = {
            "eval": evaluation.number,
            "step": evaluation.step,
            **metrics,
            "best": early.best_value,
            "wait": early.wait,
            "stop": bool(evaluation.stop),
            "seconds": round(time.perf_counter() - self.started, 3),
        }
        append_json_line(self.path, row)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
