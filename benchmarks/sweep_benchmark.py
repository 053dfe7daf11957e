"""Sweep wall time: an Optuna study with and without pruning, or Hydra's basic launcher against joblib.

``pruning`` (the default) runs the same 12-trial Optuna study of the digits ``network=mlp``
twice, ``+hparams_search=digits_optuna`` with the same seed: once with the median pruner,
once with ``hydra.sweeper.pruner=none``; it prints each one's wall time, how many trials
completed and were pruned, and the best value each reached (``val_accuracy``, higher is
better). Pruning saves the steps of the trials it stops; the best value says what that cost.

``launchers`` runs the same 4 trials with Hydra's basic launcher and with joblib: the basic
launcher runs them one after another in one process; joblib runs ``--jobs`` at a time, each
trial in a fresh process (so its TensorFlow memory is released), which costs one TensorFlow
import per trial. Rounds alternate the launchers and the median of ``--repeats`` is kept.

Both write the digits records once into a temporary cache first, so no sweep pays for it;
each trial is a full run: data, TensorFlow start-up, training, evaluations.

    python benchmarks/sweep_benchmark.py [pruning] [--trials 12] [--steps 300] [--eval-every 30] [--plot PNG]
    python benchmarks/sweep_benchmark.py launchers [--steps 300] [--network mlp] [--jobs 2] [--repeats 3]
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

import yaml

from factory.sweeps.study import journal_storage

LAUNCHER_SWEEPS = {  # four trials each
    "mlp": ["network=mlp", "network.hidden=[8],[16],[32],[16,16]"],
    "cnn": ["train.optimizer.learning_rate=0.001,0.002,0.003,0.005"],
}
FACTORY_TRAIN = str(Path(sys.executable).parent / "factory-train")


def run(command: list[str], out: Path, work: Path, env: dict) -> float:
    """Run ``factory-train -m`` with ``hydra.sweep.dir=out`` (emptied first); its wall time in seconds."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(
        [FACTORY_TRAIN, "-m", *command, "train.progress=none", f"hydra.sweep.dir={out}"],
        cwd=work,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def write_records(work: Path, env: dict) -> None:
    run(["network=mlp", "network.hidden=[8]", "train.max_steps=1"], work / "records", work, env)


def study_outcome(sweep: Path) -> tuple[int, int, float | None]:
    """``(complete, pruned, best value)`` of the study a sweep left in ``sweep``."""
    from optuna import load_study, logging  # the sweeps extra: only the pruning comparison needs it

    logging.set_verbosity(logging.WARNING)
    trials = load_study(study_name="digits", storage=journal_storage(sweep / "optuna.journal")).trials
    states = [t.state.name for t in trials]
    results = sweep / "optimization_results.yaml"
    best = yaml.safe_load(results.read_text())["best_value"] if results.exists() else None
    return states.count("COMPLETE"), states.count("PRUNED"), best


def pruning(args: argparse.Namespace, work: Path, env: dict) -> None:
    study = [
        "+hparams_search=digits_optuna",
        "network=mlp",
        f"train.max_steps={args.steps}",
        f"train.eval_every_steps={args.eval_every}",
        "data.test=null",
        "export.best.enabled=false",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.seed={args.seed}",
        f"hydra.sweeper.pruner_n_startup_trials={args.startup}",
    ]
    rows = []
    for pruner in ("median", "none"):
        out = work / f"study-{pruner}"
        seconds = run([*study, f"hydra.sweeper.pruner={pruner}"], out, work, env)
        rows.append((pruner, seconds, *study_outcome(out)))
        if pruner == "median" and args.plot:  # the README's picture of a sweep
            summarize = [str(Path(sys.executable).parent / "factory"), "summarize", out.name, "--no-csv"]
            plot = f"--plot={Path(args.plot).resolve()}"
            subprocess.run([*summarize, plot], cwd=work, check=True, stdout=subprocess.DEVNULL)
    print(
        f"{args.trials} trials, mlp, {args.steps} steps each, evaluated every {args.eval_every}; "
        f"seed {args.seed}, the median pruner after {args.startup} complete trials"
    )
    print(f"{'pruner':8} {'time':>8} {'complete':>9} {'pruned':>7}  best val_accuracy")
    for pruner, seconds, complete, pruned, best in rows:
        shown = "-" if best is None else f"{best:.4f}"
        print(f"{pruner:8} {seconds:7.1f}s {complete:9d} {pruned:7d}  {shown}")
    print(f"pruning took {rows[0][1] / rows[1][1]:.2f}x the time of the study without it")


def launchers(args: argparse.Namespace, work: Path, env: dict) -> None:
    times: dict[str, list[float]] = {"basic": [], "joblib": []}
    for _ in range(args.repeats):
        for launcher in times:
            command = [*LAUNCHER_SWEEPS[args.network], f"train.max_steps={args.steps}", f"hydra/launcher={launcher}"]
            if launcher == "joblib":
                command.append(f"hydra.launcher.n_jobs={args.jobs}")
            times[launcher].append(run(command, work / f"sweep-{launcher}", work, env))
    basic, joblib = (statistics.median(times[k]) for k in ("basic", "joblib"))
    print(f"4 trials, {args.network}, {args.steps} steps each; median of {args.repeats}")
    print(f"basic launcher        {basic:6.1f} s")
    print(f"joblib n_jobs={args.jobs}       {joblib:6.1f} s   ({basic / joblib:.2f}x the basic launcher's speed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare", nargs="?", choices=["pruning", "launchers"], default="pruning")
    parser.add_argument("--steps", type=int, default=300, help="training steps per trial (default: 300)")
    parser.add_argument("--trials", type=int, default=12, help="pruning: trials per study (default: 12)")
    parser.add_argument("--eval-every", type=int, default=30, help="pruning: steps between evaluations (default: 30)")
    parser.add_argument("--startup", type=int, default=3, help="pruning: complete trials before any is pruned")
    parser.add_argument("--seed", type=int, default=1234, help="pruning: the sampler's seed, the same for both")
    parser.add_argument("--plot", metavar="PNG", help="pruning: draw the pruned study with `factory summarize --plot`")
    parser.add_argument("--network", choices=sorted(LAUNCHER_SWEEPS), default="mlp", help="launchers: the network")
    parser.add_argument("--jobs", type=int, default=2, help="launchers: joblib's n_jobs (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="launchers: rounds (default: 3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="factory-sweep-bench-"))
    env = {**os.environ, "FACTORY_CACHE": str(work / "cache")}
    try:
        write_records(work, env)
        (pruning if args.compare == "pruning" else launchers)(args, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
