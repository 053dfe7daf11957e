"""Sweeps: joblib and Optuna multiruns of factory-train, and `factory summarize` over their trials."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

from factory.sweeps.study import journal_storage
from tests.helpers import TINY
from tests.unit.test_sweeps import BIN, clean_env, factory_train, summarize

# Each trial a few seconds: 20 steps, one evaluation, no test pass, no export.
QUICK = (*TINY, "train.max_steps=20", "data.test=null", "export.best.enabled=false")


def trial_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def writer_pid(run_dir: Path) -> int:
    """The pid of the process that trained a run: TensorBoard puts it in its event file names."""
    event = next((run_dir / "tensorboard" / "train").glob("events.out.tfevents.*"))
    return int(event.name.rsplit(".", 3)[1])  # events.out.tfevents.<time>.<host>.<pid>.<n>.v2


# -- real sweeps ---------------------------------------------------------------------------------


def test_joblib_multirun_trains_each_trial_in_a_fresh_process_and_summarize_ranks_them(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    result, pid = factory_train(
        "-m",
        *QUICK,
        "export.best.enabled=true",
        "network.hidden=[8],[16],[32]",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stdout
    dirs = trial_dirs(sweep)
    assert [d.name for d in dirs] == ["0", "1", "2"]
    assert all((d / "summary.json").is_file() for d in dirs)
    # Three trials on two reused joblib workers: each trial still trained in a process of its own.
    pids = [writer_pid(d) for d in dirs]
    assert len(set(pids)) == 3 and pid not in pids
    assert all("eval 1 @ step 20" in (d / "train.log").read_text() for d in dirs)  # the trial's log is in its run dir

    code, out, _ = summarize(str(sweep), capsys=capsys)
    assert code == 0
    summaries = {d.name: json.loads((d / "summary.json").read_text()) for d in dirs}
    best_first = sorted(summaries, key=lambda n: -summaries[n]["best_value"])  # val_accuracy: higher is better
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert "best val_accuracy (max)" in lines[header]
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert [r[1] for r in rows] == best_first
    assert {r[3] for r in rows} == {"network.hidden=[8]", "network.hidden=[16]", "network.hidden=[32]"}
    for row in rows:  # the export column names the best export, relative to the working directory or absolute
        assert Path(row[-1]).resolve() == Path(summaries[row[1]]["exports"]["best"]).resolve()
    with open(sweep / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["trial"] for r in table] == best_first
    assert [float(r["best_value"]) for r in table] == [summaries[n]["best_value"] for n in best_first]
    assert [r["export_best"] for r in table] == [summaries[n]["exports"]["best"] for n in best_first]


def test_ctrl_c_during_a_joblib_sweep_leaves_every_trial_with_its_checkpoint(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        *TINY,
        "train.max_steps=100000",
        "train.eval_every_steps=50",
        "data.test=null",
        "network.hidden=[8],[16]",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    logs = [sweep / str(n) / "train.log" for n in range(2)]
    process = subprocess.Popen(
        [str(BIN / "factory-train"), "-m", *args],
        cwd=tmp_path,
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a terminal's
    )
    try:
        deadline = time.time() + 300
        while not all(p.exists() and "eval 1 @" in p.read_text() for p in logs) and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    # joblib kills its workers at once; the trials, detached from them, still save.
    deadline = time.time() + 120
    while not all("interrupted at step" in p.read_text() for p in logs) and time.time() < deadline:
        time.sleep(0.05)
    for log in logs:
        step = int(log.read_text().split("interrupted at step ")[1].split(":")[0])
        checkpoints = log.parent / "checkpoints"
        assert (checkpoints / f"ckpt-{step}.index").is_file(), sorted(p.name for p in checkpoints.iterdir())
        assert not list(checkpoints.glob("*_temp*"))


def test_optuna_sweep_minimises_val_loss_runs_a_batch_in_parallel_and_summarize_reads_its_trials(tmp_path, capsys):
    sweep = tmp_path / "optuna"
    result, pid = factory_train(
        "-m",
        *QUICK,
        "train.eval_every_steps=10",
        "early_stop.monitor=val_loss",
        "+hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"sweep {sweep}: study 'digits' has 0 of 2 trials; 2 to start (tpe sampler, median pruner)" in result.stdout
    assert "is launching 2 jobs" in result.stdout  # one batch, two trials at once
    assert "alembic" not in result.stdout
    dirs = trial_dirs(sweep)
    assert [d.name for d in dirs] == ["0", "1"]
    pids = [writer_pid(d) for d in dirs]
    assert len(set(pids)) == 2 and pid not in pids  # each trial trained in a process of its own
    summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
    values = [s["best_value"] for s in summaries]
    sampled = [yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) for d in dirs]
    assert all(any(o.startswith("train.optimizer.learning_rate=") for o in s) for s in sampled)
    assert sampled[0] != sampled[1]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="digits", storage=journal_storage(sweep / "optuna.journal"))
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # from early_stop.mode=auto on val_loss
    assert [(t.number, t.state, t.value) for t in study.trials] == [
        (n, optuna.trial.TrialState.COMPLETE, v) for n, v in enumerate(values)
    ]
    for trial, directory, overrides in zip(study.trials, dirs, sampled, strict=True):
        # Each trial reported every evaluation to the study from its own process: what a pruner judges.
        rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
        assert trial.intermediate_values == {r["step"]: r["val_loss"] for r in rows}
        assert sorted(trial.intermediate_values) == [10, 20]
        assert set(trial.user_attrs["overrides"]) <= set(overrides)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(min(values))  # the sweeper optimised what train() returned

    code, out, _ = summarize(str(sweep), "--csv", str(tmp_path / "trials.csv"), capsys=capsys)
    assert code == 0
    assert "best val_loss (min)" in out
    with open(tmp_path / "trials.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["best_value"]) for r in table] == sorted(values)
    assert not (sweep / "summary.csv").exists()


# -- the command-line check and the Optuna direction, before any training ------------------------


# -- reading sweep directories -------------------------------------------------------------------
