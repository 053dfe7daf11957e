"""``train.strategy: multi_worker_mirrored`` with two real worker processes (TF_CONFIG, localhost)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import tensorflow as tf

from tests.helpers import TINY

OVERRIDES = [
    *TINY,
    "train.strategy=multi_worker_mirrored",
    "train.deterministic=true",
    "seed=5",
    "early_stop.patience=100",
    "data.test=null",
]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_cluster(run_dir: Path, max_steps: int) -> None:
    """Two workers train ``run_dir`` together, as two processes would on two machines."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from tests.helpers import compose
        from factory.training.runner import train
        train(compose(*{OVERRIDES!r}, "train.max_steps={max_steps}"), run_dir={str(run_dir)!r})
        """
    )
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
        )
    try:
        errors = [p.communicate(timeout=300)[1] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, err in zip(processes, errors, strict=True):
        assert p.returncode == 0, err[-3000:]


def weights(checkpoints: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(checkpoints))
    return {
        k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith(("model/", "optimizer/"))
    }


def rows(run_dir: Path) -> list[dict]:  # wall time differs, everything else must not
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_two_workers_train_one_model_and_resume_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_cluster(straight, 40)
    # The chief writes the run dir; the other worker its own subdirectory, with the same weights.
    assert (straight / "summary.json").is_file() and (straight / "export" / "best" / "current").exists()
    assert (straight / "worker-1" / "checkpoints").is_dir() and not (straight / "worker-0").exists()
    chief, other = weights(straight / "checkpoints"), weights(straight / "worker-1" / "checkpoints")
    assert chief.keys() == other.keys() and len(chief) > 4
    for key in chief:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    assert rows(straight) == rows(straight / "worker-1")
    assert [r["step"] for r in rows(straight)] == [20, 40]

    # Stopped after 20 steps and started again: the same evaluations and weights as straight through.
    run_cluster(resumed, 20)
    run_cluster(resumed, 40)
    assert rows(resumed) == rows(straight)
    again = weights(resumed / "checkpoints")
    for key in chief:
        np.testing.assert_array_equal(again[key], chief[key], err_msg=key)
