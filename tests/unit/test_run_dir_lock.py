"""A run dir is owned by one process: a real flock, re-entrant in a process, gone with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from factory.errors import FactoryError
from factory.run_dir import LOCK, owning

HOLD = textwrap.dedent(
    """
    import sys
    from factory.run_dir import owning
    with owning(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()
    """
)


def hold(run_dir) -> subprocess.Popen:
    """A real process that owns ``run_dir`` until its stdin closes (or it is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_another_process_is_refused_with_its_pid_until_it_dies(tmp_path):
    run = tmp_path / "run"
    owner = hold(run)
    try:
        for record in (True, False):
            with pytest.raises(FactoryError) as err:
                with owning(run, record=record):
                    pass
            message = str(err.value)
            assert f"in use by process {owner.pid} (" in message and f"kill {owner.pid}" in message
            assert "\n" not in message
        assert (run / LOCK).read_text().startswith(f"{owner.pid}\n")
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    with owning(run):  # kill -9 leaves no stale lock
        assert (run / LOCK).read_text().startswith(f"{os.getpid()}\n")


def test_re_entrant_in_one_process_and_held_until_the_outermost_block_ends(tmp_path):
    run = tmp_path / "run"
    with owning(run, record=False):
        assert not run.exists()  # a look only: nothing created
        with owning(run):
            with owning(run):
                assert (run / LOCK).read_text().startswith(f"{os.getpid()}\n")
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from factory.run_dir import owning\nwith owning(sys.argv[1]): pass",
                run,
            ],
            capture_output=True,
            text=True,
        )
        assert probe.returncode == 1 and f"in use by process {os.getpid()}" in probe.stderr
    owner = hold(run)  # released: another process takes it
    owner.stdin.close()
    assert owner.wait() == 0


def test_a_look_changes_no_file(tmp_path):
    with owning(tmp_path / "run"):
        pass
    lock = tmp_path / "run" / LOCK
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    with owning(tmp_path / "run", record=False):
        pass
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before
