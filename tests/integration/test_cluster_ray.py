"""``factory-train cluster=ray``: two Ray workers train what two workers started by hand with
``TF_CONFIG`` train, bit for bit; a worker killed with ``kill -9`` fails the job cleanly, and the
same command run again resumes from the checkpoints and finishes. Each command starts its own
Ray instance (``cluster.address`` null) and stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")  # the `ray` extra

from factory.run_dir import LOCK, STATISTICS
from tests.helpers.run_dirs import BIN
from tests.integration.test_multi_worker import OVERRIDES, rows, run_cluster, weights

STEPS = 40  # two evaluations, a checkpoint at each


def ray_command(run_dir: Path) -> list[str]:
    return [
        str(BIN / "factory-train"),
        "cluster=ray",
        "cluster.workers=2",
        *OVERRIDES,
        f"train.max_steps={STEPS}",
        f"hydra.run.dir={run_dir}",
    ]


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory) -> Path:
    """The run two processes train with TF_CONFIG set by hand (as tests/integration/test_multi_worker.py does)."""
    run = tmp_path_factory.mktemp("tf_config") / "run"
    run_cluster(run, STEPS)
    return run


def wait_for(files: list[Path], proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until every file exists; fails when ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while not all(f.exists() for f in files):
        assert proc.poll() is None, f"factory-train ended (status {proc.returncode}) before {files} existed"
        assert time.monotonic() < deadline, f"{files} not written within {timeout} s"
        time.sleep(0.05)


def assert_same_run(run: Path, reference: Path) -> None:
    """The same evaluations and the same weights and optimizer slots, in the chief's dir and worker 1's."""
    for sub in (".", "worker-1"):
        assert rows(run / sub) == rows(reference / sub), sub
        mine, theirs = weights(run / sub / "checkpoints"), weights(reference / sub / "checkpoints")
        assert mine.keys() == theirs.keys() and len(mine) > 4
        for key in theirs:
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"{sub}: {key}")


def test_a_killed_worker_fails_the_job_and_the_same_command_resumes_to_the_tf_config_result(tmp_path, by_hand):
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}  # the command sets its own
    proc = subprocess.Popen(
        ray_command(run), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # Both workers checkpointed step 20 (the first evaluation); the next save is 20 steps away.
    wait_for([run / "checkpoints" / "ckpt-20.index", run / "worker-1" / "checkpoints" / "ckpt-20.index"], proc)
    pid, command = (run / "worker-1" / LOCK).read_text().splitlines()[:2]  # the worker's own lock: its pid
    assert "RayTrainWorker" in command
    os.kill(int(pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)

    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: cluster=ray: worker 1 of 2 (pid {pid}) died during training (killed, out of memory, or its "
        "machine was lost); the checkpoints are kept: run the same command to resume"
    ]
    assert "eval 1 @ step 20" in out  # the chief's log, relayed to the console
    assert rows(run) == rows(by_hand)[:1]
    # The statistics pass ran once, as Ray tasks before the workers started; the workers took its result.
    assert out.count("computed statistics from") == 1 and "reusing the statistics" in out
    for sub in ("", "worker-1"):
        assert json.loads((run / sub / STATISTICS).read_text()) == json.loads((by_hand / sub / STATISTICS).read_text())
    assert not (run / ".ray").exists()

    again = subprocess.run(ray_command(run), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from step 20" in again.stdout and "eval 2 @ step 40" in again.stdout
    assert_same_run(run, by_hand)
    assert "eval 2 @ step 40" in (run / "train.log").read_text()
    assert not (run / ".ray").exists()
