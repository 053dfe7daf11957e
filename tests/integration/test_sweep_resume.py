"""A sweep killed and run again: finished trials skipped untouched, the interrupted one resumed exactly, the rest started."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import TINY
from tests.helpers.resume import VOLATILE
from tests.unit.test_sweeps import BIN, clean_env, factory_train

# Six trials of a few seconds each; trial 3 is the one the kill lands in.
HIDDEN = ["[8]", "[10]", "[12]", "[14]", "[16]", "[18]"]
ARGS = (
    *TINY,
    "train.max_steps=100",
    "train.eval_every_steps=20",
    "train.deterministic=true",
    "data.test=null",
    "export.best.enabled=false",
)
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"]}


def files_of(run_dir: Path) -> dict[str, tuple[float, str]]:
    """Every file under a run dir with its modification time and content hash."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_mtime, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def checkpointed(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("ckpt-*.index")) if (run_dir / "checkpoints").is_dir() else False


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[dict]:
    """Trial 3's config trained in one go, as a single run."""
    cwd = tmp_path_factory.mktemp("reference")
    result, _ = factory_train(*ARGS, f"network.hidden={HIDDEN[3]}", f"hydra.run.dir={cwd / 'run'}", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return metrics(cwd / "run")


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_killed_sweep_run_again_skips_finished_trials_resumes_the_interrupted_one_and_starts_the_rest(
    tmp_path, launcher, uninterrupted
):
    sweep = tmp_path / "sweep"
    command = [
        str(BIN / "factory-train"),
        "-m",
        *ARGS,
        f"network.hidden={','.join(HIDDEN)}",
        *LAUNCHERS[launcher],
        f"hydra.sweep.dir={sweep}",
    ]
    trials = [sweep / str(n) for n in range(6)]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if all((t / "summary.json").is_file() for t in trials[:3]) and checkpointed(trials[3]):
                break
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)  # the sweep and its trial, at once
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, err
    assert not (trials[3] / "summary.json").exists(), "the kill came after trial 3 had finished"
    assert not trials[4].exists()
    finished = {t.name: files_of(t) for t in trials[:3]}

    result, _ = factory_train(*command[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"sweep {sweep}: 3 finished trial(s) are skipped, 1 interrupted trial(s) resume" in result.stdout
    assert f"sweep {sweep}: 3 skipped (finished before), 1 resumed, 2 started" in result.stdout
    # The finished trials: not a file of them touched.
    assert {t.name: files_of(t) for t in trials[:3]} == finished
    # The interrupted trial resumed from its checkpoint and ended as an uninterrupted run of its config.
    log = (trials[3] / "train.log").read_text()
    assert "resumed from step" in log
    assert metrics(trials[3]) == uninterrupted
    assert all((t / "summary.json").is_file() for t in trials)

    # Once more: everything is finished, nothing is touched.
    everything = {t.name: files_of(t) for t in trials}
    result, _ = factory_train(*command[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"sweep {sweep}: 6 skipped (finished before), 0 resumed, 0 started" in result.stdout
    assert {t.name: files_of(t) for t in trials} == everything
