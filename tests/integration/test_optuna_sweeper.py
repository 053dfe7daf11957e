"""factory's Optuna sweeper for real: a pruning study on digits, killed mid-way and continued."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from factory.sweeps.study import journal_storage
from tests.helpers import TINY
from tests.unit.test_sweeps import BIN, clean_env, factory_train

# Eight short trials (four evaluations each) that the median pruner judges from the third trial
# on, at steps 30 and 40 (its warm-up leaves each trial's first two evaluations alone). The seed
# fixes the first trials' learning rates; val_loss (not accuracy) leaves no ties at chance level.
STUDY = (
    *TINY,
    "train.max_steps=40",
    "train.eval_every_steps=10",
    "data.test=null",
    "export.best.enabled=false",
    "early_stop.monitor=val_loss",
    "+hparams_search=digits_optuna",
    "train.optimizer.learning_rate=tag(log, interval(0.0001, 0.05))",
    "hydra.sweeper.n_trials=8",
    "hydra.sweeper.seed=3",
    "hydra.sweeper.pruner_n_startup_trials=2",
    "hydra.sweeper.pruner_n_warmup_steps=30",
)


def study_trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    if not journal.exists():
        return []
    return optuna.load_study(study_name="digits", storage=journal_storage(journal)).trials


def checkpointed(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("ckpt-*.index"))


def test_a_killed_pruning_study_continues_where_it_stopped(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = tmp_path / "sweep"
    journal = sweep / "optuna.journal"
    args = ["-m", *STUDY, f"hydra.sweep.dir={sweep}"]
    first = subprocess.Popen(
        [str(BIN / "factory-train"), *args],
        cwd=tmp_path,
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines, second = [], None
    try:
        for line in first.stdout:  # each evaluation prints a line: the study is looked at then
            lines.append(line)
            if second is None and line.startswith("eval 1 @ step 10"):
                # The first sweep runs its study: a second one on the same sweep dir is refused.
                second, _ = factory_train(*args, cwd=tmp_path)
            if not line.startswith("eval 2 @ step 20:"):  # a trial with its checkpoint at step 10, not pruned
                continue
            trials = study_trials(journal)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            told = [t for t in trials if t.state.is_finished()]
            if len(told) >= 3 and running and checkpointed(sweep / str(running[0].number)):
                first.kill()  # kill -9, mid-trial
                break
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    output = "".join(lines)
    assert first.returncode == -9, output
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"{journal} is in use by process {first.pid} (" in second.stderr
    assert "one sweep runs a study at a time" in second.stderr and "Traceback" not in second.stderr

    before = study_trials(journal)
    interrupted = [t.number for t in before if t.state == TrialState.RUNNING]
    assert len(interrupted) == 1, [(t.number, t.state) for t in before]
    k = interrupted[0]
    assert [t.number for t in before if t.state.is_finished()] == list(range(k))
    assert not (sweep / str(k) / "summary.json").exists()

    result, _ = factory_train(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"study 'digits' has {k + 1} of 8 trials (" in result.stdout
    assert f"1 interrupted: resumed); {7 - k} to start (tpe sampler, median pruner)" in result.stdout
    assert "resumed from step" in (sweep / str(k) / "train.log").read_text()

    after = study_trials(journal)
    assert [t.number for t in after] == list(range(8))
    assert [t.params for t in after[: k + 1]] == [t.params for t in before]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after), [t.state for t in after]
    assert any(t.state == TrialState.PRUNED for t in after)
    assert sorted(int(p.name) for p in sweep.iterdir() if p.is_dir()) == list(range(8))  # one dir per trial
    for trial in after:
        run = sweep / str(trial.number)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["pruned"] is (trial.state == TrialState.PRUNED), trial.number
        if trial.state == TrialState.COMPLETE:
            assert trial.value == summary["best_value"]
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        assert set(trial.user_attrs["overrides"]) <= set(overrides)
        steps = [json.loads(row)["step"] for row in (run / "metrics.jsonl").read_text().splitlines()]
        assert sorted(trial.intermediate_values) == steps, trial.number
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = min((t for t in after if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert (results["best_trial"], results["best_value"]) == (best.number, best.value)
