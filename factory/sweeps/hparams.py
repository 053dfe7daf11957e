"""A sweep's trials in TensorBoard's HParams dashboard. No TensorFlow.

Each trial of a multirun writes its hyperparameters (its sweep's overrides) as the HParams
plugin's session-start info into ``RUN_DIR/tensorboard``; its evaluation scalars are in
``RUN_DIR/tensorboard/eval`` already, one tag per metric. TensorBoard opened on the sweep
directory (``tensorboard --logdir SWEEP_DIR``, or any directory above it) takes each run
holding session-start info as a session (``<trial>/tensorboard``) and the scalars of the runs
below it as the session's metrics: the monitored one is ``eval/<monitor>``, and the dashboard
shows the value of the last evaluation (the trial's best is in ``factory summarize``). One
session group per ``trial_id`` makes one row per trial.

No experiment summary (the dashboard's columns, the hparams' domains, the metrics) is
written: TensorBoard infers it from every session it finds, which covers trials that
sample their values (Optuna's) and several sweeps under one logdir, where a written
experiment would hide the hparams of all but one of them.

The file is written with TensorBoard's protos and its record framing, not its
``EventFileWriter``: that opens its file through ``tensorboard.compat.tf``, which is
TensorFlow itself wherever TensorFlow is installed.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from factory.run_dir import TENSORBOARD, atomic_path

if TYPE_CHECKING:
    from tensorboard.plugins.hparams import plugin_data_pb2

# The HParams event file of a trial, in RUN_DIR/tensorboard: TensorBoard reads every file whose
# name holds "tfevents"; the suffix tells this one from the summaries' files.
EVENTS_PREFIX = "events.out.tfevents."
HPARAMS_SUFFIX = ".hparams"

HParamValue = bool | int | float | str


def _check(hparams: Mapping[str, HParamValue], trial_id: str) -> None:
    if not isinstance(trial_id, str) or not trial_id:
        raise TypeError(f"trial_id: expected a non-empty string, got {trial_id!r}")
    for key, value in hparams.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"hparams: keys are non-empty strings, got {key!r}")
        if not isinstance(value, bool | int | float | str):
            raise TypeError(f"hparams[{key!r}]: expected a bool, int, float or str, got {type(value).__name__}")


def _start_info(summary) -> plugin_data_pb2.SessionStartInfo | None:
    # deferred: TensorBoard's protos cost 0.1 s, which factory-train would pay at every start
    from tensorboard.plugins.hparams import metadata

    for value in summary.value:
        if value.tag == metadata.SESSION_START_INFO_TAG:
            return metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
    return None


def _records(data: bytes):
    """The records of TFRecord framing (length, its CRC, data, its CRC), up to a torn end."""
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length
        if end + 4 > len(data):
            return
        yield data[offset + 12 : end]
        offset = end + 4


def hparams_files(run_dir: str | os.PathLike) -> list[Path]:
    """The HParams event files of ``run_dir`` (one, once ``write_trial_hparams`` ran), oldest first."""
    directory = Path(run_dir) / TENSORBOARD
    return sorted(directory.glob(f"{EVENTS_PREFIX}*{HPARAMS_SUFFIX}"))


def read_trial_hparams(run_dir: str | os.PathLike) -> plugin_data_pb2.SessionStartInfo | None:
    """The session-start info ``write_trial_hparams`` left in ``run_dir``; None without one (or a torn file)."""
    from tensorboard.compat.proto import event_pb2  # deferred: 0.1 s at every factory-train start

    for path in reversed(hparams_files(run_dir)):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for record in _records(data):
            try:
                event = event_pb2.Event.FromString(record)
            except Exception:  # protobuf's DecodeError: not an event of ours
                break
            info = _start_info(event.summary)
            if info is not None:
                return info
    return None


def write_trial_hparams(run_dir: str | os.PathLike, hparams: Mapping[str, HParamValue], trial_id: str) -> Path | None:
    """Write the trial's ``hparams`` as HParams session-start info into ``RUN_DIR/tensorboard``.

    ``hparams``: ``{name: value}``, values ``bool``, ``int``, ``float`` or ``str`` (a sweep's
    overrides: ``{"train.optimizer.learning_rate": 0.01, "network.hidden": "[64,64]"}``).
    ``trial_id`` names the trial's row in the dashboard (its "Trial ID"); sessions with the same
    ``trial_id`` are one row, their metrics averaged, so it must be unique among the runs one
    TensorBoard shows (a sweep's job: ``<sweep dir name>/<job number>``).

    Idempotent: when the run dir already holds the same ``trial_id`` and ``hparams`` (a resumed
    trial) nothing is written and None is returned, and the session keeps its first start time;
    otherwise the new file replaces the old one (written aside, then renamed into place, so a
    TensorBoard reading meanwhile sees one session, whole; one already running keeps the values
    it read first until it restarts). Returns the path written. On a full disk nothing is left
    behind and the error is ``StorageError``.

    Raises:
        TypeError: ``trial_id`` is not a non-empty string, or a key or value has another type.
    """
    # deferred: TensorBoard's protos cost 0.1 s, which factory-train would pay at every start
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb  # deferred, as above
    from tensorboard.summary.writer.record_writer import RecordWriter  # deferred, as above

    _check(hparams, trial_id)
    now = time.time()
    summary = hparams_pb(dict(hparams), trial_id=trial_id, start_time_secs=now)
    previous = read_trial_hparams(run_dir)
    if previous is not None:
        wanted = _start_info(summary)
        wanted.start_time_secs = previous.start_time_secs
        if wanted == previous:
            return None
    old = hparams_files(run_dir)
    directory = Path(run_dir) / TENSORBOARD
    directory.mkdir(parents=True, exist_ok=True)
    # The nanoseconds keep two writes within a second apart, the newer one sorting last.
    path = directory / f"{EVENTS_PREFIX}{int(now):010d}.{socket.gethostname()}.{time.time_ns()}{HPARAMS_SUFFIX}"
    events = [
        event_pb2.Event(wall_time=now, file_version="brain.Event:2"),
        event_pb2.Event(wall_time=now, step=0, summary=summary),
    ]
    # Staged under a name without "tfevents" (TensorBoard would read a file of that name while
    # it is written), then renamed: a TensorBoard reading the run finds the whole file or none.
    staged = directory / f".hparams.{os.getpid()}"
    with atomic_path(staged) as tmp, open(tmp, "wb") as f:
        writer = RecordWriter(f)
        for event in events:
            writer.write(event.SerializeToString())
        f.flush()
        os.fsync(f.fileno())
    os.replace(staged, path)
    for stale in old:
        if stale != path:
            stale.unlink(missing_ok=True)
    return path
