"""Runner options: strategies, mixed precision, XLA, schedules, progress display, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from factory.training.runner import train
from tests.helpers import TINY, compose

SHORT = (*TINY, "train.max_steps=20", "data.test=null", "export.best.enabled=false")


@pytest.mark.parametrize(
    "overrides",
    [
        ("train.strategy=mirrored",),
        ("train.mixed_precision=mixed_bfloat16",),
        ("train.jit_compile=true",),
        (
            "train.optimizer.name=sgd",
            "train.optimizer.momentum=0.9",
            "train.lr_schedule.name=cosine",
            "train.lr_schedule.warmup_steps=5",
        ),
        (
            "train.optimizer.name=adamw",
            "train.lr_schedule.name=step",
            "train.lr_schedule.decay_steps=10",
            "train.lr_schedule.warmup_steps=3",
        ),
        ("train.optimizer.name=rmsprop", "train.optimizer.clipnorm=1.0", "train.lr_schedule.name=exponential"),
    ],
    ids=["mirrored", "bf16", "xla", "sgd-cosine-warmup", "adamw-step-warmup", "rmsprop-clip-exp"],
)
def test_options_train_and_evaluate(tmp_path, overrides):
    best = train(compose(*SHORT, *overrides), run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and 0.0 <= best <= 1.0 and rows[0]["val_loss"] > 0


def test_a_run_after_a_mixed_precision_run_in_the_same_process_trains_in_float32(tmp_path):
    """Keras' dtype policy is global: each run sets its own (a sweep's trials share a process)."""
    import keras

    train(compose(*SHORT, "train.mixed_precision=mixed_bfloat16"), run_dir=tmp_path / "bf16")
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    train(compose(*SHORT), run_dir=tmp_path / "plain")
    assert keras.config.dtype_policy().name == "float32"


def test_progress_bar_and_plain_lines(tmp_path, capsys):
    import logging

    logging.getLogger("factory").setLevel(logging.INFO)
    train(compose(*SHORT, "train.progress=bar"), run_dir=tmp_path / "bar")
    err = capsys.readouterr().err
    assert "\r[" in err and "step 20/20" in err and "examples/s" in err
    handler = logging.StreamHandler(sys.stdout)
    logging.getLogger("factory").addHandler(handler)
    try:
        train(compose(*SHORT, "train.progress=lines", "train.log_every_steps=10"), run_dir=tmp_path / "lines")
    finally:
        logging.getLogger("factory").removeHandler(handler)
    out = capsys.readouterr()
    assert "step 10/20" in out.out and "step 20/20" in out.out and "\r" not in out.err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, signum):
    run = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from tests.helpers import compose
        from factory.cli.train import main
        sys.exit(main([*{list(TINY)!r}, "train.max_steps=100000", "train.eval_every_steps=50", "hydra.run.dir={run}"]))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in out and "run the same command to resume" in out
    assert ("terminated: saving a checkpoint" in out) == (signum == signal.SIGTERM)
    assert "Traceback" not in err
    checkpoints = sorted((run / "checkpoints").glob("ckpt-*.index"))
    assert checkpoints
    step = int(checkpoints[-1].name.split("-")[1].split(".")[0])
    assert step % 5 == 0 and step >= 50
    # Resuming finishes the run with every evaluation in place, also one Ctrl-C cut short.
    end = (step // 50 + 2) * 50
    train(compose(*TINY, f"train.max_steps={end}", "train.eval_every_steps=50"), run_dir=run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(50, end + 1, 50))
    assert [r["eval"] for r in rows] == list(range(1, len(rows) + 1))
