"""Checkpoints of a run, and weights from another run's (``train.warm_start_from``).

``RUN_DIR/checkpoints/ckpt-N`` holds everything an exact resume needs: the model,
the optimizer (slots and all), the global step, the input iterator when
``train.resume_input=iterator``, and the run's state as JSON (the policies, the
evaluation count, the ``auto`` statistics). ``best/weights`` and ``final/weights``
hold the model alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

from factory.errors import ConfigError, TrainingError
from factory.run_dir import (
    BEST_WEIGHTS,
    CHECKPOINTS,
    FINAL_WEIGHTS,
    STATISTICS,
    read_json,
    write_json,
)

log = logging.getLogger("factory")

# The name the run's JSON state is tracked under in every checkpoint.
STATE = "state"
_STATE_KEY = f"{STATE}/.ATTRIBUTES/VARIABLE_VALUE"


def find_checkpoint(source: str) -> str | None:
    """The newest checkpoint prefix in a run dir, a checkpoints dir, or ``source`` itself if it is one."""
    path = Path(source).expanduser()
    for directory in (path / CHECKPOINTS, path):
        if directory.is_dir():
            prefix = tf.train.latest_checkpoint(str(directory))
            if prefix:
                return prefix
    return str(path) if tf.io.gfile.exists(str(path) + ".index") else None


def warm_start(model, source: str) -> str:
    """Load the weights (not the optimizer) of ``source`` into ``model``; returns the checkpoint read.

    ``ConfigError`` (at ``train.warm_start_from``) when there is no checkpoint or it
    does not fit this network.
    """
    prefix = find_checkpoint(source)
    if prefix is None:
        raise ConfigError(
            f"train.warm_start_from: no checkpoint found at {source!r}; give a run dir or a checkpoint prefix"
        )
    status = tf.train.Checkpoint(model=model).read(prefix)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise ConfigError(f"train.warm_start_from: {prefix} does not match this network ({str(err)[:200]})") from None
    status.expect_partial()
    return prefix


def statistics_from_checkpoint(run_dir: Path) -> None:
    """Write ``run_dir/statistics.json`` from the newest checkpoint's state when the file is gone.

    A resumed run then uses the statistics its weights were trained with rather than
    computing new ones from today's data. Nothing happens when the file exists, when
    there is no checkpoint, or when the checkpoint holds no statistics.
    """
    path = run_dir / STATISTICS
    latest = tf.train.latest_checkpoint(str(run_dir / CHECKPOINTS))
    if path.exists() or not latest:
        return
    reader = tf.train.load_checkpoint(latest)
    stats = json.loads(reader.get_tensor(_STATE_KEY)).get("statistics") if reader.has_tensor(_STATE_KEY) else None
    if stats:
        write_json(path, stats)
        log.info(f"restored {path.name} from the checkpoint {latest}")


class RunCheckpoint:
    """The checkpoints of one run dir: ``ckpt-N`` to resume from, and the best and final weights.

    ``iterator`` (or None) is the training input iterator, tracked when its position is
    to be restored with the rest. ``keep`` is how many ``ckpt-N`` are retained.
    """

    def __init__(self, run_dir: Path, *, model, optimizer, step: tf.Variable, iterator, keep: int):
        self.run_dir = run_dir
        self.model = model
        # The run's JSON state is this worker's own: created outside any strategy scope, nothing to mirror.
        self.state = tf.Variable("{}", dtype=tf.string, trainable=False, name="policy_state")
        tracked = {"model": model, "optimizer": optimizer, "step": step, STATE: self.state}
        if iterator is not None:  # the iterator's state (shuffle buffer and all) is in every checkpoint
            tracked["iterator"] = iterator
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(run_dir / CHECKPOINTS), max_to_keep=keep)
        self.best_path = str(run_dir / BEST_WEIGHTS)
        self.final_path = str(run_dir / FINAL_WEIGHTS)

    @property
    def latest(self) -> str | None:
        """The newest ``ckpt-N`` prefix, or None."""
        return self.manager.latest_checkpoint

    def restore(self) -> dict[str, Any] | None:
        """Restore the newest checkpoint; its JSON state, or None when there is none.

        ``TrainingError`` when the checkpoint does not fit this config.
        """
        latest = self.latest
        if not latest:
            return None
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            raise TrainingError(
                f"cannot resume from {latest}: it does not match this config ({str(err).splitlines()[0][:200]}). "
                "Resume with the config the run was started with, or use another hydra.run.dir"
            ) from None
        return json.loads(self.state.numpy().decode())

    def save(self, step: int, state: Mapping[str, Any]) -> None:
        """Write ``ckpt-<step>`` with ``state`` (and the run's ``auto`` statistics, if any) as its JSON state."""
        state = dict(state)
        stats = self.run_dir / STATISTICS
        if stats.exists():  # the `auto` statistics travel with the weights they were trained with
            state["statistics"] = read_json(stats)
        self.state.assign(json.dumps(state))
        self.manager.save(checkpoint_number=step)

    def write_best(self) -> None:
        tf.train.Checkpoint(model=self.model).write(self.best_path)

    def load_best(self) -> None:
        """Load the best weights into the model, if any were written."""
        if tf.io.gfile.exists(self.best_path + ".index"):
            tf.train.Checkpoint(model=self.model).read(self.best_path).expect_partial()

    def write_final(self) -> None:
        tf.train.Checkpoint(model=self.model).write(self.final_path)

    def load_final(self) -> None:
        tf.train.Checkpoint(model=self.model).read(self.final_path).expect_partial()
