"""The run's TensorBoard summaries: ``RUN_DIR/tensorboard/train`` and ``.../eval``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import tensorflow as tf

from factory.errors import disk_full, is_disk_full
from factory.features.reading import first_line
from factory.run_dir import TENSORBOARD
from factory.training.optimizers import current_lr

log = logging.getLogger("factory")


class TensorBoard:
    """``RUN_DIR/tensorboard/train`` (loss, learning rate) and ``.../eval`` (the evaluation metrics).

    On a full disk the summaries raise ``StorageError`` at the evaluation's flush; ``close``
    never raises (it runs while another error, the real one, is on its way out).
    """

    def __init__(self, run_dir: Path, optimizer):
        self.optimizer = optimizer
        self.directory = run_dir / TENSORBOARD
        self.train_writer = tf.summary.create_file_writer(str(self.directory / "train"))
        self.eval_writer = tf.summary.create_file_writer(str(self.directory / "eval"))

    def training(self, step: int, loss: float) -> None:
        with self.train_writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", current_lr(self.optimizer))

    def evaluation(self, step: int, metrics: Mapping[str, float]) -> None:
        try:
            with self.eval_writer.as_default(step=step):
                for k, v in metrics.items():
                    tf.summary.scalar(k, v)
            self.eval_writer.flush()
            self.train_writer.flush()
        except (OSError, tf.errors.OpError) as err:
            if is_disk_full(err):
                raise disk_full(self.directory) from None
            raise

    def close(self) -> None:
        for writer in (self.train_writer, self.eval_writer):
            try:
                writer.close()
            except (OSError, tf.errors.OpError) as err:
                log.warning(f"{self.directory}: the summaries could not be written in full ({first_line(err)})")
