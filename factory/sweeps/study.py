"""A sweep's Optuna study in a journal file, and a trial's line to it. No TensorFlow.

The sweeper ``hydra/sweeper=factory_optuna`` (``hydra_plugins/factory_optuna_sweeper``) keeps
its study in Optuna's ``JournalStorage``: one append-only file, ``SWEEP_DIR/optuna.journal``
unless ``hydra.sweeper.storage`` names another. Next to it:

``optuna.journal.flock``  flock'ed by whichever process appends to the journal (the sweep, or a
                          trial reporting a value); the kernel releases it when its process
                          dies, however it dies, so a killed sweep never leaves it stale
``optuna.journal.sweep``  flock'ed by the sweep running the study (``running_study``), with its
                          pid and command line: a second sweep of the same study is refused

A trial reports to its study from its own process (``trial_report_spec`` in the Hydra job,
``TrialReporter`` in training), rebuilding the study's pruner from the sweeper's settings
(``pruner_settings``, ``make_pruner``): Optuna keeps the pruner in the study object, not in the
journal. Optuna itself is an optional dependency (``factory[sweeps]``); this module loads it
only when a study is opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError, FactoryError
from factory.run_dir import command_line, lock_holder
from factory.sweeps.optuna_config import DEFAULTS, PRUNERS, SWEEPER_TARGET
from factory.validation import did_you_mean

JOURNAL = "optuna.journal"
_WRITE_LOCK = ".flock"
_SWEEP_LOCK = ".sweep"
_RUNG = "completed_rung_"  # Optuna's successive-halving record of the value a trial reached a rung with


def _get(node: Any, dotted: str) -> Any:
    """``node[a][b]`` for ``"a.b"`` (a plain mapping or an OmegaConf node), None where absent."""
    for part in dotted.split("."):
        if node is None:
            return None
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
    return node


def setting(sweeper: Any, key: str) -> Any:
    """The sweeper's setting ``key``, its default when absent or null."""
    value = _get(sweeper, key)
    return DEFAULTS.get(key) if value is None else value


# -- settings ------------------------------------------------------------------------------------


def _count(sweeper: Any, key: str, minimum: int, problems: list[str], auto: bool = False) -> Any:
    value = setting(sweeper, key)
    if auto and value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        also = " or auto" if auto else ""
        problems.append(f"hydra.sweeper.{key}: {value!r} is not an integer >= {minimum}{also}")
    return value


def pruner_settings(sweeper: Any) -> dict[str, Any] | None:
    """The pruner the sweeper's config asks for, as JSON-able settings; None when pruning is off.

    ``hydra.sweeper.pruner``: ``median`` (default), ``hyperband``, ``successive_halving`` or
    ``none``; its ``pruner_*`` keys as the sweeper's config documents them. ConfigError names
    every bad key.
    """
    name = setting(sweeper, "pruner")
    if name not in PRUNERS:
        raise ConfigError(
            f"hydra.sweeper.pruner: {name!r} is not one of {', '.join(PRUNERS)}{did_you_mean(name, PRUNERS)}"
        )
    if name == "none":
        return None
    problems: list[str] = []
    if name == "median":
        settings = {
            "name": name,
            "n_startup_trials": _count(sweeper, "pruner_n_startup_trials", 0, problems),
            "n_warmup_steps": _count(sweeper, "pruner_n_warmup_steps", 0, problems),
        }
    else:
        settings = {
            "name": name,
            "min_resource": _count(sweeper, "pruner_min_resource", 1, problems, auto=True),
            "reduction_factor": _count(sweeper, "pruner_reduction_factor", 2, problems),
        }
        if name == "hyperband":
            settings["max_resource"] = _count(sweeper, "pruner_max_resource", 1, problems, auto=True)
    if problems:
        raise ConfigError(problems)
    return settings


def make_pruner(settings: Mapping[str, Any] | None):
    """Optuna's pruner for ``pruner_settings``; ``NopPruner`` for None."""
    # optuna is optional (factory[sweeps]): loaded only where a study is opened
    from optuna import pruners

    if settings is None:
        return pruners.NopPruner()
    name = settings["name"]
    if name == "median":
        return pruners.MedianPruner(
            n_startup_trials=settings["n_startup_trials"], n_warmup_steps=settings["n_warmup_steps"]
        )
    if name == "successive_halving":
        return pruners.SuccessiveHalvingPruner(
            min_resource=settings["min_resource"], reduction_factor=settings["reduction_factor"]
        )
    return pruners.HyperbandPruner(
        min_resource=1 if settings["min_resource"] == "auto" else settings["min_resource"],
        max_resource=settings["max_resource"],
        reduction_factor=settings["reduction_factor"],
    )


# -- the journal ---------------------------------------------------------------------------------


def journal_path(storage: str | None, sweep_dir: str | os.PathLike, cwd: str | os.PathLike) -> Path:
    """The study's journal file: ``storage`` (a file path; relative to ``cwd``, the directory the
    sweep was started in), else ``SWEEP_DIR/optuna.journal``. ConfigError for a database URL or
    a directory."""
    if storage and "://" in str(storage):
        raise ConfigError(
            f"hydra.sweeper.storage: {storage} is a database URL; this sweeper keeps its study in a "
            "journal file: name a file path (e.g. studies/digits.journal), or leave it null for "
            f"SWEEP_DIR/{JOURNAL}"
        )
    path = Path(storage).expanduser() if storage else Path(sweep_dir) / JOURNAL
    path = path if path.is_absolute() else Path(cwd) / path
    if path.is_dir():
        raise ConfigError(
            f"hydra.sweeper.storage: {path} is a directory; name the study's journal file in it (e.g. {path / JOURNAL})"
        )
    return path


class JournalFlock:
    """The journal's write lock for Optuna's ``JournalFileBackend``: an exclusive ``flock`` on a file.

    Unlike Optuna's default (a symlink), the kernel drops it with its process: a sweep or trial
    killed while appending leaves no stale lock for the next one to wait out.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _mend_torn_tail(path: Path, lock: JournalFlock) -> None:
    """Cut a last line written in part (a disk full mid-append): Optuna would fail on the next one."""
    lock.acquire()
    try:
        data = path.read_bytes() if path.exists() else b""
        if data and not data.endswith(b"\n"):
            os.truncate(path, data.rfind(b"\n") + 1)
    finally:
        lock.release()


def journal_storage(path: str | os.PathLike, mend: bool = False):
    """Optuna's ``JournalStorage`` on the journal file ``path`` (created with its directory if need be).

    ``mend``: first cut a torn last line (only the sweep that holds ``running_study`` may).
    ConfigError when ``path`` is not a journal.
    """
    # optuna is optional (factory[sweeps]): loaded only where a study is opened
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = JournalFlock(path.with_name(path.name + _WRITE_LOCK))
    if mend:
        _mend_torn_tail(path, lock)
    try:
        with open(path, "ab+") as f:
            f.seek(0)
            first = f.readline()
        if first and "op_code" not in json.loads(first):  # Optuna would skip a bad line, then fail on the next
            raise ValueError("its first line is not a journal entry")
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ConfigError(
            f"hydra.sweeper.storage: {path} is not an Optuna journal file ({type(err).__name__}: {err}); "
            "name another file, or move this one away"
        ) from None


@contextlib.contextmanager
def running_study(journal: str | os.PathLike) -> Iterator[None]:
    """Hold the study of ``journal`` for this sweep: an exclusive ``flock`` on ``JOURNAL.sweep``.

    Another process holding it is a ``FactoryError`` naming it. The kernel releases the lock
    when this process ends, however it ends (``kill -9`` too): it is never stale, and a trial
    the study still calls running is one the previous sweep left behind.
    """
    path = Path(journal).with_name(Path(journal).name + _SWEEP_LOCK)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(fd)
        os.close(fd)
        pid = holder.split()[1] if holder.startswith("process ") else "PID"
        raise FactoryError(
            f"the study in {journal} is in use by {holder}: one sweep runs a study at a time; wait for it "
            f"to end, stop it (kill {pid}), or use another hydra.sweep.dir (or hydra.sweeper.storage)"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command_line()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# -- the job side --------------------------------------------------------------------------------


def trial_report_spec(hydra_cfg: Any) -> dict[str, Any] | None:
    """What a trial needs to report to its study, from its job's ``hydra`` node (``HydraConfig.get()``).

    None unless the job is a trial of a multirun whose sweeper is ``factory_optuna`` with a pruner.
    Otherwise JSON-able: ``{"journal": absolute path, "study": name, "trial": number, "pruner":
    pruner_settings}``; the trial number is the job's ``hydra.job.num`` (the sweeper launches
    each trial with its number).
    """
    sweeper = _get(hydra_cfg, "sweeper")
    if _get(sweeper, "_target_") != SWEEPER_TARGET or "MULTIRUN" not in str(_get(hydra_cfg, "mode")):
        return None
    pruner = pruner_settings(sweeper)
    number = _get(hydra_cfg, "job.num")
    if pruner is None or number is None:
        return None
    cwd = _get(hydra_cfg, "runtime.cwd") or os.getcwd()
    journal = journal_path(_get(sweeper, "storage"), str(_get(hydra_cfg, "sweep.dir")), cwd)
    study = str(setting(sweeper, "study_name"))
    return {"journal": str(journal.resolve()), "study": study, "trial": int(number), "pruner": pruner}


class TrialReporter:
    """A trial's line to its study: ``report(step, value)`` after each evaluation.

    ``spec`` is ``trial_report_spec``'s. FactoryError when the journal holds no such study or trial.
    """

    def __init__(self, spec: Mapping[str, Any]):
        # optuna is optional (factory[sweeps]): loaded only by trials that report to a study
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = dict(spec)
        self._storage = journal_storage(spec["journal"])
        try:
            study_id = self._storage.get_study_id_from_name(spec["study"])
            self._trial_id = self._storage.get_trial_id_from_study_id_trial_number(study_id, int(spec["trial"]))
        except KeyError:
            raise FactoryError(
                f"{spec['journal']}: study '{spec['study']}' has no trial {spec['trial']} to report to"
            ) from None
        self._study = optuna.load_study(
            study_name=spec["study"],
            storage=self._storage,
            sampler=optuna.samplers.RandomSampler(),  # a trial samples nothing
            pruner=make_pruner(spec["pruner"]),
        )
        self._trial = optuna.trial.Trial(self._study, self._trial_id)
        self._states = optuna.trial.TrialState
        self._maximize = self._study.direction == optuna.study.StudyDirection.MAXIMIZE

    def report(self, step: int, value: float) -> str | None:
        """Report ``value`` at ``step``; None to go on, or the one-line reason the study prunes the trial.

        A step reported before (a resumed trial evaluating again) keeps its first value, and the
        pruner judges again. A trial the study no longer holds as running is left alone (None).
        """
        trial = self._storage.get_trial(self._trial_id)
        if trial.state != self._states.RUNNING:
            return None
        if step not in trial.intermediate_values:
            self._trial.report(float(value), int(step))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy on values all NaN: the reason says so
            if not self._trial.should_prune():
                return None
        return self._reason()

    def _reason(self) -> str:
        trial = self._storage.get_trial(self._trial_id)
        step = trial.last_step
        where = f"trial {trial.number} at step {step}"
        if self.spec["pruner"]["name"] == "median":
            return f"pruned by the median pruner ({where}: {self._median_reason(trial, step)})"
        label = "hyperband" if self.spec["pruner"]["name"] == "hyperband" else "successive halving"
        return f"pruned by {label} ({where}: {self._rung_reason(trial, step)})"

    def _median_reason(self, trial, step: int) -> str:
        values = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
        if not values:
            return "every value it reported is NaN"
        best = max(values) if self._maximize else min(values)
        complete = self._study.get_trials(deepcopy=False, states=(self._states.COMPLETE,))
        others = [t.intermediate_values[step] for t in complete if step in t.intermediate_values]
        median = float(np.nanpercentile(np.asarray(others, dtype=float), 50)) if others else math.nan
        side = "below" if self._maximize else "above"
        return (
            f"its best so far, {best:.4g}, is {side} {median:.4g}, the median of the {len(others)} complete "
            f"trial(s) at that step"
        )

    def _rung_reason(self, trial, step: int) -> str:
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return "its value is NaN"
        rungs = sorted(int(k[len(_RUNG) :]) for k in trial.system_attrs if k.startswith(_RUNG))
        if not rungs:
            return f"{value:.4g}"
        key = f"{_RUNG}{rungs[-1]}"
        factor = self.spec["pruner"]["reduction_factor"]
        if self.spec["pruner"]["name"] == "hyperband":
            return f"{value:.4g} at rung {rungs[-1]} is not in the best 1/{factor} of its bracket's trials there"
        reached = [t.system_attrs[key] for t in self._study.get_trials(deepcopy=False) if key in t.system_attrs]
        keep = max(1, len(reached) // factor)
        return f"{value:.4g} at rung {rungs[-1]} is not among the best {keep} of the {len(reached)} trial(s) there"
