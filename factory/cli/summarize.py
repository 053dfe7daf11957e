"""``factory summarize``: the trials of a sweep as a table, best first, and as CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.sweeps.results import SWEEP_CSV, format_table, read_sweep, write_csv


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep", metavar="MULTIRUN_DIR", help="the directory a sweep wrote (its hydra.sweep.dir), or one run dir"
    )
    parser.add_argument("--csv", metavar="PATH", help=f"write the table here (default: MULTIRUN_DIR/{SWEEP_CSV})")
    parser.add_argument("--no-csv", action="store_true", help="only print the table")


def run(args: argparse.Namespace) -> int:
    """Print the ranked table of trials, then write it as CSV."""
    trials = read_sweep(args.sweep)
    print(format_table(trials))
    if not args.no_csv:
        path = write_csv(trials, args.csv or Path(args.sweep) / SWEEP_CSV)
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
summary.json are listed last: `failed` when the run logged an error, otherwise
`unfinished` (still running, or stopped) with its values so far.

The CSV has every column of the table plus the number of evaluations and
steps, early stopping, one column per export policy and per test metric, and
the full overrides of each trial.

examples:
  factory-train -m network=mlp 'network.hidden=[32],[64],[64,64]'
  factory-train -m +hparams_search=digits_optuna hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweeper.n_jobs=2
  factory summarize multirun/2026-01-31_12-00-00
"""
