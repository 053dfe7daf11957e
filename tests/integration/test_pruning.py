"""A trial its sweep's pruner stops: training ends as an early stop does, marked pruned, and stays so."""

from __future__ import annotations

import json
import logging

from factory.training.runner import train
from tests.helpers import TINY, compose
from tests.unit.test_hooks import Judge


def test_a_pruned_run_stops_at_the_verdict_keeps_its_checkpoint_and_stays_finished(tmp_path, caplog):
    run = tmp_path / "run"
    config = compose(*TINY, "train.max_steps=100", "export.best.enabled=false", "data.test=null")
    judge = Judge(limit=-1.0)  # val_accuracy is never below -1: pruned at the first evaluation after warm-up
    calls = []

    class AfterFirst:
        def report(self, step: int, value: float) -> str | None:
            calls.append((step, value))
            return judge.report(step, value) if len(calls) > 1 else None

    with caplog.at_level(logging.INFO, logger="factory"):
        best = train(config, run_dir=run, reporter=AfterFirst())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in calls] == [20, 40] == [r["step"] for r in rows]
    assert [value for _, value in calls] == [r["val_accuracy"] for r in rows]
    assert rows[-1]["stop"] is True
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pruned"] is True and summary["stopped_early"] is False and summary["steps"] == 40
    assert best == summary["best_value"] == max(r["val_accuracy"] for r in rows)
    assert (run / "checkpoints" / "ckpt-40.index").is_file()
    line = next(r.message for r in caplog.records if r.message.startswith("eval 2 @ step 40"))
    assert line.endswith(f"pruned: {calls[1][1]} at step 40 is worse than -1.0")
    assert any(r.message.startswith("done: pruned at step 40") for r in caplog.records)

    # Run again (also with more steps): finished, nothing reported, nothing written.
    before = {p: p.stat().st_mtime for p in run.rglob("*") if p.is_file()}
    again = train({**config, "train": {**config["train"], "max_steps": 200}}, run_dir=run, reporter=AfterFirst())
    assert again == best and len(calls) == 2
    assert {p: p.stat().st_mtime for p in run.rglob("*") if p.is_file()} == before
