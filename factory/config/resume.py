"""Whether a run dir may be trained with a config: a resume continues the same experiment or refuses.

A run dir that holds ``config.yaml`` holds a previous run of some config. ``check_run_dir``
compares the config about to train with it, key by key, before TensorFlow loads:

- keys in ``RESUMABLE`` may differ: they say how long to train, how often to evaluate,
  checkpoint and report, when to stop and what to export, never what is trained;
- keys listed in ``train.resume_changes`` may differ too (say
  ``[train.optimizer.learning_rate]``): the user's explicit word;
- ``run_dir`` (where the run is, not what it is) and Hydra's own keys are not compared;
- any other difference is a ``FactoryError`` naming every differing key with both values.

A run dir whose ``summary.json`` exists and that the config would not train further (its
``train.max_steps`` is not above the steps done, early stopping stopped it and is still
on, or a sweep's pruner stopped it) is finished: ``check_run_dir`` returns a ``Finished`` and nothing must be written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory.config.declaration import fill
from factory.config.settings import Config
from factory.errors import FactoryError
from factory.run_dir import CONFIG, SUMMARY, read_json

# The keys (or groups: every key under them) a resumed run may change, and why that is safe.
RESUMABLE: dict[str, str] = {
    "train.max_steps": "train longer, or end sooner (a cosine schedule stretches to the new end)",
    "train.eval_every_steps": "when to evaluate, not what is trained",
    "train.steps_per_execution": "how many steps one call runs; the same steps",
    "train.log_every_steps": "how often the loss is logged",
    "train.checkpoint_every_steps": "how often checkpoints are written",
    "train.keep_checkpoints": "how many checkpoints are kept",
    "train.progress": "how progress is shown",
    "train.resume_changes": "what a resume may change",
    "early_stop.enabled": "whether to stop early (the metric is still followed when off)",
    "early_stop.patience": "when to stop",
    "early_stop.min_delta": "what counts as an improvement from now on",
    "early_stop.baseline": "when to stop",
    "early_stop.start_from_eval": "when to stop",
    "export.best.enabled": "what is exported, not what is trained",
    "export.best.keep": "how many exports are kept",
    "export.best.min_delta": "what counts as an improvement for the next export",
    "export.latest": "what is exported, not what is trained",
    "export.final.enabled": "what is exported, not what is trained",
    "export.final.weights": "what is exported, not what is trained",
    "export.final.min_delta": "what counts as new best weights for the final export",
    "export.output_names": "how the exports name their outputs",
    "export.verify_tolerance": "how exports are checked",
    "export.model_name": "the model name in the manifest's example request",
    "data.test": "evaluated once at the end with the best weights; training never reads it",
    "compare_with": "reference models fitted at the end; training never sees them",
    "cluster.address": "where the workers run, not what they train",
    "cluster.cpus_per_worker": "the CPUs reserved for each worker, not what it trains",
}

# Keys never compared: where the run is, and what Hydra adds.
IGNORED = ("run_dir", "hydra")


@dataclass(frozen=True)
class Finished:
    """A finished run dir: the config would train no further; nothing is to be written."""

    run_dir: Path
    steps: int
    best_value: float
    pruned: bool = False

    @property
    def message(self) -> str:
        if self.pruned:
            return f"already finished at step {self.steps}: pruned by its sweep (summary: {self.run_dir / SUMMARY})"
        return (
            f"already finished at step {self.steps}; nothing to train (summary: {self.run_dir / SUMMARY}); "
            "to train on, raise train.max_steps (and set early_stop.enabled=false if it stopped early)"
        )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: leaf value}``; lists are leaves (``network.hidden: [32]``), empty mappings too."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def covered(key: str, names: Iterable[str]) -> bool:
    """True when ``key`` is one of ``names`` or lies under one of them."""
    return any(key == name or key.startswith(name + ".") for name in names)


_MISSING = object()


def differences(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, previous value, current value)`` of every leaf that differs (``_MISSING`` when absent)."""
    before, after = flatten(previous), flatten(current)
    out = []
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key, _MISSING), after.get(key, _MISSING)
        if not _same(old, new):
            out.append((key, old, new))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return (type(a) is type(b) and a == b) or (_number(a) and _number(b) and a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def read_previous(run_dir: Path) -> dict[str, Any] | None:
    """The run dir's ``config.yaml`` with absent keys at their defaults; None without one."""
    path = run_dir / CONFIG
    if not path.is_file():
        return None
    try:
        previous = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise FactoryError(
            f"{path}: cannot be read ({str(err).splitlines()[0]}); it records the config of the run in "
            f"{run_dir}: restore it, or use another hydra.run.dir"
        ) from None
    if not isinstance(previous, dict):
        raise FactoryError(
            f"{path}: does not hold a config; it records the config of the run in {run_dir}: "
            "restore it, or use another hydra.run.dir"
        )
    return fill(previous, Config)


def refused(config: Config, previous: Mapping[str, Any]) -> list[str]:
    """One ``key: X in config.yaml, Y now`` per difference neither ``RESUMABLE`` nor in ``train.resume_changes``."""
    allowed = [*RESUMABLE, *config.train.resume_changes]
    return [
        f"{key}: {_show(old)} in config.yaml, {_show(new)} now"
        for key, old, new in differences(previous, config.raw)
        if not covered(key, IGNORED) and not covered(key, allowed)
    ]


def check_run_dir(config: Config, run_dir: str | os.PathLike) -> Finished | None:
    """Check ``config`` against what ``run_dir`` holds (see the module docstring). Reads only.

    Returns a ``Finished`` when there is nothing to train, else None (a new run, or a resume).

    Raises:
        FactoryError: the run dir holds another experiment; one line naming each differing
            key with both values, and what to do.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FactoryError(f"{run_dir}: is a file, not a run dir; name a directory in hydra.run.dir")
    previous = read_previous(run_dir)
    if previous is None:
        return None
    problems = refused(config, previous)
    if problems:
        raise FactoryError(
            f"{run_dir} holds another experiment: {'; '.join(problems)}. Resume with the config of "
            f"{run_dir / CONFIG}, list the keys meant to change in train.resume_changes "
            "(e.g. train.resume_changes=[train.optimizer.learning_rate]), or use another hydra.run.dir"
        )
    return finished(config, run_dir)


def finished(config: Config, run_dir: Path) -> Finished | None:
    """A ``Finished`` when ``summary.json`` exists and ``config`` would train no further."""
    path = run_dir / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = read_json(path)
        steps = int(summary["steps"])
        stopped = bool(summary.get("stopped_early"))
        pruned = bool(summary.get("pruned"))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # unreadable: the run trains (and rewrites it)
    if config.train.max_steps > steps and not (stopped and config.early_stop.enabled) and not pruned:
        return None
    best = summary.get("best_value")
    return Finished(run_dir, steps, float(best) if _number(best) else float("nan"), pruned)
