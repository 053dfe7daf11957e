"""A run killed with SIGKILL and started again ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import TINY

OVERRIDES = [
    *TINY,
    "train.max_steps=160",
    "train.deterministic=true",
    "seed=3",
    "early_stop.patience=100",
    "export.best.keep=2",
    "export.latest.enabled=true",
    "export.latest.keep=2",
]


def script(run_dir: Path, resume_input: str) -> str:
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from tests.helpers import compose
        from factory.training.runner import train
        train(compose(*{OVERRIDES!r}, "train.resume_input={resume_input}"), run_dir={str(run_dir)!r})
        """
    )


def run(run_dir: Path, kill_after_evals: int | None = None, resume_input: str = "replay") -> bool:
    """Run training in a child process; with ``kill_after_evals`` SIGKILL it after that many evaluations."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script(run_dir, resume_input)], env=os.environ.copy(), stdout=subprocess.DEVNULL
    )
    metrics = run_dir / "metrics.jsonl"
    killed = False
    try:
        while proc.poll() is None:
            if kill_after_evals and metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after_evals:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.02)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not killed:
        assert proc.returncode == 0
    return killed


def weights(run_dir: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "model" in k or "optimizer" in k}


# `replay` (the default) is covered for every shipped experiment by test_resume_matrix.py and under
# ten kills by test_fault_injection.py; here the input iterator is restored from the checkpoint instead.
@pytest.mark.parametrize("resume_input", ["iterator"])
def test_kill_9_and_resume_matches_an_uninterrupted_run(tmp_path, resume_input):
    run(tmp_path / "straight", resume_input=resume_input)
    killed = run(tmp_path / "resumed", kill_after_evals=3, resume_input=resume_input)
    assert killed and not (tmp_path / "resumed" / "summary.json").exists(), "the run finished before it was killed"
    run(tmp_path / "resumed", resume_input=resume_input)

    straight = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    resumed = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert len(straight) == 8

    def rows(lines):  # wall time differs, everything else must not
        return [{k: v for k, v in json.loads(r).items() if k != "seconds"} for r in lines]

    assert rows(resumed) == rows(straight)  # exact floats
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and len(a) > 4
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    sa = json.loads((tmp_path / "straight" / "summary.json").read_text())
    sb = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert sa["test"] == sb["test"] and sa["best_value"] == sb["best_value"]
    # The exports too: the same versions of the same evaluations; never a worse or a forgotten one.
    for policy in ("best", "latest"):
        exports = []
        for run_dir in (tmp_path / "straight", tmp_path / "resumed"):
            root = run_dir / "export" / policy
            manifests = sorted(
                (
                    json.loads((p / "assets.extra" / "manifest.json").read_text())
                    for p in root.iterdir()
                    if p.name.isdigit()
                ),
                key=lambda m: m["version"],
            )
            exports.append([(m["version"], m["eval"], m["metrics"]) for m in manifests])
            assert os.readlink(root / "current") == str(manifests[-1]["version"])
        assert exports[0] == exports[1], policy
