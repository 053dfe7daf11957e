"""One trial of a sweep in a process of its own: ``python -m factory.sweeps.trial_process LIFELINE DONE < trial.json``.

Launchers that reuse their worker processes (joblib's loky workers run one
trial after another) would keep TensorFlow, its graphs and its memory alive
from one trial to the next. ``factory-train`` therefore hands each such trial
to a fresh interpreter: the worker stays free of TensorFlow, and the memory of
a trial is released when it ends. The input (on stdin) is JSON with the
resolved ``config``, the ``run_dir``, the ``logging`` dict config of the
Hydra job, so the trial logs to the same console and ``train.log``, and the
``report`` spec of a trial that reports to its study (``factory.sweeps.study``).

The trial detaches from the worker's process tree (a double fork): when a
sweep is interrupted, joblib kills its workers and everything below them with
SIGKILL, which would cut a trial's last checkpoint short. Detached, the trial
gets the Ctrl-C itself (it stays in the terminal's process group) and saves
its checkpoint; and should its worker die first, the trial sees its lifeline
pipe close and stops the same orderly way. Its exit status comes back to the
worker through the DONE pipe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.config import load_config
from factory.errors import FactoryError
from factory.run_dir import SUMMARY, read_json
from factory.sweeps.study import TrialReporter
from factory.training.runner import train


def run_in_child(
    config: Mapping[str, Any],
    run_dir: str,
    logging_config: Mapping[str, Any] | None,
    parallel: int = 1,
    report: Mapping[str, Any] | None = None,
) -> float:
    """Train ``config`` in a new Python process; the best monitored value, or exit as the trial did.

    With ``parallel`` trials at a time, each trial's TensorFlow gets its share of the CPU cores
    for its op thread pool (unless ``TF_NUM_INTRAOP_THREADS`` is set) rather than all of them each.
    ``report``: the trial's ``factory.sweeps.study.trial_report_spec``, when it reports to a study.
    """
    payload = json.dumps({"config": dict(config), "run_dir": run_dir, "logging": logging_config, "report": report})
    env = dict(os.environ)
    if parallel > 1:
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    for handler in logging.getLogger().handlers:  # keep the order of the lines in train.log
        handler.flush()
    lifeline_r, lifeline_w = os.pipe()  # closes when this process ends, however it ends
    done_r, done_w = os.pipe()  # the trial writes its exit status, then closes it by ending
    try:
        subprocess.run(
            [sys.executable, "-m", "factory.sweeps.trial_process", str(lifeline_r), str(done_w)],
            input=payload,
            text=True,
            check=True,
            env=env,
            pass_fds=(lifeline_r, done_w),
        )
    finally:
        os.close(lifeline_r)
        os.close(done_w)
    with os.fdopen(done_r) as done:
        status = done.read().strip()  # until the trial has ended
    os.close(lifeline_w)
    code = int(status) if status.lstrip("-").isdigit() else 1  # nothing: it was killed
    if code:
        raise SystemExit(code)
    summary = read_json(Path(run_dir) / SUMMARY)
    best = summary.get("best_value")
    return float("nan") if best is None else float(best)


def _watch(lifeline: int) -> None:
    """SIGTERM to this process (an orderly stop: save, then exit) once the lifeline closes."""
    while os.read(lifeline, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _train(payload: dict) -> int:
    if payload.get("logging"):
        logging.config.dictConfig(payload["logging"])
    try:
        report = payload.get("report")
        train(
            load_config(payload["config"]),
            run_dir=payload["run_dir"],
            reporter=TrialReporter(report) if report else None,
        )
    except FactoryError as err:
        logging.getLogger("factory").error(f"error: {err}")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str]) -> int:
    lifeline, done = (int(fd) for fd in argv)
    payload = json.load(sys.stdin)
    if os.fork():  # the first child ends here; the trial goes on outside the worker's process tree
        os._exit(0)
    threading.Thread(target=_watch, args=(lifeline,), daemon=True).start()
    code = 1
    try:
        code = _train(payload)
    finally:
        with contextlib.suppress(BrokenPipeError):  # the worker is gone (an interrupted sweep)
            os.write(done, f"{code}\n".encode())
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
