"""Helpers for the predict tests: a tiny trained run, the digits test split, and ``factory predict`` in-process."""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

import numpy as np

from factory.cli import main
from tests.helpers import TINY, compose

BIN = Path(sys.executable).parent
# Records used for the file formats (the test split has 360; the text formats take the first few).
N = 40


def train_tiny_run(run: Path) -> Path:
    """Trains ``TINY`` for 40 steps into ``run`` (which also generates the bundled digits) and returns ``run``."""
    from factory.training.runner import train  # defers TensorFlow

    train(compose(*TINY, "train.max_steps=40"), run_dir=run)
    return run


def digits_test_records() -> tuple[list[str], list[bytes], np.ndarray, np.ndarray]:
    """The digits test split under $FACTORY_CACHE: its files, serialized records, decoded pixels and labels.

    The split exists once a run has trained on the digits (see ``train_tiny_run``).
    """
    import tensorflow as tf  # defers TensorFlow

    files = sorted(glob.glob(os.path.join(os.environ["FACTORY_CACHE"], "digits", "test-*.tfrecord")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    parsed = tf.io.parse_example(
        records, {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    )
    pixels = np.stack([tf.io.decode_png(b, channels=1).numpy() for b in parsed["image"].numpy()])
    return files, records, pixels, parsed["label"].numpy()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``factory predict ARGS`` in this process: the exit status and what it printed to stdout and stderr."""
    status = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
