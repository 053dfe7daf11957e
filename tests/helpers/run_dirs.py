"""Run dirs in tests: every file's bytes and mtime, and a training process to wait for."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """``{relative path: (bytes, mtime in ns)}`` of every file under ``directory``, hidden ones too."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def start_factory_train(*args: str, cwd: Path) -> subprocess.Popen:
    """``factory-train ARGS`` in the background, its stdout a pipe of lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    return subprocess.Popen(
        [str(BIN / "factory-train"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """Read ``proc``'s stdout until a line holds ``text``; that line. Fails on timeout or when it ends first."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no line with {text!r} within {timeout} s; got {seen[-5:]}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        assert line, f"the process ended (status {proc.wait()}) before a line with {text!r}; got {seen[-5:]}"
        seen.append(line)
        if text in line:
            return line
