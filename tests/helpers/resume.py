"""Helpers for the resume tests: training in a child process that can be killed, and what a run left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tests.helpers import REPO

# A run's metrics rows without the wall time, which differs from run to run.
VOLATILE = ("seconds",)


def training_script(run_dir: Path, overrides: Sequence[str]) -> str:
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.helpers import compose
        from factory.training.runner import train
        train(compose(*{list(overrides)!r}), run_dir={str(run_dir)!r})
        """
    )


class Trained(NamedTuple):
    killed: bool
    stderr: str


def train_in_child(
    run_dir: Path,
    overrides: Sequence[str],
    kill_when: Callable[[], bool] | None = None,
    env: dict[str, str] | None = None,
) -> Trained:
    """Train in a child process; SIGKILL it as soon as ``kill_when()`` is true.

    Without ``kill_when`` (or when the run ends first) the run must end with status 0.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", training_script(run_dir, overrides)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = False
    try:
        while proc.poll() is None:
            if kill_when is not None and kill_when():
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not killed:
        assert proc.returncode == 0, err[-3000:]
    return Trained(killed, err)


def metric_rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in lines]


def evaluations(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def checkpoint_tensors(run_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the newest checkpoint but the run's JSON state: weights, optimizer slots, random state."""
    import tensorflow as tf  # defers TensorFlow

    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    names = [k for k in reader.get_variable_to_shape_map() if k.startswith(("model/", "optimizer/", "rng/", "step"))]
    return {k: reader.get_tensor(k) for k in names}


def assert_same_run(straight: Path, resumed: Path) -> None:
    """The resumed run's evaluations, test metrics and final checkpoint equal the uninterrupted run's, bit for bit."""
    assert metric_rows(resumed) == metric_rows(straight)
    a, b = checkpoint_tensors(straight), checkpoint_tensors(resumed)
    assert a.keys() == b.keys() and len(a) > 4
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((resumed / "summary.json").read_text())
    assert sa.get("test") == sb.get("test") and sa["best_value"] == sb["best_value"]
    assert sa["steps"] == sb["steps"] and sa["evaluations"] == sb["evaluations"]
