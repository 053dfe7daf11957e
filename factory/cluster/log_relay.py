"""The log of a run's chief worker, relayed to the process that started the workers.

The chief (a Ray worker, perhaps on another machine) writes each record of the ``factory``
logger to a file as one JSON line (``RelayHandler``); the starting process follows the file
(``relayed``) and logs every record again through its own ``factory`` logger. The run's
progress and evaluation lines thus reach the same console and ``train.log`` as a run in one
process, whole, in order and without the workers' other output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("factory")

# Seconds between looks at the file for new lines.
_POLL = 0.2


class RelayHandler(logging.Handler):
    """Appends each record to ``path`` as ``{"level": ..., "message": ...}`` on one line, at once."""

    def __init__(self, path: str | os.PathLike, level: int = logging.INFO):
        super().__init__(level)
        self.path = Path(path)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.dumps({"level": record.levelno, "message": self.format(record)}) + "\n"
            # One write of an O_APPEND descriptor per record: a follower never sees half a line
            # followed by another record's.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except Exception:
            self.handleError(record)


class _Follower:
    """Reads the complete lines appended to a file since the last call."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def records(self) -> Iterator[tuple[int, str]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            try:
                row = json.loads(line)
                yield int(row["level"]), str(row["message"])
            except (ValueError, KeyError, TypeError):  # not a record of ours: shown as it is
                yield logging.INFO, line.decode(errors="replace")


@contextlib.contextmanager
def relayed(path: str | os.PathLike, logger: logging.Logger = log) -> Iterator[None]:
    """For the block, log through ``logger`` every record ``RelayHandler`` appends to ``path``.

    A thread follows the file while the block runs; when the block ends (also by an exception)
    the lines written until then are logged too, so none is lost.
    """
    follower = _Follower(Path(path))
    stop = threading.Event()

    def emit() -> None:
        for level, message in follower.records():
            logger.log(level, message)

    def follow() -> None:
        while not stop.wait(_POLL):
            emit()

    thread = threading.Thread(target=follow, name="factory-log-relay", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        emit()
