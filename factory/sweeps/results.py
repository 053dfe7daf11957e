"""The trials of a sweep, read back from its directory and ranked by the objective.

``factory-train -m`` writes one run directory per trial under the sweep's
``hydra.sweep.dir`` (``multirun/<time>/<job number>`` by default). A finished
trial holds ``summary.json`` (the best monitored value, the evaluation it came
from, the wall time and the exports), ``config.yaml``, ``metrics.jsonl`` and
Hydra's ``.hydra/overrides.yaml``. ``read_sweep`` collects them, ``rank`` sorts
them best first (the direction of each trial's monitored metric comes from
``factory.policies.Monitor`` and its ``early_stop.mode``), and ``format_table``
and ``write_csv`` present them. Nothing here imports TensorFlow or Hydra.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.errors import ConfigError, FactoryError
from factory.names import POLICY_PREFERENCE
from factory.policies import Monitor

# Export policies in the order the table prefers one to show.
_ERROR_LINE = re.compile(r"\berror: (.*)")

DONE, FAILED, UNFINISHED = "done", "failed", "unfinished"


class SummaryError(FactoryError):
    """The directory given is not a sweep (or run) directory; the message says what was expected."""


@dataclass(frozen=True)
class Trial:
    """One trial's run directory, as far as it got.

    ``status`` is ``"done"`` (``summary.json`` written), ``"failed"`` (the
    training job logged an error, or its summary is unreadable; ``error`` says
    why) or ``"unfinished"`` (no summary yet: still running, or killed). For an
    unfinished trial ``best_value``, ``evaluations`` and ``seconds`` are those
    of its last evaluation in ``metrics.jsonl``, if any. ``mode`` is the
    resolved direction (``"min"``/``"max"``) or ``None`` when unknown.
    """

    name: str
    path: Path
    status: str
    overrides: tuple[str, ...] = ()
    monitor: str | None = None
    mode: str | None = None
    best_value: float | None = None
    best_eval: int | None = None
    evaluations: int | None = None
    steps: int | None = None
    stopped_early: bool | None = None
    seconds: float | None = None
    exports: dict[str, str] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def export(self) -> str | None:
        """The export path the table shows: the best policy's, else final, else latest, else any."""
        for policy in (*POLICY_PREFERENCE, *sorted(self.exports)):
            if policy in self.exports:
                return self.exports[policy]
        return None

    @property
    def has_objective(self) -> bool:
        """A finished trial with a finite best value and a known direction: it can be ranked."""
        return (
            self.status == DONE and self.mode is not None and self.best_value is not None
            and math.isfinite(self.best_value)
        )


def _natural_key(text: str) -> list:
    """``2`` before ``10``: job numbers sort as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def _is_trial_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / "summary.json").is_file() or (path / "metrics.jsonl").is_file()


def find_trial_dirs(root: str | os.PathLike) -> list[Path]:
    """Run directories at or under ``root``, in job order (``2`` before ``10``).

    A run directory holds ``.hydra/``, ``summary.json`` or ``metrics.jsonl``;
    the search does not descend into one (its exports and checkpoints are not
    trials) nor into hidden directories.

    Raises:
        SummaryError: if ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise SummaryError(
            f"{root}: {what}; pass the directory a sweep wrote (its hydra.sweep.dir, "
            "by default multirun/<date>_<time>)"
        )
    if _is_trial_dir(root):
        return [root]
    found: list[Path] = []
    for current, dirs, _ in os.walk(root):
        here = Path(current)
        keep = []
        for name in dirs:
            if name.startswith("."):
                continue
            if _is_trial_dir(here / name):
                found.append(here / name)
            else:
                keep.append(name)
        dirs[:] = keep
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _early_stop_config(path: Path) -> dict:
    """The trial's ``early_stop`` section: from its ``config.yaml``, else Hydra's copy."""
    for candidate in (path / "config.yaml", path / ".hydra" / "config.yaml"):
        config = _read_yaml(candidate)
        if isinstance(config, dict) and isinstance(config.get("early_stop"), dict):
            return config["early_stop"]
    return {}


def _logged_error(path: Path) -> str | None:
    """The last ``error: ...`` line the training job logged, if any."""
    try:
        text = (path / "train.log").read_text(errors="replace")
    except OSError:
        return None
    errors = [m.group(1).strip() for m in _ERROR_LINE.finditer(text)]
    return errors[-1] if errors else None


def _last_evaluation(path: Path) -> dict:
    try:
        lines = (path / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line being written right now
            continue
        if isinstance(row, dict):
            return row
    return {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_trial(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Trial:
    """One run directory as a ``Trial``; ``name`` is its path relative to ``root`` (default: its own name).

    Never raises for a broken trial: a missing or unreadable file makes the
    trial ``failed`` or ``unfinished`` with the reason in ``error``.
    """
    path = Path(path)
    name = path.relative_to(root).as_posix() if root is not None else path.name
    overrides = _read_yaml(path / ".hydra" / "overrides.yaml")
    overrides = tuple(str(o) for o in overrides) if isinstance(overrides, list) else ()
    early_stop = _early_stop_config(path)
    summary_path = path / "summary.json"
    summary: Any = None
    error = None
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            error = f"summary.json is unreadable ({err})"
        if summary is not None and not isinstance(summary, dict):
            summary, error = None, "summary.json does not hold an object"
    monitor = summary.get("monitor") if summary else None
    monitor = monitor if isinstance(monitor, str) else early_stop.get("monitor", "val_loss")
    try:
        mode = Monitor(monitor, early_stop.get("mode", "auto")).mode
    except ConfigError:  # a direction nobody can tell: the trial is listed, not ranked
        mode = None
    if summary is not None:
        exports = summary.get("exports") if isinstance(summary.get("exports"), dict) else {}
        test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
        return Trial(
            name=name, path=path, status=DONE, overrides=overrides, monitor=monitor, mode=mode,
            best_value=_number(summary.get("best_value")),
            best_eval=summary.get("best_eval") if isinstance(summary.get("best_eval"), int) else None,
            evaluations=summary.get("evaluations"), steps=summary.get("steps"),
            stopped_early=summary.get("stopped_early"), seconds=_number(summary.get("seconds")),
            exports={str(k): str(v) for k, v in exports.items()},
            test={str(k): v for k, v in test.items() if _number(v) is not None},
        )
    error = error or _logged_error(path)
    last = _last_evaluation(path)
    return Trial(
        name=name, path=path, status=FAILED if error else UNFINISHED, overrides=overrides,
        monitor=monitor, mode=mode, best_value=_number(last.get("best")),
        evaluations=last.get("eval") if isinstance(last.get("eval"), int) else None,
        steps=last.get("step") if isinstance(last.get("step"), int) else None,
        seconds=_number(last.get("seconds")), error=error,
    )


def rank(trials: Iterable[Trial]) -> list[Trial]:
    """Trials best first.

    Finished trials with a value come first, ordered by their monitored metric
    in its direction (ties keep job order); when trials monitored different
    metrics, each metric forms its own block, in order of first appearance.
    Finished trials without a value follow, then failed and unfinished ones, in
    job order.
    """
    trials = list(trials)
    ranked = [t for t in trials if t.has_objective]
    blocks = list(dict.fromkeys((t.monitor, t.mode) for t in ranked))

    def key(trial: Trial) -> tuple:
        monitor = Monitor(trial.monitor, trial.mode)  # the one rule of "better" the policies use
        return blocks.index((trial.monitor, trial.mode)), monitor.rank_key(trial.best_value)

    rest = [t for t in trials if not t.has_objective]
    order = {DONE: 0, FAILED: 1, UNFINISHED: 2}
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
        rows.append([
            "-" if position is None else str(position),
            trial.name,
            trial.status,
            " ".join(_short(o) for o in trial.overrides if o not in shared) or "-",
            value,
            str(trial.best_eval) if trial.best_eval is not None else "-",
            _duration(trial.seconds),
            _shown_path(trial.export) if trial.export else "-",
        ])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {0, 4, 5, 6}

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    out = []
    if shared:
        out.append("shared overrides: " + " ".join(o for o in trials[0].overrides if o in shared))
    out += [line(header), *(line(r) for r in rows)]
    notes = [f"  {t.name}: {t.error}" for t in trials if t.status == FAILED and t.error]
    if notes:
        out += ["failed:", *notes]
    if any(t.status == UNFINISHED for t in trials):
        out.append("unfinished: no summary.json yet (still running, or stopped before the end); values so far")
    if not one_monitor and monitors:
        out.append("trials monitored different metrics: each metric is ranked on its own")
    return "\n".join(out)


def write_csv(trials: Sequence[Trial], path: str | os.PathLike) -> Path:
    """Write ``trials`` (in the order given) as CSV, atomically; returns the path.

    Columns: rank, trial, status, monitor, mode, best_value, best_eval,
    evaluations, steps, stopped_early, seconds, overrides (space separated, as
    typed on a command line), one ``export_<policy>`` column per export policy
    and one column per test metric seen in any trial, error, run_dir.
    """
    path = Path(path)
    policies = sorted({p for t in trials for p in t.exports})
    tests = sorted({m for t in trials for m in t.test})
    fields = [
        "rank", "trial", "status", "monitor", "mode", "best_value", "best_eval", "evaluations", "steps",
        "stopped_early", "seconds", "overrides", *(f"export_{p}" for p in policies), *tests, "error", "run_dir",
    ]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for position, t in zip(_ranks(trials), trials, strict=True):
            row = {
                "rank": position, "trial": t.name, "status": t.status,
                "monitor": t.monitor, "mode": t.mode, "best_value": t.best_value, "best_eval": t.best_eval,
                "evaluations": t.evaluations, "steps": t.steps, "stopped_early": t.stopped_early,
                "seconds": t.seconds, "overrides": " ".join(t.overrides), "error": t.error,
                "run_dir": str(t.path.resolve()),
                **{f"export_{p}": t.exports.get(p) for p in policies},
                **{m: t.test.get(m) for m in tests},
            }
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    os.replace(tmp, path)
    return path
