"""One training job: train, evaluate every N steps, stop early, checkpoint, resume exactly.

``train(config, run_dir)`` is the whole job; the Hydra app in ``cli`` is a thin
wrapper around it. It composes a ``Trainer`` (the model and its compiled steps
under a strategy), a ``RunCheckpoint``, the evaluation hooks (early stopping,
exports, the metrics record) and the ``Schedule`` that drives them, then
``close_run``. The steps are a custom ``tf.function`` loop rather than
``Model.fit`` because ``fit`` does not run under ``MultiWorkerMirroredStrategy``
with Keras 3, and because owning the loop lets the checkpoint hold everything a
bit-exact resume needs: weights, optimizer slots, the step, the input
iterator's position and the policies' state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from factory.config import Config, load_config
from factory.config.globs import missing_data
from factory.config.resume import check_run_dir
from factory.errors import ConfigError
from factory.run_dir import CONFIG, METRICS, owning, write_text
from factory.training.hooks import (
    EarlyStop,
    Exports,
    MetricsLog,
    Pruning,
    TrialReporter,
    evaluated_steps,
    rewind_metrics,
)
from factory.training.schedule import Schedule, load_run_state

log = logging.getLogger("factory")


def train(
    config: Config | Mapping[str, Any],
    run_dir: str | os.PathLike | None = None,
    reporter: TrialReporter | None = None,
) -> float:
    """Run (or resume) one training job; return the best value of the monitored metric.

    ``config`` is a composed config dict (validated here) or a ``Config``.
    ``run_dir`` holds everything the run writes (default: ``config['run_dir']``,
    else ``runs/<timestamp>``). Running again on the same ``run_dir`` resumes
    from its newest checkpoint, if the config is that of the run there
    (``factory.config.resume``); a finished run is not touched and its best value
    is returned. The run dir is this process's for the run (``run_dir.owning``;
    in a multi-worker run, each worker's own directory). Before TensorFlow loads:
    a local ``data`` glob that matches no file is a ``ConfigError``.

    ``reporter`` (a sweep trial's line to its study) gets every evaluation's monitored value and
    may stop the run as pruned (``hooks.Pruning``).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    if run_dir is None:
        run_dir = config.raw.get("run_dir") or time.strftime("runs/%Y-%m-%d_%H-%M-%S")
    run_dir = Path(run_dir)
    problems = missing_data(config)
    if problems:
        raise ConfigError(problems)
    # The workers of a multi-worker run share the run dir: each locks the directory it writes, once known.
    multi_worker = config.train.strategy == "multi_worker_mirrored"
    with contextlib.ExitStack() as held:
        if not multi_worker:
            held.enter_context(owning(run_dir, record=False))
        done = check_run_dir(config, run_dir)
        if done is not None:
            log.info(done.message)
            return done.best_value
        if not multi_worker:
            held.enter_context(owning(run_dir))
        return _train(config, run_dir, held, reporter)


class _ConfigFirst:
    """The run's checkpoints, with ``config.yaml`` written just before the first checkpoint.

    A resume refused or failed before it (a config of another experiment, bad records, a
    checkpoint that does not fit) leaves the previous ``config.yaml`` as it was; a checkpoint
    never exists without the config it was trained with.
    """

    def __init__(self, checkpoints, path: Path, config: Config):
        self._checkpoints = checkpoints
        self._path = path
        self._config = config
        self._written = False

    @property
    def latest(self) -> str | None:
        return self._checkpoints.latest

    def record(self) -> None:
        """Write ``config.yaml`` (once): the run trains with this config."""
        if not self._written:
            write_text(self._path, yaml.safe_dump(dict(self._config.raw), sort_keys=False))
            self._written = True

    def save(self, step: int, state: Mapping[str, Any]) -> None:
        self.record()
        self._checkpoints.save(step, state)


def _train(config: Config, run_dir: Path, held: contextlib.ExitStack, reporter: TrialReporter | None) -> float:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from factory.training.checkpointing import RunCheckpoint  # defers TensorFlow
    from factory.training.closing import close_run  # defers TensorFlow
    from factory.training.summaries import TensorBoard  # defers TensorFlow
    from factory.training.trainer import Trainer  # defers TensorFlow

    trainer = Trainer(config, run_dir)
    directory = trainer.run_dir  # a worker's own, in a multi-worker run
    if config.train.strategy == "multi_worker_mirrored":
        held.enter_context(owning(directory))
    checkpoints = RunCheckpoint(
        directory,
        model=trainer.model,
        optimizer=trainer.optimizer,
        step=trainer.global_step,
        iterator=trainer.train_iter,
        keep=config.train.keep_checkpoints,
    )
    early_stop = EarlyStop(config.early_stop, agree=trainer.agree, save_best_weights=checkpoints.write_best)
    exports = Exports(
        config.export,
        trainer.make_exporter,
        keep_final_weights=checkpoints.write_final,
        load_final_weights=checkpoints.load_final,
    )
    pruning = Pruning(reporter, config.early_stop.monitor, agree=trainer.agree) if reporter else None
    hooks = [early_stop, *([pruning] if pruning else []), exports]
    state = checkpoints.restore()
    resumed = state is not None
    evals = 0
    if resumed:
        trainer.reapply_learning_rate()
        evals = load_run_state(state, hooks)
        rewind_metrics(directory / METRICS, trainer.step)
    else:
        rewind_metrics(directory / METRICS, 0)  # rows of an attempt killed before its first checkpoint
        trainer.warm_start()
    saving = _ConfigFirst(checkpoints, directory / CONFIG, config)
    tensorboard = TensorBoard(directory, trainer.optimizer)
    step = trainer.step
    trainer.start_input(step)
    if resumed:
        log.info(f"resumed from step {step} (evaluation {evals}) in {directory}")
    started = time.perf_counter()
    metrics_log = MetricsLog(directory / METRICS, early_stop, tensorboard.evaluation, started)
    schedule = Schedule(config.train, trainer, saving, [*hooks, metrics_log], tensorboard, evals)
    try:
        stopped = schedule.run(
            resumed,
            evaluated_steps(directory / METRICS),
            stopped=early_stop.stopped or bool(pruning and pruning.pruned),
        )
        saving.record()  # before summary.json, also when the run had nothing left to checkpoint
        return close_run(
            config,
            trainer,
            checkpoints,
            early_stop,
            exports,
            evals=schedule.evals,
            stopped=stopped,
            pruned=pruning.reason if pruning else None,
            started=started,
            save=schedule.save,
        )
    finally:
        tensorboard.close()
