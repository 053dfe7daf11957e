"""A sweep dir run again: which of its trials are skipped, resumed or started, and whether it holds this sweep.

Running the same ``factory-train -m ... hydra.sweep.dir=D`` again resumes the sweep in ``D``:
each trial's job finds its run dir as the first run left it (``factory.config.resume``), so a
finished trial is skipped without a file of it touched, an interrupted one resumes from its
checkpoint and the rest start. This module holds what the sweep as a whole needs for that,
with neither TensorFlow nor Hydra:

- ``SWEEP_RECORD`` (``D/sweep.yaml``) records what makes the sweep the one it is: its
  command-line overrides, its sweeper and the sweeper's search space (``sweep_identity``).
  ``check_sweep`` compares a new command line with it before anything runs, and refuses a
  different sweep naming each differing override; keys a resumed run may change
  (``factory.config.resume.RESUMABLE``: ``train.max_steps`` and the like) and the launcher
  may differ.
- ``snapshot`` notes each trial's state before the sweep runs and ``tally`` tells afterwards
  how many were skipped, resumed and started.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory.config.resume import RESUMABLE, covered
from factory.errors import ConfigError
from factory.run_dir import CHECKPOINTS, SUMMARY, write_text
from factory.sweeps.trials import find_trial_dirs

SWEEP_RECORD = "sweep.yaml"
SWEEPER = "hydra/sweeper"
PARAMS = "hydra.sweeper.params."

FINISHED, INTERRUPTED, NEW = "finished", "interrupted", "new"
_CHECKPOINT = re.compile(r"ckpt-\d+\.index")


def _override(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("+~"), "".join(value.split())


def sweep_identity(task_overrides: Iterable[str], sweeper: str, params: Mapping[str, Any]) -> dict[str, str]:
    """``{key: value}`` of what makes a sweep the one it is (see the module docstring).

    ``task_overrides``: the command line's overrides outside ``hydra`` (Hydra's
    ``hydra.overrides.task``); ``sweeper``: the ``hydra/sweeper`` choice; ``params``: the
    sweeper's ``hydra.sweeper.params`` as composed (config files and command line).
    Values are compared without their whitespace.
    """
    identity = dict(_override(o) for o in task_overrides if not o.lstrip("+~").startswith("hydra"))
    identity = {k: v for k, v in identity.items() if not covered(k, RESUMABLE)}
    identity[SWEEPER] = sweeper
    identity.update({PARAMS + str(k): "".join(str(v).split()) for k, v in params.items()})
    return identity


def record_sweep(sweep_dir: str | os.PathLike, identity: Mapping[str, str]) -> None:
    """Write ``D/sweep.yaml``: the identity the next run of ``D`` is checked against."""
    text = yaml.safe_dump({"sweep": dict(identity)}, sort_keys=False, width=10**6)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    write_text(Path(sweep_dir) / SWEEP_RECORD, text)


def check_sweep(sweep_dir: str | os.PathLike, identity: Mapping[str, str]) -> None:
    """ConfigError when ``D/sweep.yaml`` records another sweep than ``identity``; reads only.

    A sweep dir without a record (new, or written before records were kept) passes.
    """
    path = Path(sweep_dir) / SWEEP_RECORD
    try:
        recorded = yaml.safe_load(path.read_text())["sweep"]
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return
    if not isinstance(recorded, dict):
        return
    recorded = {str(k): str(v) for k, v in recorded.items()}
    differing = [
        f"{key}: {recorded.get(key, '(absent)')} there, {identity.get(key, '(absent)')} now"
        for key in [*recorded, *(k for k in identity if k not in recorded)]
        if recorded.get(key) != identity.get(key)
    ]
    if differing:
        raise ConfigError(
            f"hydra.sweep.dir: {sweep_dir} holds another sweep ({'; '.join(differing)}). "
            f"Run it with the overrides in {path} to resume it, or name another hydra.sweep.dir"
        )


def trial_state(run_dir: Path) -> tuple[str, float | None]:
    """``(state, mtime of summary.json)``: ``finished`` (a summary), ``interrupted`` (a checkpoint) or ``new``."""
    try:
        return FINISHED, (run_dir / SUMMARY).stat().st_mtime
    except OSError:
        pass
    try:
        checkpointed = any(_CHECKPOINT.fullmatch(p.name) for p in (run_dir / CHECKPOINTS).iterdir())
    except OSError:
        checkpointed = False
    return (INTERRUPTED if checkpointed else NEW), None


def snapshot(sweep_dir: str | os.PathLike) -> dict[Path, tuple[str, float | None]]:
    """The state of every trial dir under ``sweep_dir`` (none when it does not exist yet)."""
    if not Path(sweep_dir).is_dir():
        return {}
    return {path: trial_state(path) for path in find_trial_dirs(sweep_dir) if path != Path(sweep_dir)}


@dataclass(frozen=True)
class Tally:
    """How a run of a sweep dealt with its trials."""

    skipped: int  # finished before, left as they were
    resumed: int  # continued from a checkpoint (or a finished run trained further)
    started: int  # trained from the first step

    def __str__(self) -> str:
        return f"{self.skipped} skipped (finished before), {self.resumed} resumed, {self.started} started"


def tally(before: Mapping[Path, tuple[str, float | None]], sweep_dir: str | os.PathLike) -> Tally:
    """Compare the trials under ``sweep_dir`` now with ``before`` (a ``snapshot`` taken before the run)."""
    skipped = resumed = started = 0
    for path, (state, mtime) in snapshot(sweep_dir).items():
        was, was_mtime = before.get(path, (NEW, None))
        if was == FINISHED and state == FINISHED and mtime == was_mtime:
            skipped += 1
        elif was in (FINISHED, INTERRUPTED):
            resumed += 1
        else:
            started += 1
    return Tally(skipped, resumed, started)


def describe_before(before: Mapping[Path, tuple[str, float | None]]) -> str | None:
    """One line on a sweep dir that already holds trials, for the start of its run; None when it holds none."""
    finished = sum(1 for state, _ in before.values() if state == FINISHED)
    interrupted = sum(1 for state, _ in before.values() if state == INTERRUPTED)
    if not finished and not interrupted:
        return None
    return f"{finished} finished trial(s) are skipped, {interrupted} interrupted trial(s) resume from their checkpoints"
