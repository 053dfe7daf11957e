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
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

from factory.errors import ConfigError, TrainingError, disk_full, is_disk_full
from factory.features.reading import first_line
from factory.run_dir import (
    BEST_WEIGHTS,
    CHECKPOINTS,
    FINAL_WEIGHTS,
    STATISTICS,
    read_json,
    write_json,
)
from factory.training.randomness import random_state

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
    """Write ``run_dir/statistics.json`` from the newest readable checkpoint's state when the file is gone.

    A resumed run then uses the statistics its weights were trained with rather than
    computing new ones from today's data. Nothing happens when the file exists, when
    there is no checkpoint, or when the checkpoint holds no statistics.
    """
    path = run_dir / STATISTICS
    if path.exists():
        return
    for number in sorted(_numbers(run_dir / CHECKPOINTS), reverse=True):
        prefix = str(run_dir / CHECKPOINTS / f"ckpt-{number}")
        if _missing_files(prefix):
            continue
        try:  # the state tensor alone, not the weights
            reader = tf.train.load_checkpoint(prefix)
            state = json.loads(reader.get_tensor(_STATE_KEY)) if reader.has_tensor(_STATE_KEY) else {}
        except Exception:  # damaged: the restore reports it; an older checkpoint may hold the statistics
            continue
        stats = state.get("statistics")
        if stats:
            write_json(path, stats)
            log.info(f"restored {path.name} from the checkpoint {prefix}")
        return


_CKPT_FILE = re.compile(r"ckpt-(\d+)\.(?:index|data-\d+-of-\d+)")
DAMAGED = "damaged"  # checkpoints that do not read back are moved here, never deleted
# What reading a damaged file raises (as opposed to a variable that does not fit the model).
_READ_ERRORS = (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.NotFoundError, IndexError)


def _numbers(directory: Path) -> set[int]:
    """The ``N`` of every ``ckpt-N`` with a file in ``directory`` or listed in its state file."""
    found = set()
    if directory.is_dir():
        for path in directory.iterdir():
            match = _CKPT_FILE.fullmatch(path.name)
            if match:
                found.add(int(match.group(1)))
    state = tf.train.get_checkpoint_state(str(directory))
    for prefix in list(state.all_model_checkpoint_paths) if state else []:
        match = _CKPT_FILE.fullmatch(Path(prefix).name + ".index")
        if match:
            found.add(int(match.group(1)))
    return found


def _missing_files(prefix: str) -> str | None:
    """What is missing of the checkpoint ``prefix``'s files (None when its index and data are there)."""
    path = Path(prefix)
    data = list(path.parent.glob(path.name + ".data-*"))
    if not path.with_name(path.name + ".index").exists():
        return "its .index file is missing" if data else "its files are gone"
    return None if data else "its .data file is missing"


def unreadable(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` does not read back (None when every tensor does). Reads it all."""
    missing = _missing_files(prefix)
    if missing:
        return missing
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype != tf.variant:  # an iterator's state: read back by the restore itself
                reader.get_tensor(name)
    except Exception as err:  # any failure to read is damage: truncated, corrupt, unreadable
        return f"it does not read back ({first_line(err)[:160]})"
    return None


def remove_temporaries(directory: Path) -> None:
    """Remove what an interrupted or failed save left: ``ckpt-N_temp/`` and ``*.tempstate*`` files."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.is_dir() and path.name.endswith("_temp"):
            shutil.rmtree(path, ignore_errors=True)
        elif ".tempstate" in path.name:
            path.unlink(missing_ok=True)


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
        rng = random_state(model)
        if rng:  # dropout masks and other draws continue where they were
            tracked["rng"] = rng
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.directory = run_dir / CHECKPOINTS
        self.keep = keep
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=keep)
        self.best_path = str(run_dir / BEST_WEIGHTS)
        self.final_path = str(run_dir / FINAL_WEIGHTS)

    @property
    def latest(self) -> str | None:
        """The newest ``ckpt-N`` prefix, or None."""
        return self.manager.latest_checkpoint

    def restore(self) -> dict[str, Any] | None:
        """Restore the newest checkpoint that reads back; its JSON state, or None when there is none.

        A newer checkpoint that does not read back (a truncated ``.data``, a missing
        ``.index``, files gone) is reported by file and reason and moved to
        ``checkpoints/damaged/`` (never deleted), and the next older one is tried.
        ``TrainingError`` when a checkpoint reads back but its variables do not fit this
        model (a config mismatch), or when none of the checkpoints reads back.
        """
        remove_temporaries(self.directory)
        numbers = sorted(_numbers(self.directory), reverse=True)
        if not numbers:
            return None
        damaged = []
        for number in numbers:
            prefix = str(self.directory / f"ckpt-{number}")
            problem = _missing_files(prefix)
            if problem is None:
                try:
                    self.checkpoint.restore(prefix).assert_existing_objects_matched()
                    break
                except (AssertionError, ValueError, tf.errors.OpError, IndexError) as err:
                    if isinstance(err, _READ_ERRORS):
                        problem = f"it does not read back ({first_line(err)[:160]})"
                    else:  # a mismatch, unless reading it all shows damage
                        problem = unreadable(prefix)
                        if problem is None:
                            raise TrainingError(
                                f"cannot resume from {prefix}: its variables do not match this model "
                                f"({first_line(err)[:200]}). "
                                "Resume with the config the run was started with, or use another hydra.run.dir"
                            ) from None
            damaged.append((prefix, problem))
        else:
            listed = "; ".join(f"{Path(p).name}: {why}" for p, why in damaged)
            raise TrainingError(
                f"no checkpoint in {self.directory} reads back ({listed}); they are left in place. "
                "Start the run in another hydra.run.dir, or delete the checkpoints to start this one over"
            )
        for bad, problem in damaged:
            moved = self._move_aside(bad)
            where = f"moved to {moved}" if moved else "nothing to move"
            log.warning(f"checkpoint {bad} is damaged: {problem}; {where}; resuming from {Path(prefix).name}")
        if damaged:
            self._forget(prefix)
        return json.loads(self.state.numpy().decode())

    def _move_aside(self, prefix: str) -> Path | None:
        """Move the files of ``prefix`` into ``checkpoints/damaged/``; the directory, or None when none exist."""
        path = Path(prefix)
        files = [*path.parent.glob(path.name + ".index"), *path.parent.glob(path.name + ".data-*")]
        if not files:
            return None
        target = self.directory / DAMAGED
        target.mkdir(exist_ok=True)
        for file in files:
            destination = target / file.name
            n = 1
            while destination.exists():
                destination = target / f"{file.name}.{n}"
                n += 1
            os.replace(file, destination)
        return target

    def _forget(self, newest: str) -> None:
        """Make ``newest`` the state file's latest checkpoint, listing only those still present."""
        kept = sorted(
            (str(self.directory / f"ckpt-{n}") for n in _numbers(self.directory)),
            key=lambda p: int(p.rsplit("-", 1)[1]),
        )
        last = int(newest.rsplit("-", 1)[1])
        kept = [p for p in kept if not _missing_files(p) and int(p.rsplit("-", 1)[1]) <= last]
        tf.compat.v1.train.update_checkpoint_state(str(self.directory), newest, all_model_checkpoint_paths=kept)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=self.keep)

    def save(self, step: int, state: Mapping[str, Any]) -> None:
        """Write ``ckpt-<step>`` with ``state`` (and the run's ``auto`` statistics, if any) as its JSON state.

        On a full disk nothing of the new checkpoint is left (the older ones are intact) and
        the error is ``StorageError``.
        """
        state = dict(state)
        stats = self.run_dir / STATISTICS
        if stats.exists():  # the `auto` statistics travel with the weights they were trained with
            state["statistics"] = read_json(stats)
        self.state.assign(json.dumps(state))
        try:
            self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as err:
            if not is_disk_full(err):
                raise
            remove_temporaries(self.directory)
            for partial in self.directory.glob(f"ckpt-{step}.*"):
                partial.unlink(missing_ok=True)
            raise disk_full(self.directory / f"ckpt-{step}") from None

    def write_best(self) -> None:
        _write_weights(self.model, self.best_path)

    def load_best(self) -> None:
        """Load the best weights into the model, if any were written."""
        prefix = _weights_prefix(self.best_path)
        if prefix:
            tf.train.Checkpoint(model=self.model).read(prefix).expect_partial()

    def write_final(self) -> None:
        _write_weights(self.model, self.final_path)

    def load_final(self) -> None:
        tf.train.Checkpoint(model=self.model).read(_weights_prefix(self.final_path) or self.final_path).expect_partial()


def _write_weights(model, prefix: str) -> None:
    """Write the model's weights to ``prefix`` (``.../best/weights``) whole or not at all.

    They are written into a fresh directory beside the old one, which is then swapped in:
    ``best.new/`` → ``best/`` (the old one is ``best.old/`` for the moment between the two
    renames; ``_weights_prefix`` reads it if a crash came in between).
    """
    path = Path(prefix)
    final, new, old = (
        path.parent,
        path.parent.with_name(path.parent.name + ".new"),
        path.parent.with_name(path.parent.name + ".old"),
    )
    shutil.rmtree(new, ignore_errors=True)
    try:
        tf.train.Checkpoint(model=model).write(str(new / path.name))
    except (OSError, tf.errors.OpError) as err:
        shutil.rmtree(new, ignore_errors=True)
        if is_disk_full(err):
            raise disk_full(final) from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _weights_prefix(prefix: str) -> str | None:
    """``prefix`` when its weights are there, else the copy a crash mid-swap left in ``<dir>.old``, else None."""
    path = Path(prefix)
    for candidate in (path, path.parent.with_name(path.parent.name + ".old") / path.name):
        if candidate.with_name(candidate.name + ".index").exists():
            return str(candidate)
    return None
