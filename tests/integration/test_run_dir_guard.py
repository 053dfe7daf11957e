"""Run dirs under faults, with real training through the real CLI: one owner, same experiment, finished is final."""

from __future__ import annotations

import os
import signal
import subprocess

import yaml

from tests.helpers import TINY
from tests.helpers.run_dirs import BIN, snapshot, start_factory_train, wait_for_line
from tests.unit.test_cli_train import factory_train


def test_a_busy_run_dir_refuses_a_second_process_and_a_killed_owner_leaves_no_lock(tmp_path):
    slow = [*TINY, "train.max_steps=100000", "hydra.run.dir=run"]
    owner = start_factory_train(*slow, cwd=tmp_path)
    try:
        wait_for_line(owner, "eval 2 @ step 40")  # so the checkpoint of step 20 is complete
        second = factory_train(*slow, cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"run is in use by process {owner.pid} (" in lines[0] and f"kill {owner.pid}" in lines[0]
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    # The lock went with the process. A changed learning rate is refused, unless the user says so.
    faster = [*TINY, "train.max_steps=40", "train.optimizer.learning_rate=0.01", "hydra.run.dir=run"]
    refused = factory_train(*faster, cwd=tmp_path)
    assert refused.returncode == 2 and "train.optimizer.learning_rate: 0.002 in config.yaml, 0.01 now" in refused.stderr
    after = factory_train(*faster, "train.resume_changes=[train.optimizer.learning_rate]", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "resumed from step" in after.stdout
    assert "train.optimizer.learning_rate: 0.01 from the config replaces the checkpoint's 0.002" in after.stdout
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["train"]["max_steps"] == 40 and config["train"]["optimizer"]["learning_rate"] == 0.01


def test_a_finished_run_changes_no_file_nor_does_a_refused_or_failed_resume(tmp_path):
    run = tmp_path / "run"
    first = factory_train(*TINY, "train.max_steps=20", "hydra.run.dir=run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (run / ".hydra" / "overrides.yaml").exists() and (run / "summary.json").exists()
    before = snapshot(run)

    again = factory_train(*TINY, "train.max_steps=20", "hydra.run.dir=run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already finished at step 20; nothing to train (summary: run/summary.json)")
    assert len(again.stdout.strip().splitlines()) == 1
    other = factory_train(*TINY, "train.max_steps=40", "train.batch_size=16", "hydra.run.dir=run", cwd=tmp_path)
    assert other.returncode == 2 and "train.batch_size: 32 in config.yaml, 16 now" in other.stderr
    assert snapshot(run) == before

    # A resume that fails before its first checkpoint leaves config.yaml as it was.
    (tmp_path / "bad.tfrecord").write_bytes(b"not a record at all" * 10)
    bad = factory_train(
        *TINY, "train.max_steps=40", "data.train=bad.tfrecord", "train.resume_changes=[data.train]", "hydra.run.dir=run",
        cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode != 0
    assert snapshot(run)["config.yaml"] == before["config.yaml"]


def test_a_finished_sweep_trial_changes_no_file(tmp_path):
    sweep = ["-m", *TINY, "train.max_steps=20", "network.hidden=[16]", "hydra.sweep.dir=sweep"]
    first = factory_train(*sweep, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    trial = tmp_path / "sweep" / "0"
    assert "network.hidden=[16]" in yaml.safe_load((trial / ".hydra" / "overrides.yaml").read_text())
    before = snapshot(trial)
    again = factory_train(*sweep, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{trial}: already finished at step 20; nothing to train" in again.stdout
    assert snapshot(trial) == before
    table = subprocess.run(
        [str(BIN / "factory"), "summarize", "sweep", "--no-csv"], cwd=tmp_path, capture_output=True, text=True
    )
    assert table.returncode == 0 and "network.hidden=[16]" in table.stdout
