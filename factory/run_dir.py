"""A run directory: the name of every file a run writes, and writing them whole. No TensorFlow.

``RUN_DIR/``
  ``config.yaml``        the resolved config the run trained with
  ``metrics.jsonl``      one JSON object per evaluation
  ``statistics.json``    the ``auto`` statistics (mean/std, vocabularies) computed from data.train
  ``summary.json``       written when the run ends: best value, evaluations, exports, test metrics
  ``train.log``          the log (written by the Hydra app)
  ``tensorboard/``       train and eval summaries
  ``checkpoints/``       ``ckpt-N`` (resume), ``best/weights`` and ``final/weights``
  ``export/``            ``<policy>/<version>/`` SavedModels
  ``.hydra/``            Hydra's record of the job: ``config.yaml``, ``overrides.yaml``
  ``.lock``              held by the process training the run (``owning``): its pid and command line
  ``.ray/``              while ``cluster=ray`` workers run: their relayed log and Ray Train's storage

Files other processes read while the run goes on (sweep summaries, ``factory summarize``)
are written to a temporary name and renamed, so a reader sees them whole or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from factory.errors import FactoryError, disk_full, is_disk_full

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
STATISTICS = "statistics.json"
SUMMARY = "summary.json"
TRAIN_LOG = "train.log"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
EXPORT = "export"
HYDRA = ".hydra"
HYDRA_CONFIG = f"{HYDRA}/config.yaml"  # the job's composed config, as Hydra saved it
HYDRA_OVERRIDES = f"{HYDRA}/overrides.yaml"  # the job's command-line overrides
BEST_WEIGHTS = f"{CHECKPOINTS}/best/weights"
FINAL_WEIGHTS = f"{CHECKPOINTS}/final/weights"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write in the block; renamed over ``path`` when the block
    ends, removed if it raises. A reader sees the old file or the whole new one, never part of it.

    On a full disk nothing is left behind and the error is ``StorageError`` naming ``path`` and the
    free space.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise disk_full(path) from None
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename).

    On a full disk nothing is left behind (the old file, if any, is unchanged) and the
    error is ``StorageError``, naming the path and the free space.
    """
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str | os.PathLike, value: Any) -> None:
    """``value`` as indented JSON, atomically."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_json_lines(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``path`` with one JSON object per line, atomically."""
    write_text(path, "".join(json.dumps(dict(r)) + "\n" for r in rows))


def append_json_line(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Append one JSON object as a line. A full disk can leave a torn last line, which
    ``read_json_lines`` leaves out; the error is ``StorageError``."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(dict(row)) + "\n")
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(path) from None
        raise


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """The objects of a JSON Lines file; an empty list when it does not exist.

    A last line that is not whole (a process killed, or a disk full, while appending it)
    is left out: the row was never committed. Any other line that is not a JSON object is
    a ``FactoryError`` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif number == len(lines) and not text.endswith("\n"):
            break  # torn: written in part, never committed
        else:
            raise FactoryError(
                f"{path}, line {number}: not a JSON object; repair or delete the line (each line is one evaluation)"
            )
    return rows


def torn_tail(path: str | os.PathLike) -> bool:
    """True when the last line of ``path`` was cut mid-write (no newline at the end of the file)."""
    path = Path(path)
    return path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")


# -- one owner per run dir ----------------------------------------------------------------------

LOCK = ".lock"  # flock'ed by the process that owns the run dir; holds its pid and command line

# Run dirs this process holds, by real path: {"fd": the locked file or None, "depth", "recorded"}.
# flock conflicts between two descriptors of one process too, so every holder in this process
# (the CLI's check before Hydra, then `train()`) shares one entry.
_HELD: dict[str, dict[str, Any]] = {}


def command_line() -> str:
    try:
        parts = Path("/proc/self/cmdline").read_bytes().split(b"\0")
        text = " ".join(p.decode(errors="replace") for p in parts if p)
    except OSError:  # no /proc
        text = " ".join(sys.argv)
    text = " ".join(text.split())  # one line, whatever `python -c` was given
    return text if len(text) <= 200 else text[:197] + "..."


def lock_holder(fd: int) -> str:
    """``process <pid> (<command line>)`` from a lock file, as far as it can be read."""
    try:
        pid, _, command = os.pread(fd, 4096, 0).decode(errors="replace").partition("\n")
    except OSError:
        pid, command = "", ""
    pid = pid.strip()
    if not pid.isdigit():
        return "another process"
    command = command.strip()
    return f"process {pid}" + (f" ({command})" if command else "")


def _busy(run_dir: Path, fd: int) -> FactoryError:
    holder = lock_holder(fd)
    pid = holder.split()[1] if holder.startswith("process ") else "PID"
    return FactoryError(
        f"{run_dir} is in use by {holder}: one process trains a run dir at a time; wait for it to end, "
        f"stop it (kill {pid}), or use another hydra.run.dir"
    )


def _acquire(run_dir: Path, record: bool) -> None:
    key = os.path.realpath(run_dir)
    entry = _HELD.get(key) or {"fd": None, "depth": 0, "recorded": False}
    fd = entry["fd"]
    if fd is None:
        try:
            if record:
                run_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            else:  # a look only: nothing is created or written
                fd = os.open(run_dir / LOCK, os.O_RDWR)
        except (FileNotFoundError, NotADirectoryError):
            if record:
                raise
            fd = None
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(run_dir / LOCK) from None
            raise
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = _busy(run_dir, fd)
                os.close(fd)
                raise error from None
    if record and not entry["recorded"]:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command_line()}\n".encode(), 0)
        entry["recorded"] = True
    entry["fd"] = fd
    entry["depth"] += 1
    _HELD[key] = entry


def _release(run_dir: Path) -> None:
    key = os.path.realpath(run_dir)
    entry = _HELD[key]
    entry["depth"] -= 1
    if entry["depth"] == 0:
        del _HELD[key]
        if entry["fd"] is not None:
            os.close(entry["fd"])  # closing the last descriptor releases the flock


@contextlib.contextmanager
def owning(run_dir: str | os.PathLike, record: bool = True) -> Iterator[None]:
    """Hold ``run_dir`` for this process for the block: an exclusive ``flock`` on ``RUN_DIR/.lock``.

    ``record``: create the run dir and its lock file if needed, and write this process's pid
    and command line into it. ``record=False`` only looks: a lock file that exists is locked
    (so nobody else starts meanwhile), nothing is created or written (a finished run dir stays
    byte for byte as it was). Re-entrant within a process, also from ``record=False`` to
    ``record=True``. The operating system releases the lock when the process ends however it
    ends (``kill -9`` too), so a lock is never stale. Another process holding it is a
    ``FactoryError`` that names it and says what to do.
    """
    run_dir = Path(run_dir)
    _acquire(run_dir, record)
    try:
        yield
    finally:
        _release(run_dir)


def in_use(run_dir: str | os.PathLike) -> bool:
    """Whether a process holds ``run_dir`` (see ``owning``) right now. Looks only: nothing is written."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the shared lock if it was granted
    return False
