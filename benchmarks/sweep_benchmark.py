"""Sweep wall time: the same 4 trials with Hydra's basic launcher and with joblib.

Both run ``factory-train -m`` on the digits records (written once into a
temporary cache first, so neither pays for it), each trial a full run: data,
TensorFlow start-up, training, evaluations, exports. The basic launcher runs
the trials one after another in one process; joblib runs ``--jobs`` at a time,
each trial in a fresh process (so its TensorFlow memory is released), which
costs one TensorFlow import per trial. Rounds alternate the launchers and the
median of ``--repeats`` is kept.

    python benchmarks/sweep_benchmark.py [--steps 300] [--network mlp] [--jobs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEPS = {  # four trials each
    "mlp": ["network=mlp", "network.hidden=[8],[16],[32],[16,16]"],
    "cnn": ["train.optimizer.learning_rate=0.001,0.002,0.003,0.005"],
}


def sweep(launcher: str, args, work: Path, env: dict) -> float:
    out = work / f"sweep-{launcher}"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        str(Path(sys.executable).parent / "factory-train"),
        "-m",
        *SWEEPS[args.network],
        f"train.max_steps={args.steps}",
        "train.progress=none",
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={out}",
    ]
    if launcher == "joblib":
        command.append(f"hydra.launcher.n_jobs={args.jobs}")
    start = time.perf_counter()
    subprocess.run(command, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per trial (default: 300)")
    parser.add_argument("--network", choices=sorted(SWEEPS), default="mlp")
    parser.add_argument("--jobs", type=int, default=2, help="joblib's n_jobs (default: 2)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="factory-sweep-bench-"))
    env = {**os.environ, "FACTORY_CACHE": str(work / "cache")}
    try:
        sweep("basic", argparse.Namespace(**{**vars(args), "steps": 1}), work, env)  # writes the records
        times: dict[str, list[float]] = {"basic": [], "joblib": []}
        for _ in range(args.repeats):
            for launcher in times:
                times[launcher].append(sweep(launcher, args, work, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    basic, joblib = (statistics.median(times[k]) for k in ("basic", "joblib"))
    print(f"4 trials, {args.network}, {args.steps} steps each; median of {args.repeats}")
    print(f"basic launcher        {basic:6.1f} s")
    print(f"joblib n_jobs={args.jobs}       {joblib:6.1f} s   ({basic / joblib:.2f}x the basic launcher's speed)")


if __name__ == "__main__":
    main()
