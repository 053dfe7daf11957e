"""The ask-launch-tell loop of the sweeper ``hydra/sweeper=factory_optuna``. No TensorFlow.

``optimize`` opens (or creates) the study in its journal file (``factory.sweeps.study``) and
brings it to ``n_trials`` trials:

1. trials the study still calls running were left by a sweep that was killed: each is launched
   again with its parameters, as the same job number, so into the same trial dir, where
   training resumes from its checkpoint (or reports the run finished);
2. then new trials are asked, ``n_jobs`` at a time, and launched as one batch (a launcher such
   as joblib runs a batch in parallel).

A trial's job number is its trial number: the trial dir of the default ``hydra.sweep.subdir``
is ``SWEEP_DIR/<trial number>``. When a job returns, its ``summary.json`` says whether the
pruner stopped it (``"pruned": true``: the study is told ``PRUNED``); else the study is told
the job's value (the run's best monitored value; NaN is a failure). A job that raised is a
failed trial and the sweep goes on. A launch that raised as a whole (a job's error exit ends
its batch) is judged trial by trial from the trial dirs: finished, failed (its log has an
error), or not run to the end, which is launched once more.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from factory.errors import ConfigError, FactoryError
from factory.run_dir import SUMMARY, read_json, write_text
from factory.sweeps.optuna_config import DIRECTIONS, SAMPLERS
from factory.sweeps.search_space import SearchSpace
from factory.sweeps.study import (
    journal_path,
    journal_storage,
    make_pruner,
    pruner_settings,
    running_study,
    setting,
)
from factory.sweeps.trials import FAILED, read_trial
from factory.validation import did_you_mean

RESULTS = "optimization_results.yaml"  # in the sweep dir: the best trial, as Hydra's Optuna sweeper wrote it
OVERRIDES = "overrides"  # the user attribute of a trial that holds its sampled overrides


class NoTrialCompleted(FactoryError):
    """Every trial of the study failed or was pruned, and some failed in this sweep."""

    exit_code = 1


@dataclass(frozen=True)
class SweepSettings:
    """The sweeper's config, checked (``FactoryOptunaSweeperConf`` documents each setting)."""

    journal: Path
    direction: str
    study_name: str
    n_trials: int
    n_jobs: int
    sampler: str
    seed: int | None
    n_startup_trials: int
    pruner: Mapping[str, Any] | None


def sweep_settings(sweeper: Mapping[str, Any], sweep_dir: str, cwd: str) -> SweepSettings:
    """``SweepSettings`` from the sweeper's config values (``study.DEFAULTS`` for those absent);
    ConfigError lists every bad one."""
    problems = []
    values = {key: setting(sweeper, key) for key in ("direction", "study_name", "sampler", "seed")}
    for key, minimum in (("n_trials", 0), ("n_jobs", 1), ("n_startup_trials", 0)):
        values[key] = value = setting(sweeper, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(f"hydra.sweeper.{key}: {value!r} is not an integer >= {minimum}")
    seed = values["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        problems.append(f"hydra.sweeper.seed: {seed!r} is not an integer (or null)")
    for key, allowed in (("direction", DIRECTIONS), ("sampler", SAMPLERS)):
        if values[key] not in allowed:
            hint = did_you_mean(str(values[key]), allowed)
            problems.append(f"hydra.sweeper.{key}: {values[key]!r} is not one of {', '.join(allowed)}{hint}")
    try:
        values["pruner"] = pruner_settings(sweeper)
    except ConfigError as err:
        problems.extend(err.problems)
    if problems:
        raise ConfigError(problems)
    return SweepSettings(journal=journal_path(setting(sweeper, "storage"), sweep_dir, cwd), **values)


def make_sampler(settings: SweepSettings, space: SearchSpace, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler ``settings`` name, seeded with ``seed + offset`` (``offset``: the trials the study
    already has, so that a continued study does not draw its start-up points again)."""
    seed = None if settings.seed is None else settings.seed + offset
    samplers = optuna.samplers
    if settings.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if settings.sampler == "grid":
        return samplers.GridSampler(space.grid(), seed=seed)
    if settings.sampler == "cmaes":
        if importlib.util.find_spec("cmaes") is None:  # optional: Optuna's CMA-ES sampler needs it
            raise ConfigError(
                "hydra.sweeper.sampler: cmaes needs the cmaes package, which is not installed: pip install cmaes"
            )
        # choice() parameters are drawn at random: CMA-ES samples numbers only
        return samplers.CmaEsSampler(
            n_startup_trials=settings.n_startup_trials, seed=seed, warn_independent_sampling=False
        )
    return samplers.TPESampler(n_startup_trials=settings.n_startup_trials, seed=seed)


@dataclass(frozen=True)
class Outcome:
    """What became of one launched job: its ``output_dir``, and its return ``value`` or ``error``.
    ``aborted``: the launch of its batch raised before the job's own result came back."""

    output_dir: Path
    value: Any = None
    error: str | None = None
    aborted: bool = False


# launch(overrides of each job, job number of the first) -> one Outcome per job, in order
Launch = Callable[[list[list[str]], int], list[Outcome]]


@dataclass(frozen=True)
class _Pending:
    number: int
    sampled: tuple[str, ...]


_RETRY = "retry"


def _verdict(outcome: Outcome) -> tuple[TrialState, float | None] | str:
    """``(state, value)`` to tell the study, or ``_RETRY`` for a job that did not run to its end."""
    try:
        summary = read_json(outcome.output_dir / SUMMARY)
    except (OSError, ValueError):
        summary = None
    if isinstance(summary, dict):
        if summary.get("pruned") is True:
            return TrialState.PRUNED, None
        value = outcome.value if outcome.error is None and not outcome.aborted else summary.get("best_value")
    elif outcome.aborted:
        failed = outcome.output_dir.is_dir() and read_trial(outcome.output_dir).status == FAILED
        return (TrialState.FAIL, None) if failed else _RETRY
    elif outcome.error is not None:
        return TrialState.FAIL, None
    else:
        value = outcome.value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return TrialState.FAIL, None
    return (TrialState.FAIL, None) if math.isnan(value) else (TrialState.COMPLETE, value)


def _contiguous(batch: Sequence[_Pending]) -> list[list[_Pending]]:
    """``batch`` in runs of consecutive trial numbers: each run is one launch, numbered from its first."""
    groups: list[list[_Pending]] = []
    for pending in sorted(batch, key=lambda p: p.number):
        if groups and groups[-1][-1].number + 1 == pending.number:
            groups[-1].append(pending)
        else:
            groups.append([pending])
    return groups


def _counts(trials: Sequence[optuna.trial.FrozenTrial], running: str = "running") -> str:
    """``3 complete, 1 pruned, 1 <running>``: the trials by state, states without a trial left out."""
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: running,
    }
    counts = [(sum(t.state == state for t in trials), name) for state, name in names.items()]
    return ", ".join(f"{n} {name}" for n, name in counts if n)


def _open_study(settings: SweepSettings) -> optuna.Study:
    storage = journal_storage(settings.journal, mend=True)
    study = optuna.create_study(
        storage=storage,
        study_name=settings.study_name,
        direction=settings.direction,
        pruner=make_pruner(settings.pruner),
        load_if_exists=True,
    )
    if study.direction.name.lower() != settings.direction:
        raise ConfigError(
            f"hydra.sweeper.direction: study '{settings.study_name}' in {settings.journal} was created to "
            f"{study.direction.name.lower()}, this sweep would {settings.direction}; use another "
            "hydra.sweeper.study_name (or hydra.sweep.dir)"
        )
    return study


def optimize(
    settings: SweepSettings,
    space: SearchSpace,
    sweep_dir: str,
    launch: Launch,
    objective: str | None = None,
) -> optuna.Study:
    """Bring the study to ``settings.n_trials`` trials (see the module docstring); returns it.

    ``objective`` names the value in the last line (the monitored metric). ``NoTrialCompleted``
    when no trial of the study completed and some failed in this sweep.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make_sampler(settings, space)  # a bad sampler is refused before the study is touched
    n_trials = min(settings.n_trials, space.grid_size()) if settings.sampler == "grid" else settings.n_trials
    with running_study(settings.journal):
        study = _open_study(settings)
        existing = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
        study.sampler = make_sampler(settings, space, offset=len(existing))
        pending = [
            _Pending(t.number, tuple(t.user_attrs.get(OVERRIDES) or space.sampled(t.params)))
            for t in existing
            if t.state == TrialState.RUNNING
        ]
        to_ask = max(0, n_trials - len(existing))
        counts = _counts(existing, running="interrupted: resumed")
        pruner = settings.pruner["name"] if settings.pruner else "no"
        print(
            f"sweep {sweep_dir}: study '{settings.study_name}' has {len(existing)} of {n_trials} trials"
            f"{f' ({counts})' if counts else ''}; {to_ask} to start ({settings.sampler} sampler, {pruner} pruner)",
            flush=True,
        )
        retried: set[int] = set()
        failed = 0
        while pending or to_ask:
            batch, pending = pending[: settings.n_jobs], pending[settings.n_jobs :]
            while len(batch) < settings.n_jobs and to_ask:
                trial = study.ask(space.distributions)
                sampled = space.sampled(trial.params)
                trial.set_user_attr(OVERRIDES, sampled)
                batch.append(_Pending(trial.number, tuple(sampled)))
                to_ask -= 1
            for group in _contiguous(batch):
                outcomes = launch([[*space.fixed, *p.sampled] for p in group], group[0].number)
                for job, outcome in zip(group, outcomes, strict=True):
                    verdict = _verdict(outcome)
                    if verdict == _RETRY and job.number not in retried:
                        retried.add(job.number)
                        pending.append(job)
                        continue
                    state, value = (TrialState.FAIL, None) if verdict == _RETRY else verdict
                    failed += state == TrialState.FAIL
                    _tell(study, job.number, state, value)
        _finish(study, sweep_dir, objective, failed)
    return study


def _tell(study: optuna.Study, number: int, state: TrialState, value: float | None) -> None:
    try:
        study.tell(number, value, state=state)
    except RuntimeError as err:  # the grid sampler's way of saying the grid is done: the trial is told
        if "Study.stop" not in str(err):
            raise


def _finish(study: optuna.Study, sweep_dir: str, objective: str | None, failed: int) -> None:
    """The last line, and ``SWEEP_DIR/optimization_results.yaml`` with the best trial."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = _counts(trials)
    tally = f"{len(trials)} trials{': ' + counts if counts else ''}"
    if not complete:
        if failed:
            raise NoTrialCompleted(
                f"sweep {sweep_dir}: no trial of study '{study.study_name}' completed ({tally}); "
                "each failed trial's train.log says why"
            )
        print(f"sweep {sweep_dir}: no trial completed yet; {tally}", flush=True)
        return
    best = study.best_trial
    overrides = list(best.user_attrs.get(OVERRIDES) or [])
    results = {
        "name": "factory_optuna",
        "study_name": study.study_name,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": dict(best.params),
        "best_overrides": overrides,
    }
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    write_text(Path(sweep_dir) / RESULTS, yaml.safe_dump(results, sort_keys=False))
    what = f"{objective} {best.value:.4g}" if objective else f"{best.value:.4g}"
    shown = f" ({' '.join(overrides)})" if overrides else ""
    print(f"sweep {sweep_dir}: best trial {best.number}: {what}{shown}; {tally}", flush=True)
