"""A sweep as one picture: ``factory summarize D --plot``. No TensorFlow; matplotlib is an extra.

``sweep_figure`` draws, on top, the learning curve of every trial (its monitored metric
against the step, from its ``metrics.jsonl``) and, below, one panel per swept parameter (an
override whose value differs between trials, ``results.shared_overrides``' complement) with
each trial's best value against the parameter's. ``plot_sweep`` writes it as a PNG.
matplotlib (``pip install 'factory[sweeps]'``) is imported when a figure is drawn, so that
the rest of ``factory summarize`` runs without it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.errors import FactoryError
from factory.run_dir import METRICS, atomic_path, read_json_lines
from factory.sweeps.results import rank, shared_overrides
from factory.sweeps.trials import Trial

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Where `factory summarize --plot` writes the picture, in the sweep dir.
SWEEP_PNG = "sweep.png"

MATPLOTLIB_MISSING = "--plot needs matplotlib, an optional dependency: pip install 'factory[sweeps]'"

# A parameter's values span more than this factor: its axis is logarithmic.
LOG_SPAN = 100.0
# With at most this many curves each gets a legend entry; beyond, only the best one does.
LEGEND_CURVES = 10
PANELS_PER_ROW = 3

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class PlotError(FactoryError):
    """A sweep that cannot be drawn (nothing evaluated yet), or matplotlib is missing."""


def _key(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def swept_parameters(trials: Sequence[Trial]) -> dict[str, list[str | None]]:
    """``{key: [each trial's value, or None where it has no such override]}`` for every key of
    an override that differs between ``trials`` (in the order the keys first appear)."""
    shared = set(shared_overrides(trials))
    swept: dict[str, list[str | None]] = {}
    for trial in trials:
        for override in trial.overrides:
            if override not in shared and "=" in override:
                swept.setdefault(_key(override)[0], [])
    for key, values in swept.items():
        for trial in trials:
            given = dict(_key(o) for o in trial.overrides if "=" in o)
            values.append(given.get(key))
    return swept


def numeric_values(values: Sequence[str | None]) -> list[float | None] | None:
    """The values as numbers when every one given is a number (``1e-3``, ``64``); else None."""
    present = [v for v in values if v is not None]
    if not present or not all(_NUMBER.fullmatch(v.strip()) for v in present):
        return None
    return [None if v is None else float(v) for v in values]


def log_scale(numbers: Sequence[float]) -> bool:
    """Whether positive ``numbers`` span more than ``LOG_SPAN`` (two decades)."""
    return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) > LOG_SPAN


def learning_curve(trial: Trial, metric: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``metric`` in the trial's ``metrics.jsonl``; empty when it has none
    (or an unreadable line: the table reports such a trial, the picture leaves it out)."""
    try:
        rows = read_json_lines(trial.path / METRICS)
    except (OSError, FactoryError):
        return [], []
    points = [
        (row["step"], float(row[metric]))
        for row in rows
        if isinstance(row.get("step"), int) and isinstance(row.get(metric), int | float)
    ]
    return [s for s, _ in points], [v for _, v in points]


def _natural(text: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p]


def _label(trial: Trial, swept: dict[str, list[str | None]], index: int) -> str:
    values = []
    for key, column in swept.items():
        value = column[index]
        if value is None:
            continue
        number = numeric_values([value])
        short = f"{number[0]:.3g}" if number else value
        values.append(f"{key.rsplit('.', 1)[-1]}={short}")
    return f"trial {trial.name}: {' '.join(values)}" if values else f"trial {trial.name}"


def sweep_figure(trials: Sequence[Trial], name: str | None = None) -> Figure:
    """The sweep's learning curves and, below them, one panel per swept parameter.

    ``name`` (the sweep dir, say) starts the figure's title, which counts the trials and names
    the best.

    The metric drawn is the monitored metric of the best trial (``results.rank``; of the first
    trial with evaluations when none is ranked); trials that monitored another metric are left
    out, and the title says how many. Curves: the best trial thick and red with its best
    evaluation starred, the other ranked trials coloured by rank (dark is better), pruned
    trials dashed and unranked ones (failed, running, interrupted) dotted, both grey. Panels:
    each trial's best value (y) against the parameter's value (x): a numeric axis for numbers
    (logarithmic when the values span more than two decades), categories otherwise; the best
    trial a red star, pruned and unranked trials hollow.

    Raises:
        PlotError: matplotlib is not installed, or no trial has an evaluation of the metric yet.
    """
    try:
        # Deferred: matplotlib is an extra (factory[sweeps]); the table and CSV need none of it.
        from matplotlib import colormaps, figure, lines
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred as well: the PNG's renderer
    except ImportError:
        raise PlotError(MATPLOTLIB_MISSING) from None

    trials = rank(trials)
    curves = {t.name: learning_curve(t, t.monitor) for t in trials if t.monitor}
    best = next((t for t in trials if t.has_objective), None)
    evaluated = [t for t in trials if curves.get(t.name, ((), ()))[0]]
    metric = best.monitor if best else evaluated[0].monitor if evaluated else None
    shown = [t for t in trials if t.monitor == metric]
    if not any(t in evaluated for t in shown):
        raise PlotError(f"no trial has an evaluation in {METRICS} yet: nothing to plot")
    mode = next((t.mode for t in shown if t.mode), None)
    swept = swept_parameters(shown)
    ranked = [t for t in shown if t.has_objective]

    def style(trial: Trial) -> dict[str, Any]:
        if trial is best:
            return {"color": "tab:red", "linewidth": 2.4, "zorder": 4}
        if trial.has_objective:
            position = ranked.index(trial) / max(len(ranked) - 1, 1)
            return {"color": colormaps["viridis"](0.15 + 0.7 * position), "linewidth": 1.2, "zorder": 3}
        return {"color": "0.6", "linewidth": 1.0, "linestyle": "--" if trial.pruned else ":", "zorder": 2}

    columns = max(1, min(len(swept), PANELS_PER_ROW))
    rows = math.ceil(len(swept) / columns)
    fig = figure.Figure(figsize=(11, 4.2 + 3.0 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1 + rows, columns, height_ratios=[1.4] + [1] * rows)
    curves_axes = fig.add_subplot(grid[0, :])
    labelled = len(shown) <= LEGEND_CURVES
    for index, trial in enumerate(shown):
        steps, values = curves.get(trial.name, ([], []))
        if not steps:
            continue
        label = _label(trial, swept, index) if labelled or trial is best else None
        if label and (trial is best or not trial.has_objective):
            label += " (best)" if trial is best else f" ({trial.status})"
        curves_axes.plot(steps, values, marker="o", markersize=2.5, label=label, **style(trial))
    if best is not None and best.best_value is not None:
        steps, values = curves[best.name]
        at = [s for s, v in zip(steps, values, strict=True) if v == best.best_value]
        if at:
            curves_axes.plot(at[:1], [best.best_value], marker="*", markersize=14, color="tab:red", zorder=5)
    handles = curves_axes.get_legend_handles_labels()[0]
    if not labelled and any(t.pruned for t in shown):
        handles.append(lines.Line2D([], [], color="0.6", linestyle="--", label="pruned"))
    if not labelled and any(not t.has_objective and not t.pruned for t in shown):
        handles.append(lines.Line2D([], [], color="0.6", linestyle=":", label="failed, running or interrupted"))
    curves_axes.set_xlabel("step")
    curves_axes.set_ylabel(f"{metric} (eval)")
    direction = {"max": "higher is better", "min": "lower is better"}.get(mode or "", "direction unknown")
    curves_axes.set_title(f"learning curves: {metric} at each evaluation ({direction})")
    curves_axes.grid(alpha=0.3)
    if handles:
        curves_axes.legend(handles=handles, fontsize="small", loc="best")

    valued = [(i, t) for i, t in enumerate(shown) if t.best_value is not None and math.isfinite(t.best_value)]
    for panel, (key, column) in enumerate(swept.items()):
        axes = fig.add_subplot(grid[1 + panel // columns, panel % columns])
        points = [(column[i], t) for i, t in valued if column[i] is not None]
        numbers = numeric_values([v for v, _ in points])
        if numbers is not None:
            xs: list[float] = numbers
            if log_scale(numbers):
                axes.set_xscale("log")
        else:
            categories = sorted({v for v, _ in points}, key=_natural)
            xs = [categories.index(v) for v, _ in points]
            axes.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 3 else 0)
            if categories:
                axes.set_xlim(-0.5, len(categories) - 0.5)
        for x, (_, trial) in zip(xs, points, strict=True):
            look = style(trial)
            if trial is best:
                axes.plot([x], [trial.best_value], marker="*", markersize=13, color=look["color"], zorder=4)
            elif trial.has_objective:
                axes.plot([x], [trial.best_value], marker="o", markersize=6, color=look["color"], zorder=3)
            else:
                axes.plot([x], [trial.best_value], marker="o", markersize=6, markerfacecolor="none", color="0.5")
        axes.set_xlabel(key)
        axes.set_ylabel(f"best {metric}")
        axes.grid(alpha=0.3)
        if panel == 0 and any(not t.has_objective for _, t in points):
            hollow = lines.Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="0.5")
            axes.legend([hollow], ["not ranked: best so far"], fontsize="small", loc="best")
    others = len(trials) - len(shown)
    title = f"{name + ': ' if name else ''}{len(shown)} trial{'s' if len(shown) != 1 else ''}"
    if best is not None:
        title += f", best: trial {best.name} ({metric} {best.best_value:.4g})"
    if others:
        title += f"; {others} monitoring another metric not shown"
    fig.suptitle(title, fontsize="medium")
    return fig


def plot_sweep(trials: Sequence[Trial], path: str | os.PathLike, name: str | None = None) -> Path:
    """Draw ``sweep_figure(trials, name)`` into the PNG ``path`` (written aside, then renamed); returns it.

    Raises:
        PlotError: as ``sweep_figure``.
    """
    path = Path(path)
    fig = sweep_figure(trials, name)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
