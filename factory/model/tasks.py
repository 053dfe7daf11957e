"""Losses and evaluation metrics by task (classification, binary, regression).

Evaluation metrics are computed from per-batch *sums* (weighted loss, correct
predictions, absolute and squared errors, AUC confusion counts) that are
reduced across replicas and accumulated in float64 on the host. That makes the
same code exact under any ``tf.distribute`` strategy and free of metric
variables that would need resetting or checkpointing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from factory.names import EVAL_PREFIX

AUC_THRESHOLDS = 200


class Task:
    """The loss and the metrics of one label's task."""

    def __init__(self, task: str, num_outputs: int, loss: str | None = None):
        self.task = task
        self.num_outputs = num_outputs
        self.loss = loss or {"regression": "mse"}.get(task, "cross_entropy")

    # -- training ----------------------------------------------------------------------------

    def per_example_loss(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        """Loss of each example, shape ``[batch]``, in float32 whatever the compute dtype."""
        logits = tf.cast(logits, tf.float32)
        if self.task == "classification":
            labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        labels = tf.reshape(tf.cast(labels, tf.float32), tf.shape(logits))
        if self.task == "binary":
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=-1)
        if self.loss == "mae":  # targets the reported MAE directly; robust to outliers
            return tf.reduce_mean(tf.abs(logits - labels), axis=-1)
        return tf.reduce_mean(tf.square(logits - labels), axis=-1)

    # -- evaluation ---------------------------------------------------------------------------

    def eval_sums(self, labels: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Weighted per-batch sums from which ``finalize`` computes every metric."""
        logits = tf.cast(logits, tf.float32)
        loss = self.per_example_loss(labels, logits)
        w = tf.ones_like(loss) if weights is None else tf.reshape(tf.cast(weights, tf.float32), [-1])
        sums = {"weight": tf.reduce_sum(w), "loss": tf.reduce_sum(w * loss)}
        if self.task == "classification":
            hit = tf.equal(tf.argmax(logits, axis=-1), tf.reshape(tf.cast(labels, tf.int64), [-1]))
            sums["correct"] = tf.reduce_sum(w * tf.cast(hit, tf.float32))
        elif self.task == "binary":
            y = tf.reshape(tf.cast(labels, tf.float32), tf.shape(logits))[:, 0] > 0.5
            p = tf.sigmoid(logits[:, 0])
            sums["correct"] = tf.reduce_sum(w * tf.cast(tf.equal(p > 0.5, y), tf.float32))
            thresholds = tf.linspace(0.0, 1.0, AUC_THRESHOLDS + 1)
            above = tf.cast(p[:, None] >= thresholds[None, :], tf.float32) * w[:, None]
            pos = tf.cast(y, tf.float32)[:, None]
            sums["tp"] = tf.reduce_sum(above * pos, axis=0)
            sums["fp"] = tf.reduce_sum(above * (1.0 - pos), axis=0)
            sums["pos"] = tf.reduce_sum(w * tf.cast(y, tf.float32))
        else:
            err = logits - tf.reshape(tf.cast(labels, tf.float32), tf.shape(logits))
            sums["abs"] = tf.reduce_sum(w * tf.reduce_mean(tf.abs(err), axis=-1))
            sums["sq"] = tf.reduce_sum(w * tf.reduce_mean(tf.square(err), axis=-1))
        return sums

    def finalize(self, totals: dict[str, np.ndarray], prefix: str = EVAL_PREFIX) -> dict[str, float]:
        weight = float(totals["weight"])
        if weight <= 0:
            return {}
        out = {"loss": float(totals["loss"]) / weight}
        if self.task in ("classification", "binary"):
            out["accuracy"] = float(totals["correct"]) / weight
        if self.task == "binary":
            pos, neg = float(totals["pos"]), weight - float(totals["pos"])
            if pos > 0 and neg > 0:
                tpr = np.asarray(totals["tp"], np.float64) / pos
                fpr = np.asarray(totals["fp"], np.float64) / neg
                out["auc"] = float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0))
            else:
                out["auc"] = float("nan")
        if self.task == "regression":
            out["mae"] = float(totals["abs"]) / weight
            out["mse"] = float(totals["sq"]) / weight
        return {prefix + k: v for k, v in out.items()}


def accumulate(totals: dict[str, np.ndarray] | None, sums: dict[str, tf.Tensor]) -> dict[str, np.ndarray]:
    """Add one batch's sums to the running totals, in float64."""
    values = {k: np.asarray(v.numpy(), np.float64) for k, v in sums.items()}
    if totals is None:
        return values
    return {k: totals[k] + values[k] for k in totals}
