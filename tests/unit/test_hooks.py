"""The evaluation hooks without TensorFlow: early stopping, pruning, exports, the metrics record."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from factory.config import EarlyStopConfig
from factory.training.hooks import (
    EarlyStop,
    Evaluation,
    Exports,
    MetricsLog,
    Pruning,
    evaluated_steps,
    rewind_metrics,
)


def evaluations(values, metric="val_loss"):
    return [Evaluation(number=n, step=20 * n, metrics={metric: v}) for n, v in enumerate(values, 1)]


def run_early_stop(config, values, agree=lambda stop: stop):
    saved = []
    hook = EarlyStop(config, agree=agree, save_best_weights=lambda: saved.append(hook.policy.best_eval))
    stops = []
    for evaluation in evaluations(values):
        hook.after_evaluation(evaluation)
        stops.append(evaluation.stop)
    return hook, stops, saved


def test_early_stop_stops_at_patience_and_saves_each_new_best():
    hook, stops, saved = run_early_stop(EarlyStopConfig(patience=2), [0.5, 0.4, 0.45, 0.42])
    assert stops == [False, False, False, True] and hook.stopped
    assert saved == [1, 2]


def test_disabled_early_stop_never_stops_but_still_follows_the_monitor():
    hook, stops, saved = run_early_stop(
        EarlyStopConfig(enabled=False, patience=1, monitor="val_loss"), [0.5, 0.4, 0.45, 0.42, 0.3]
    )
    assert stops == [False] * 5 and not hook.stopped
    assert saved == [1, 2, 5] and hook.policy.best_value == 0.3
    assert hook.describe() == "val_loss 0.3 improved (best so far) (early stopping off)"
    assert hook.policy.stopped_eval is None  # wait went past the patience: nothing recorded


def test_early_stop_switched_on_at_a_resume_counts_from_the_state():
    """Off, the policy only follows the metric; switched on, it stops at the next evaluation
    without improvement once `wait` reaches the patience, never at once."""
    off, _, _ = run_early_stop(EarlyStopConfig(enabled=False, patience=1, monitor="val_loss"), [0.5, 0.4, 0.45, 0.42])
    assert off.describe() == "val_loss 0.42 (best 0.4 @ eval 2) no improvement 2 (early stopping off)"
    on = EarlyStop(
        EarlyStopConfig(patience=1, monitor="val_loss"), agree=lambda stop: stop, save_best_weights=lambda: None
    )
    on.load_state_dict(json.loads(json.dumps(off.state_dict())))
    assert not on.stopped
    improving, stalling = (
        Evaluation(number=5, step=100, metrics={"val_loss": 0.3}),
        Evaluation(number=6, step=120, metrics={"val_loss": 0.31}),
    )
    on.after_evaluation(improving)
    on.after_evaluation(stalling)
    assert (improving.stop, stalling.stop) == (False, True) and on.stopped


def test_the_workers_agree_on_stopping():
    asked = []

    def agree(stop):
        asked.append(stop)
        return True  # another worker said stop

    _, stops, _ = run_early_stop(EarlyStopConfig(patience=5), [0.5, 0.4], agree=agree)
    assert asked == [False, False] and stops == [True, True]


class Exporter:
    def __init__(self, root: Path):
        self.root, self.written, self.pruned, self.versions = root, [], [], {}

    def write(self, name, version, info):
        self.written.append((name, version, info))
        self.versions.setdefault(name, []).append(version)
        return self.root / name / str(version)

    def prune(self, name, versions):
        self.pruned += [(name, v) for v in versions]
        return list(versions)

    def remove_newer(self, name, next_version):
        return []

    def current(self, name):
        return self.versions.get(name, [None])[-1]

    def policy_dir(self, name):
        return self.root / name


class ExportSettings:
    def __init__(self, policies):
        self.policies = policies


def test_exports_follow_their_policies_and_note_it_for_the_log_line(tmp_path):
    exporter = Exporter(tmp_path)
    kept = []
    exports = Exports(
        ExportSettings(
            {"best": {"monitor": "val_loss", "mode": "auto", "min_delta": 0.0, "keep": 1}, "latest": {"keep": 1}}
        ),
        lambda: exporter,
        keep_final_weights=lambda: kept.append(True),
        load_final_weights=lambda: None,
    )
    notes = []
    for evaluation in evaluations([0.5, 0.6, 0.4]):
        exports.after_evaluation(evaluation)
        notes.append(evaluation.notes)
    assert notes == [
        ["exported best v1", "exported latest v1"],
        ["exported latest v2", "deleted latest v1"],
        ["exported best v2", "deleted best v1", "exported latest v3", "deleted latest v2"],
    ]
    name, version, info = exporter.written[0]
    assert (name, version) == ("best", 1)
    assert info == {"step": 20, "eval": 1, "metrics": {"val_loss": 0.5}, "monitor": "val_loss", "mode": "min"}
    assert exports.published() == {"best": str(tmp_path / "best" / "2"), "latest": str(tmp_path / "latest" / "3")}
    assert exports.at_end(60) is None and kept == []  # no final policy
    assert set(exports.state_dict()) == {"best", "latest"}


def test_the_metrics_record_is_a_log_line_scalars_and_a_row(tmp_path, caplog):
    scalars = []
    early = EarlyStop(EarlyStopConfig(patience=3), agree=lambda stop: stop, save_best_weights=lambda: None)
    record = MetricsLog(
        tmp_path / "metrics.jsonl", early, lambda step, metrics: scalars.append((step, dict(metrics))), started=0.0
    )
    with caplog.at_level(logging.INFO, logger="factory"):
        for evaluation in evaluations([0.5, 0.6]):
            early.after_evaluation(evaluation)
            evaluation.notes.append("exported best v1")
            record.after_evaluation(evaluation)
    assert (
        "eval 2 @ step 40: val_loss 0.6 | val_loss 0.6 (best 0.5 @ eval 1) no improvement 1/3 | exported best v1"
        in caplog.text
    )
    assert scalars == [(20, {"val_loss": 0.5}), (40, {"val_loss": 0.6})]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [list(r) for r in rows] == [["eval", "step", "val_loss", "best", "wait", "stop", "seconds"]] * 2
    assert [(r["eval"], r["best"], r["wait"], r["stop"]) for r in rows] == [(1, 0.5, 0, False), (2, 0.5, 1, False)]
    assert evaluated_steps(tmp_path / "metrics.jsonl") == {20, 40}
    rewind_metrics(tmp_path / "metrics.jsonl", 20)
    assert evaluated_steps(tmp_path / "metrics.jsonl") == {20}


def test_a_run_stopped_early_goes_on_when_resumed_with_early_stopping_off():
    on, stops, _ = run_early_stop(EarlyStopConfig(patience=1, monitor="val_loss"), [0.5, 0.6])
    assert stops == [False, True] and on.stopped
    off = EarlyStop(
        EarlyStopConfig(enabled=False, patience=1, monitor="val_loss"),
        agree=lambda stop: stop,
        save_best_weights=lambda: None,
    )
    off.load_state_dict(json.loads(json.dumps(on.state_dict())))
    assert not off.stopped
    evaluation = Evaluation(number=3, step=60, metrics={"val_loss": 0.7})
    off.after_evaluation(evaluation)
    assert not evaluation.stop


class Judge:
    """A study's pruner in miniature: prunes at the first report worse than ``limit``; keeps what it was told."""

    def __init__(self, limit: float):
        self.limit = limit
        self.reports: list[tuple[int, float]] = []

    def report(self, step: int, value: float) -> str | None:
        self.reports.append((step, value))
        return f"pruned: {value} at step {step} is worse than {self.limit}" if value > self.limit else None


def test_pruning_reports_every_evaluation_and_stops_the_run_with_the_reason_as_its_note():
    judge = Judge(limit=0.45)
    hook = Pruning(judge, "val_loss", agree=lambda stop: stop)
    stops, notes = [], []
    for evaluation in evaluations([0.5 - 0.1 * n for n in range(3)] + [0.6]):  # 0.5 is pruned at once
        hook.after_evaluation(evaluation)
        stops.append(evaluation.stop)
        notes.append(evaluation.notes)
        if evaluation.stop:
            break
    assert judge.reports == [(20, 0.5)] and stops == [True]
    assert notes == [["pruned: 0.5 at step 20 is worse than 0.45"]] and hook.pruned
    # The verdict goes into the checkpoint: a resumed run knows it was pruned.
    resumed = Pruning(Judge(limit=0.45), "val_loss", agree=lambda stop: stop)
    resumed.load_state_dict(hook.state_dict())
    assert resumed.pruned and resumed.reason == hook.reason
    assert Pruning(judge, "val_loss", agree=lambda stop: stop).state_dict() == {}


def test_pruning_goes_on_while_the_study_says_so_and_the_workers_decide_together():
    judge = Judge(limit=1.0)
    hook = Pruning(judge, "val_loss", agree=lambda stop: stop)
    for evaluation in evaluations([0.5, 0.4]):
        hook.after_evaluation(evaluation)
        assert not evaluation.stop and not evaluation.notes
    assert judge.reports == [(20, 0.5), (40, 0.4)] and not hook.pruned
    # Another worker's study said stop: this worker stops with it.
    other = Pruning(judge, "val_loss", agree=lambda stop: True)
    evaluation = evaluations([0.3])[0]
    other.after_evaluation(evaluation)
    assert evaluation.stop and other.reason == "pruned by the study (another worker's verdict)"
