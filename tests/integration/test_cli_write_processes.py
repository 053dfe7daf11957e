"""``factory write`` as a real process: a quiet console script, errors before TensorFlow loads, and Ctrl-C."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests import helpers
from tests.helpers.write import (
    ROWS,
    TABLE_SPEC,
    assert_table,
    expected_n,
    files_in,
    read_back,
    table_features,
    table_input,
    write_spec,
)

FACTORY = Path(sys.executable).parent / "factory"
ROOT = helpers.REPO


def quiet_env() -> dict[str, str]:
    """The environment without TensorFlow's log settings: the command must set them itself."""
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}


def test_console_script_writes_quietly(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run = subprocess.run(
        [
            str(FACTORY),
            "write",
            "--features",
            spec,
            "--input",
            table_input(tmp_path, "csv"),
            "--output",
            str(out / "train"),
            "--shards",
            "2",
        ],
        capture_output=True,
        text=True,
        env=quiet_env(),
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no TensorFlow log lines
    assert run.stdout.startswith("wrote 5 records (0 bad rows skipped) to ")
    assert_table(read_back(str(out / "train-*"), table_features()), ROWS, expected_n("csv"))


def test_config_and_input_errors_come_before_tensorflow(tmp_path):
    spec = write_spec(tmp_path)
    typo = tmp_path / "typo.yaml"
    typo.write_text(TABLE_SPEC.replace("x: {dtype: float32", "x: {dtpye: float32"))
    unknown = table_input(tmp_path, "csv", extra="colour")
    existing = tmp_path / "out" / "train-00000-of-00001.tfrecord"
    existing.parent.mkdir()
    existing.write_bytes(b"")
    calls = [
        ["write", "--features", str(typo), "--input", "data.csv", "--output", str(tmp_path / "o")],
        ["write", "--features", spec, "--input", unknown, "--output", str(tmp_path / "o")],
        [
            "write",
            "--features",
            spec,
            "--input",
            table_input(tmp_path, "jsonl"),
            "--output",
            str(tmp_path / "out" / "train"),
        ],
        ["check", "--features", str(typo), "anything"],
    ]
    code = (
        "import sys, time\n"
        "from factory.cli import main\n"
        "start = time.perf_counter()\n"
        f"codes = [main(argv) for argv in {calls!r}]\n"
        "print('tensorflow' in sys.modules, *codes, round(time.perf_counter() - start, 2))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    imported, *codes, seconds = run.stdout.split()
    assert (imported, codes) == ("False", ["2", "2", "2", "2"]), run.stdout + run.stderr
    errors = run.stderr.splitlines()
    assert errors[0] == f"error: 2 problems in config in {typo}:"
    assert "  - features.x.dtpye: unknown key (did you mean 'dtype'?); allowed keys:" in run.stderr
    assert "  - features.x.dtype: required key is missing" in run.stderr
    assert "unknown column 'colour' (did you mean 'color'?)" in run.stderr
    assert "train-00000-of-00001.tfrecord already exists" in run.stderr
    assert "Traceback" not in run.stderr
    print(f"four failing commands took {seconds} s without TensorFlow")


def test_interrupt_exits_130_and_leaves_no_files(tmp_path):
    """Ctrl-C while rows are still arriving (a named pipe as input): exit 130, no shard, no partial file."""
    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            str(FACTORY),
            "write",
            "--features",
            write_spec(tmp_path),
            "--input",
            str(fifo),
            "--output",
            str(out / "train"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=quiet_env(),
        # Ctrl-C as in a terminal's foreground, however the suite was started: a shell starts a
        # background job with SIGINT ignored, and Python keeps an ignored SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    try:
        while True:  # open the writing end without blocking until the command opens the reading end
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as err:
                assert err.errno == errno.ENXIO
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
        os.write(fd, b"x,color,n,label\n1 2 3,red,1,0\n")
        while not any(".partial-" in name for name in files_in(out)):  # the writer is open
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        os.close(fd)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted" and stdout == ""
    assert files_in(out) == []
