"""The trials of a sweep, ranked by the objective, as a table and as CSV. No TensorFlow or Hydra.

``read_sweep`` collects the trials under a sweep directory (``trials.read_trial``),
``rank`` sorts them best first (the direction of each trial's monitored metric
comes from ``factory.policies.Monitor`` and its ``early_stop.mode``), and
``format_table`` and ``write_csv`` present them.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from factory.policies import Monitor
from factory.sweeps.trials import (
    DONE,
    FAILED,
    INTERRUPTED,
    PRUNED,
    RUNNING,
    SummaryError,
    Trial,
    find_trial_dirs,
    read_trial,
)

# Where `factory summarize` writes the table, in the sweep dir.
SWEEP_CSV = "summary.csv"


def rank(trials: Iterable[Trial]) -> list[Trial]:
    """Trials best first.

    Finished trials with a value come first, ordered by their monitored metric
    in its direction (ties keep job order); when trials monitored different
    metrics, each metric forms its own block, in order of first appearance.
    Finished trials without a value follow, then pruned ones (their values are of
    shorter runs), failed, running and interrupted ones, in job order.
    """
    trials = list(trials)
    ranked = [t for t in trials if t.has_objective]
    blocks = list(dict.fromkeys((t.monitor, t.mode) for t in ranked))

    def key(trial: Trial) -> tuple:
        monitor = Monitor(trial.monitor, trial.mode)  # the one rule of "better" the policies use
        return blocks.index((trial.monitor, trial.mode)), monitor.rank_key(trial.best_value)

    rest = [t for t in trials if not t.has_objective]
    order = {DONE: 0, PRUNED: 1, FAILED: 2, RUNNING: 3, INTERRUPTED: 4}
    return sorted(ranked, key=key) + sorted(rest, key=lambda t: order.get(t.status, 3))


def read_sweep(root: str | os.PathLike) -> list[Trial]:
    """Every trial under ``root`` (a sweep directory, or one run directory), ranked by ``rank``.

    Raises:
        SummaryError: if ``root`` is not a directory or holds no run directory.
    """
    dirs = find_trial_dirs(root)
    if not dirs:
        raise SummaryError(
            f"{root}: no trial directories found; a sweep directory holds one run directory per "
            "trial (with .hydra/ and summary.json), as `factory-train -m ...` writes them"
        )
    base = Path(root) if Path(root) not in dirs else Path(root).parent
    return rank(read_trial(d, base) for d in dirs)


# -- presentation --------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _shown_path(path: str) -> str:
    """Relative to the working directory when inside it (shorter, and still a path that works)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if relative.startswith("..") else relative


def _short(override: str) -> str:
    """``lr=0.0013922830138102383`` as ``lr=0.001392``: sampled floats, readable in a table."""
    key, sep, value = override.partition("=")
    if not sep or not re.fullmatch(r"-?\d*\.\d{5,}(e-?\d+)?|-?\d(\.\d+)?e-?\d+", value):
        return override
    return f"{key}={float(value):.4g}"


def shared_overrides(trials: Sequence[Trial]) -> list[str]:
    """Overrides every trial has (empty for a single trial, whose row shows them all)."""
    if len(trials) < 2:
        return []
    common = set(trials[0].overrides).intersection(*(t.overrides for t in trials[1:]))
    return [o for o in trials[0].overrides if o in common]


def _ranks(trials: Sequence[Trial]) -> list[int | None]:
    """1, 2, ... per monitored metric for the rankable trials (in the order given), ``None`` for the rest."""
    counters: dict[tuple, int] = {}
    ranks: list[int | None] = []
    for trial in trials:
        if trial.has_objective:
            block = (trial.monitor, trial.mode)
            counters[block] = counters.get(block, 0) + 1
            ranks.append(counters[block])
        else:
            ranks.append(None)
    return ranks


def format_table(trials: Sequence[Trial]) -> str:
    """A plain-text table of ``trials`` in the order given, with a line of the overrides they share."""
    shared = set(shared_overrides(trials))
    monitors = {(t.monitor, t.mode) for t in trials if t.monitor}
    one_monitor = len(monitors) == 1
    if one_monitor:
        monitor, mode = next(iter(monitors))
        best_header = f"best {monitor} ({mode or '?'})"
    else:
        best_header = "best"
    header = ["rank", "trial", "status", "overrides", best_header, "@eval", "time", "export"]
    rows = []
    for position, trial in zip(_ranks(trials), trials, strict=True):
        value = _fmt(trial.best_value)
        if not one_monitor and trial.best_value is not None:
            value = f"{trial.monitor}={value}"
        rows.append(
            [
                "-" if position is None else str(position),
                trial.name,
                trial.status,
                " ".join(_short(o) for o in trial.overrides if o not in shared) or "-",
                value,
                str(trial.best_eval) if trial.best_eval is not None else "-",
                _duration(trial.seconds),
                _shown_path(trial.export) if trial.export else "-",
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {0, 4, 5, 6}

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    out = []
    if shared:
        out.append("shared overrides: " + " ".join(o for o in trials[0].overrides if o in shared))
    out += [line(header), *(line(r) for r in rows)]
    notes = [f"  {t.name}: {t.error}" for t in trials if t.status == FAILED and t.error]
    if notes:
        out += ["failed:", *notes]
    if any(t.status == PRUNED for t in trials):
        out.append("pruned: stopped by the sweep's pruner; values of the steps they ran, not ranked")
    if any(t.status == RUNNING for t in trials):
        out.append("running: still training; values so far")
    if any(t.status == INTERRUPTED for t in trials):
        out.append(
            "interrupted: stopped before the end (killed, or preempted); values so far. "
            "Run the sweep's command again with the same hydra.sweep.dir to resume them"
        )
    if not one_monitor and monitors:
        out.append("trials monitored different metrics: each metric is ranked on its own")
    return "\n".join(out)


def write_csv(trials: Sequence[Trial], path: str | os.PathLike) -> Path:
    """Write ``trials`` (in the order given) as CSV, atomically; returns the path.

    Columns: rank, trial, status, monitor, mode, best_value, best_eval,
    evaluations, steps, stopped_early, pruned, seconds, overrides (space separated, as
    typed on a command line), one ``export_<policy>`` column per export policy
    and one column per test metric seen in any trial, error, run_dir.
    """
    path = Path(path)
    policies = sorted({p for t in trials for p in t.exports})
    tests = sorted({m for t in trials for m in t.test})
    fields = [
        "rank",
        "trial",
        "status",
        "monitor",
        "mode",
        "best_value",
        "best_eval",
        "evaluations",
        "steps",
        "stopped_early",
        "pruned",
        "seconds",
        "overrides",
        *(f"export_{p}" for p in policies),
        *tests,
        "error",
        "run_dir",
    ]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for position, t in zip(_ranks(trials), trials, strict=True):
            row = {
                "rank": position,
                "trial": t.name,
                "status": t.status,
                "monitor": t.monitor,
                "mode": t.mode,
                "best_value": t.best_value,
                "best_eval": t.best_eval,
                "evaluations": t.evaluations,
                "steps": t.steps,
                "stopped_early": t.stopped_early,
                "pruned": t.pruned,
                "seconds": t.seconds,
                "overrides": " ".join(t.overrides),
                "error": t.error,
                "run_dir": str(t.path.resolve()),
                **{f"export_{p}": t.exports.get(p) for p in policies},
                **{m: t.test.get(m) for m in tests},
            }
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    os.replace(tmp, path)
    return path
