"""Sweeps on SLURM through Hydra's submitit launcher, tried on one machine with ``hydra/launcher=submitit_local``.

``submitit_local`` runs each trial as a job of its own (a controller process and its task, as
``srun`` would start it) and handles signals in the task as on SLURM. One sweep of two trials of
the same config serves every test here: trial 0 is preempted the way SLURM and submitit do it
(SIGUSR2 to the task, sent once its first checkpoint exists), trial 1 runs straight through and is
the reference. The preempted trial saves a checkpoint, submitit requeues its job in place, and the
requeued job resumes from that checkpoint. Then the same command runs again over the finished sweep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import factory.cli.train  # noqa: F401  (registers the train, early_stop and export defaults with Hydra)
from factory.run_dir import CHECKPOINTS, LOCK, METRICS, SUMMARY, TRAIN_LOG
from factory.validation import resource_dir
from tests.helpers import TINY
from tests.helpers.run_dirs import BIN, snapshot

TRIALS = ("0", "1")
ARGS = (
    *TINY,
    "train.max_steps=300",
    "train.eval_every_steps=50",
    "train.deterministic=true",
    "early_stop.patience=100",
    "data.test=null",
    "export.best.enabled=false",
    "seed=3,3",  # two trials of one config: the preempted one must end exactly as the other
    "hydra/launcher=submitit_local",
)
DEADLINE_S = 300


def factory_train(sweep: Path, preempt: bool) -> subprocess.CompletedProcess:
    """``factory-train -m ARGS`` into ``sweep``; with ``preempt``, trial 0 is preempted after its first checkpoint."""
    process = subprocess.Popen(
        [str(BIN / "factory-train"), "-m", *ARGS, f"hydra.sweep.dir={sweep}"],
        cwd=sweep.parent,
        env={k: v for k, v in os.environ.items() if not k.startswith("TF_")},  # factory-train sets its own
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the submitit jobs join its process group: one group to clean up
    )
    try:
        if preempt:
            preempt_after_first_checkpoint(process, sweep / TRIALS[0])
        out, err = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def preempt_after_first_checkpoint(process: subprocess.Popen, trial: Path) -> None:
    """SIGUSR2, as SLURM sends it through submitit, to the process training ``trial`` (its run dir's lock holder)."""
    deadline = time.monotonic() + DEADLINE_S
    while not list((trial / CHECKPOINTS).glob("ckpt-*.index")):
        assert process.poll() is None and time.monotonic() < deadline, "the trial wrote no checkpoint to preempt"
        time.sleep(0.02)
    os.kill(int((trial / LOCK).read_text().split()[0]), signal.SIGUSR2)


def step_after(text: str, marker: str) -> int:
    assert marker in text, text
    return int(text.split(marker, 1)[1].split()[0].rstrip(":"))


def evaluations(trial: Path) -> list[dict]:
    """The trial's evaluations, without their wall times."""
    rows = [json.loads(line) for line in (trial / METRICS).read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def job_outputs(sweep: Path) -> dict[str, list[str]]:
    """Each trial's jobs' console output (the trial's lines and submitit's), from ``SWEEP_DIR/.submitit/JOB_ID/``."""
    jobs: dict[str, list[str]] = {}
    for out in (sweep / ".submitit").glob("*/*_0_log.out"):
        text = out.read_text()
        mentioned = set(re.findall(re.escape(str(sweep)) + r"/(\d+)\b", text))
        assert len(mentioned) == 1, (out, mentioned)
        jobs.setdefault(mentioned.pop(), []).append(text)
    return jobs


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """``(sweep dir, the preempted sweep's outcome, the finished trials' files, the rerun's outcome)``."""
    sweep = tmp_path_factory.mktemp("submitit") / "sweep"
    first = factory_train(sweep, preempt=True)
    finished = {t: snapshot(sweep / t) for t in TRIALS}
    return sweep, first, finished, factory_train(sweep, preempt=False)


def test_each_trial_is_a_submitit_job_logged_inside_the_sweep_dir(sweep):
    sweep, first, _, _ = sweep
    assert first.returncode == 0, first.stderr
    assert "Submitit 'local' sweep output dir" in first.stdout
    assert all((sweep / t / SUMMARY).is_file() for t in TRIALS)
    assert sorted(p.name for p in sweep.parent.iterdir()) == ["sweep"]  # nothing beside the sweep dir
    jobs = job_outputs(sweep)
    assert {t: len(outputs) for t, outputs in jobs.items()} == {"0": 2, "1": 2}  # the sweep's job and the rerun's
    assert all("Job completed successfully" in out for outputs in jobs.values() for out in outputs)


def test_a_preempted_trial_saves_a_checkpoint_is_requeued_and_ends_as_if_never_stopped(sweep):
    sweep, first, finished, _ = sweep
    assert first.returncode == 0, first.stderr
    log = finished["0"][TRAIN_LOG][0].decode()
    step = step_after(log, "interrupted at step ")
    assert "SIGUSR2: saving a checkpoint after the current steps" in log
    assert step_after(log, "resumed from step ") == step
    assert 50 <= step < 300 and "done: reached train.max_steps at step 300" in log
    # The checkpoint came first; then submitit's own handler ran and requeued the job in place.
    out = next(out for out in job_outputs(sweep)["0"] if "interrupted at step" in out)
    assert out.index("interrupted at step") < out.index("Caught signal SIGUSR2") < out.index("Requeued job")
    assert "interrupted" not in finished["1"][TRAIN_LOG][0].decode()
    assert evaluations(sweep / "0") == evaluations(sweep / "1")  # exact floats
    assert len(evaluations(sweep / "1")) == 6
    best = [json.loads(finished[t][SUMMARY][0])["best_value"] for t in TRIALS]
    assert best[0] == best[1]


def test_the_same_command_again_trains_nothing_and_leaves_the_finished_trials_as_they_were(sweep):
    sweep, _, finished, rerun = sweep
    assert rerun.returncode == 0, rerun.stderr
    jobs = job_outputs(sweep)
    for trial, before in finished.items():
        now = snapshot(sweep / trial)
        assert now == before  # train.log too: submitit's own lines go to its .submitit/ logs
        assert any(f"{sweep / trial}: already finished at step 300" in out for out in jobs[trial])


def test_the_slurm_launcher_config_is_submitit_slurm_with_factorys_defaults():
    with initialize_config_dir(config_dir=str(resource_dir("conf")), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.max_num_timeout, launcher.signal_delay_s) == ("gpu", 3, 120)
