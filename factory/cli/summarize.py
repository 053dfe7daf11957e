"""``factory summarize``: the trials of a sweep as a table, best first, as CSV and, with ``--plot``, as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.sweeps.plots import SWEEP_PNG, plot_sweep
from factory.sweeps.results import SWEEP_CSV, format_table, read_sweep, write_csv


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep", metavar="MULTIRUN_DIR", help="the directory a sweep wrote (its hydra.sweep.dir), or one run dir"
    )
    parser.add_argument("--csv", metavar="PATH", help=f"write the table here (default: MULTIRUN_DIR/{SWEEP_CSV})")
    parser.add_argument("--no-csv", action="store_true", help="only print the table")
    parser.add_argument(
        "--plot",
        nargs="?",
        const="",
        metavar="PATH",
        help=f"draw the learning curves and each swept parameter against the objective as a PNG "
        f"(default: MULTIRUN_DIR/{SWEEP_PNG}; needs matplotlib: pip install 'factory[sweeps]')",
    )


def run(args: argparse.Namespace) -> int:
    """Print the ranked table of trials, then write it as CSV and, with ``--plot``, draw it."""
    trials = read_sweep(args.sweep)
    print(format_table(trials))
    if not args.no_csv:
        path = write_csv(trials, args.csv or Path(args.sweep) / SWEEP_CSV)
        print(f"wrote {path}")
    if args.plot is not None:
        path = plot_sweep(trials, args.plot or Path(args.sweep) / SWEEP_PNG, name=str(args.sweep))
        print(f"wrote {path}")
    return 0


EPILOG = """\
A sweep directory holds one run directory per trial, as `factory-train -m ...`
writes them (multirun/<date>_<time>/0, 1, ...). Each finished trial's summary.json
gives its best monitored metric (the objective `factory-train` returns to a
sweeper), the evaluation it came from, its wall time and its export paths;
.hydra/overrides.yaml gives its command-line overrides (the table shows those
that differ between trials, and the shared ones above it).

Rows are sorted best first in the metric's direction (early_stop.mode of each
trial; `auto` as the early-stop policy resolves it). Trials without a
summary.json are listed last: `failed` when the run logged an error, `running`
while a process trains it, otherwise `interrupted` (killed or preempted: run the
sweep's command again with the same hydra.sweep.dir to resume it), with the values
so far. Trials a sweep's pruner stopped are `pruned`, listed after the ranked ones.

The CSV has every column of the table plus the number of evaluations and
steps, early stopping, one column per export policy and per test metric, and
the full overrides of each trial.

--plot draws a PNG: on top the learning curves (the monitored metric of every
trial's metrics.jsonl against the step: the best trial red, the other ranked
trials darker the better they did, pruned ones dashed), below one panel per
swept parameter (an override that differs between trials) with each trial's
best value against it, on a log axis when the values span more than two
decades, as categories when they are not numbers. Put it after MULTIRUN_DIR
(or write --plot=PATH). Needs matplotlib: pip install 'factory[sweeps]'.

Each trial of a multirun also writes its swept overrides for TensorBoard's
HParams dashboard: `tensorboard --logdir MULTIRUN_DIR` shows one row per trial
with its parameters and the last value of each evaluation metric.

examples:
  factory-train -m network=mlp 'network.hidden=[32],[64],[64,64]'
  factory-train -m +hparams_search=digits_optuna hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweeper.n_jobs=2
  factory summarize multirun/2026-01-31_12-00-00
  factory summarize multirun/2026-01-31_12-00-00 --no-csv --plot
  tensorboard --logdir multirun/2026-01-31_12-00-00
"""
