"""User-facing errors.

Every error a user can fix (a bad config, a bad record, a missing file) is a
``FactoryError``: the command-line entry points print its message and exit with
status 2 instead of showing a traceback. Anything else is a bug in factory.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class FactoryError(Exception):
    """An error the user can fix; the message says where and how."""

    exit_code = 2


class ConfigError(FactoryError, ValueError):
    """One or more problems in a config or feature spec.

    ``problems`` holds one line per problem, each starting with the dotted path
    of the key at fault (``features.image.encoding: 'gif' is not one of ...``).
    """

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            message = f"invalid config{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} problems in config{where}:\n{lines}"
        super().__init__(message)

    def __reduce__(self):
        # Rebuilt from its problems, not its message (an error raised in another process: Ray, a pool).
        return type(self), (self.problems, self.source)


class RecordError(FactoryError, ValueError):
    """A record (to be written, or read from a file) that does not match the feature spec."""


class TrainingError(FactoryError):
    """Training cannot go on (a NaN loss, a broken checkpoint); the message says why and what is kept."""


class StorageError(FactoryError, OSError):
    """The disk is full (or a quota is reached) while writing; nothing half-written is left visible."""


def is_disk_full(err: BaseException) -> bool:
    """True when ``err`` (an ``OSError``, or TensorFlow's error that wraps one) means no space is left."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or "Disk quota exceeded" in text


def disk_full(path: str | os.PathLike) -> StorageError:
    """The one-line error for a full disk while writing ``path``: where, how much is free, what to do."""
    where = Path(path)
    probe = where if where.is_dir() else where.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
        space = f"{free / 2**20:.1f} MiB free"
    except OSError:
        space = "free space unknown"
    return StorageError(
        f"no space left on the device while writing {where} ({space} in {probe}); "
        "free some space and run the same command again (what was written before is kept)"
    )
