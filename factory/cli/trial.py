"""One trial of a sweep in a process of its own: ``python -m factory.cli.trial < trial.json``.

Launchers that reuse their worker processes (joblib's loky workers run one
trial after another) would keep TensorFlow, its graphs and its memory alive
from one trial to the next. ``factory-train`` therefore hands each such trial
to a fresh interpreter: the worker stays free of TensorFlow, and the memory of
a trial is released when it ends. The input (on stdin) is JSON with the
resolved ``config``, the ``run_dir`` and the ``logging`` dict config of the
Hydra job, so the trial logs to the same console and ``train.log``.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def run_in_child(
    config: Mapping[str, Any], run_dir: str, logging_config: Mapping[str, Any] | None, parallel: int = 1,
) -> float:
    """Train ``config`` in a new Python process; the best monitored value, or exit as the trial did.

    With ``parallel`` trials at a time, each trial's TensorFlow gets its share of the CPU cores
    for its op thread pool (unless ``TF_NUM_INTRAOP_THREADS`` is set) rather than all of them each.
    """
    payload = json.dumps({"config": dict(config), "run_dir": run_dir, "logging": logging_config})
    env = dict(os.environ)
    if parallel > 1:
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    for handler in logging.getLogger().handlers:  # keep the order of the lines in train.log
        handler.flush()
    process = subprocess.run([sys.executable, "-m", "factory.cli.trial"], input=payload, text=True, check=False, env=env)
    if process.returncode:
        raise SystemExit(process.returncode)
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    best = summary.get("best_value")
    return float("nan") if best is None else float(best)


def main() -> int:
    from factory.config import load_config
    from factory.errors import FactoryError
    from factory.runner import train

    payload = json.load(sys.stdin)
    if payload.get("logging"):
        logging.config.dictConfig(payload["logging"])
    try:
        train(load_config(payload["config"]), run_dir=payload["run_dir"])
    except FactoryError as err:
        logging.getLogger("factory").error(f"error: {err}")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
