"""A small disk for disk-full tests: a tmpfs mounted where a test asks for it.

Mounting needs root (CI machines run the suite as root); elsewhere the test is
skipped and pytest prints the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a ``size`` tmpfs at ``path`` (created) for the block; skip the test when that is not possible."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk-full test needs root to mount a small tmpfs (not root here)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"disk-full test cannot mount a tmpfs: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path, leave: int = 0) -> None:
    """Fill the file system holding ``path`` until at most ``leave`` bytes are free."""
    filler = path / ".filler"
    free = shutil.disk_usage(path).free - leave
    with open(filler, "ab") as f:
        chunk = b"\0" * 65536
        while free > 0:
            try:
                f.write(chunk[: min(len(chunk), free)])
                f.flush()
            except OSError:
                break
            free -= len(chunk)


def unfill(path: Path) -> None:
    """Free what ``fill`` took."""
    (path / ".filler").unlink(missing_ok=True)
