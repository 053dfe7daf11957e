"""One trial of a sweep, read back from its run directory. No TensorFlow.

``factory-train -m`` writes one run directory per trial under the sweep's
``hydra.sweep.dir`` (``multirun/<time>/<job number>`` by default). A finished
trial holds ``summary.json`` (the best monitored value, the evaluation it came
from, the wall time and the exports), ``config.yaml``, ``metrics.jsonl`` and
Hydra's ``.hydra/overrides.yaml``. ``find_trial_dirs`` finds them and
``read_trial`` reads one, however far it got.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from factory.config import EarlyStopConfig
from factory.errors import ConfigError, FactoryError
from factory.names import POLICY_PREFERENCE
from factory.policies import Monitor
from factory.run_dir import (
    CONFIG,
    HYDRA,
    HYDRA_CONFIG,
    HYDRA_OVERRIDES,
    METRICS,
    SUMMARY,
    TRAIN_LOG,
    in_use,
    read_json,
)

# What a trial without an early_stop section of its own ran with.
_EARLY_STOP = EarlyStopConfig()


_ERROR_LINE = re.compile(r"\berror: (.*)")

DONE, PRUNED, FAILED, RUNNING, INTERRUPTED = "done", "pruned", "failed", "running", "interrupted"


class SummaryError(FactoryError):
    """The directory given is not a sweep (or run) directory; the message says what was expected."""


@dataclass(frozen=True)
class Trial:
    """One trial's run directory, as far as it got.

    ``status`` is ``"done"`` (``summary.json`` written), ``"pruned"`` (written, and the
    sweep's pruner stopped it), ``"failed"`` (the training job logged an error, or its
    summary is unreadable; ``error`` says why), ``"running"`` (no summary yet, and a
    process holds the run dir) or ``"interrupted"`` (no summary, nobody training it:
    killed or stopped; running the sweep's command again resumes it). For a trial
    without a summary ``best_value``, ``evaluations`` and ``seconds`` are those of its
    last evaluation in ``metrics.jsonl``, if any. ``mode`` is the
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
    def pruned(self) -> bool:
        return self.status == PRUNED

    @property
    def has_objective(self) -> bool:
        """A finished (not pruned) trial with a finite best value and a known direction: it can be ranked."""
        return (
            self.status == DONE
            and self.mode is not None
            and self.best_value is not None
            and math.isfinite(self.best_value)
        )


def _natural_key(text: str) -> list:
    """``2`` before ``10``: job numbers sort as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def _is_trial_dir(path: Path) -> bool:
    return (path / HYDRA).is_dir() or (path / SUMMARY).is_file() or (path / METRICS).is_file()


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
            f"{root}: {what}; pass the directory a sweep wrote (its hydra.sweep.dir, by default multirun/<date>_<time>)"
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
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _early_stop_config(path: Path) -> dict:
    """The trial's ``early_stop`` section: from its ``config.yaml``, else Hydra's copy."""
    for candidate in (path / CONFIG, path / HYDRA_CONFIG):
        config = _read_yaml(candidate)
        if isinstance(config, dict) and isinstance(config.get("early_stop"), dict):
            return config["early_stop"]
    return {}


def _logged_error(path: Path) -> str | None:
    """The last ``error: ...`` line the training job logged, if any."""
    try:
        text = (path / TRAIN_LOG).read_text(errors="replace")
    except OSError:
        return None
    errors = [m.group(1).strip() for m in _ERROR_LINE.finditer(text)]
    return errors[-1] if errors else None


def _last_evaluation(path: Path) -> dict:
    try:
        lines = (path / METRICS).read_text().splitlines()
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
    trial ``failed`` or ``interrupted`` with the reason in ``error``.
    """
    path = Path(path)
    name = path.relative_to(root).as_posix() if root is not None else path.name
    overrides = _read_yaml(path / HYDRA_OVERRIDES)
    overrides = tuple(str(o) for o in overrides) if isinstance(overrides, list) else ()
    early_stop = _early_stop_config(path)
    summary_path = path / SUMMARY
    summary: Any = None
    error = None
    if summary_path.is_file():
        try:
            summary = read_json(summary_path)
        except (OSError, json.JSONDecodeError) as err:
            error = f"{SUMMARY} is unreadable ({err})"
        if summary is not None and not isinstance(summary, dict):
            summary, error = None, f"{SUMMARY} does not hold an object"
    monitor = summary.get("monitor") if summary else None
    monitor = monitor if isinstance(monitor, str) else early_stop.get("monitor", _EARLY_STOP.monitor)
    try:
        mode = Monitor(monitor, early_stop.get("mode", _EARLY_STOP.mode)).mode
    except ConfigError:  # a direction nobody can tell: the trial is listed, not ranked
        mode = None
    if summary is not None:
        exports = summary.get("exports") if isinstance(summary.get("exports"), dict) else {}
        test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
        return Trial(
            name=name,
            path=path,
            status=PRUNED if summary.get("pruned") is True else DONE,
            overrides=overrides,
            monitor=monitor,
            mode=mode,
            best_value=_number(summary.get("best_value")),
            best_eval=summary.get("best_eval") if isinstance(summary.get("best_eval"), int) else None,
            evaluations=summary.get("evaluations"),
            steps=summary.get("steps"),
            stopped_early=summary.get("stopped_early"),
            seconds=_number(summary.get("seconds")),
            exports={str(k): str(v) for k, v in exports.items()},
            test={str(k): v for k, v in test.items() if _number(v) is not None},
        )
    error = error or _logged_error(path)
    last = _last_evaluation(path)
    return Trial(
        name=name,
        path=path,
        status=FAILED if error else RUNNING if in_use(path) else INTERRUPTED,
        overrides=overrides,
        monitor=monitor,
        mode=mode,
        best_value=_number(last.get("best")),
        evaluations=last.get("eval") if isinstance(last.get("eval"), int) else None,
        steps=last.get("step") if isinstance(last.get("step"), int) else None,
        seconds=_number(last.get("seconds")),
        error=error,
    )
