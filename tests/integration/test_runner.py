"""The training loop on real (tiny) models: tasks, evaluation schedule, early stopping, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from factory import ConfigError, FeatureSpec
from factory.errors import TrainingError
from factory.training.runner import train
from tests.helpers import TINY, compose


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_classification_run_writes_metrics_tensorboard_checkpoints_and_summary(tmp_path):
    best = train(compose(*TINY), run_dir=tmp_path / "run")
    run = tmp_path / "run"
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [20, 40, 60] and [r["eval"] for r in rows] == [1, 2, 3]
    assert {"val_loss", "val_accuracy", "best", "wait", "stop"} <= set(rows[0])
    assert best == max(r["val_accuracy"] for r in rows)  # the digits experiment monitors val_accuracy
    assert list((run / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert list((run / "tensorboard" / "eval").glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "checkpoint").exists()
    assert (run / "checkpoints" / "best" / "weights.index").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["evaluations"] == 3 and not summary["stopped_early"]
    assert summary["test"]["test_accuracy"] > 0.3  # well above chance (0.1) after 60 steps
    assert (run / "config.yaml").exists()


def write_table(tmp_path, spec_dict, n, fn):
    spec = FeatureSpec.from_dict(spec_dict)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    for split, rows in (("train", slice(0, n * 3 // 4)), ("eval", slice(n * 3 // 4, n))):
        with spec.writer(tmp_path / "data" / split) as w:
            w.write_many({"x": x[rows], "y": fn(x[rows])})
    return spec_dict


TABULAR = [
    (
        "regression",
        {"dtype": "float32", "shape": []},
        lambda x: x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32),
        "val_mae",
        {"val_loss", "val_mae", "val_mse"},
    ),
    (
        "binary",
        {"dtype": "int64", "shape": [], "task": "binary"},
        lambda x: (x[:, 0] + x[:, 1] > 0).astype(np.int64),
        "val_auc",
        {"val_loss", "val_accuracy", "val_auc"},
    ),
]


@pytest.mark.parametrize(("task", "label", "fn", "monitor", "metrics"), TABULAR, ids=[t[0] for t in TABULAR])
def test_regression_and_binary_tasks_learn(tmp_path, task, label, fn, monitor, metrics):
    spec = write_table(
        tmp_path, {"features": {"x": {"dtype": "float32", "shape": [4]}}, "labels": {"y": label}}, 400, fn
    )
    config = compose(*TINY, "train.max_steps=200", "train.eval_every_steps=100", f"early_stop.monitor={monitor}")
    config["features"] = spec
    config["data"] = {"train": str(tmp_path / "data" / "train-*"), "eval": str(tmp_path / "data" / "eval-*")}
    train(config, run_dir=tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert set(rows[-1]) >= metrics
    if task == "regression":
        assert rows[-1]["val_mae"] < rows[0]["val_mae"] or rows[-1]["val_mae"] < 0.3
    else:
        assert rows[-1]["val_auc"] > 0.9


def test_early_stopping_counts_evaluations(tmp_path):
    # A learning rate too small to move val_loss by min_delta: evaluation 1 sets the best,
    # evaluations 2 and 3 do not improve, so patience 2 stops at evaluation 3.
    config = compose(
        *TINY,
        "train.max_steps=1000",
        "train.optimizer.learning_rate=1e-9",
        "early_stop.monitor=val_loss",
        "early_stop.patience=2",
        "early_stop.min_delta=0.01",
    )
    train(config, run_dir=tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["eval"] for r in rows] == [1, 2, 3]
    assert [r["wait"] for r in rows] == [0, 1, 2] and [r["stop"] for r in rows] == [False, False, True]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps"] == 60


def test_eval_steps_limits_the_evaluation(tmp_path):
    train(compose(*TINY, "train.max_steps=20", "train.eval_steps=1", "data.test=null"), run_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "test" not in summary
    assert len(read_metrics(tmp_path / "run")) == 1


def test_rerun_on_a_finished_run_dir_resumes_without_training_again(tmp_path):
    config = compose(*TINY)
    first = train(config, run_dir=tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    second = train(config, run_dir=tmp_path / "run")
    assert second == first and read_metrics(tmp_path / "run") == rows


def test_a_resumed_run_takes_the_learning_rate_from_the_config(tmp_path, caplog):
    import tensorflow as tf

    def checkpoint_lr(run_dir):
        reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
        (key,) = [k for k in reader.get_variable_to_shape_map() if k.startswith("optimizer/") and "learning_rate" in k]
        return float(reader.get_tensor(key))

    train(compose(*TINY, "train.max_steps=20", "data.test=null"), run_dir=tmp_path / "run")
    assert checkpoint_lr(tmp_path / "run") == pytest.approx(0.002)
    with caplog.at_level("INFO", logger="factory"):
        train(
            compose(
                *TINY,
                "train.max_steps=40",
                "data.test=null",
                "train.optimizer.learning_rate=0.0005",
                "train.resume_changes=[train.optimizer.learning_rate]",
            ),
            run_dir=tmp_path / "run",
        )
    assert "train.optimizer.learning_rate: 0.0005 from the config replaces the checkpoint's 0.002" in caplog.text
    assert checkpoint_lr(tmp_path / "run") == pytest.approx(0.0005)
    caplog.clear()
    with caplog.at_level("INFO", logger="factory"):  # unchanged: nothing to say
        train(
            compose(
                *TINY,
                "train.max_steps=60",
                "data.test=null",
                "train.optimizer.learning_rate=0.0005",
                "train.resume_changes=[train.optimizer.learning_rate]",
            ),
            run_dir=tmp_path / "run",
        )
    assert "resumed from step 40" in caplog.text and "learning_rate" not in caplog.text


def test_warm_start_initialises_weights_from_another_run(tmp_path):
    train(compose(*TINY), run_dir=tmp_path / "a")
    base = read_metrics(tmp_path / "a")
    warm = compose(*TINY, "train.max_steps=20", f"train.warm_start_from={tmp_path / 'a'}")
    train(warm, run_dir=tmp_path / "b")
    cold = compose(*TINY, "train.max_steps=20")
    train(cold, run_dir=tmp_path / "c")
    warm_loss = read_metrics(tmp_path / "b")[0]["val_loss"]
    cold_loss = read_metrics(tmp_path / "c")[0]["val_loss"]
    assert warm_loss < cold_loss and warm_loss < base[0]["val_loss"]
    with pytest.raises(ConfigError, match="train.warm_start_from: no checkpoint found"):
        train(compose(*TINY, f"train.warm_start_from={tmp_path / 'nothing'}"), run_dir=tmp_path / "d")


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    spec = write_table(
        tmp_path,
        {"features": {"x": {"dtype": "float32", "shape": [4]}}, "labels": {"y": {"dtype": "float32", "shape": []}}},
        200,
        lambda x: x.sum(axis=1),
    )
    config = compose(*TINY, "train.max_steps=20", "early_stop.monitor=val_mae", "train.resume_input=restart")
    config["features"] = spec
    config["data"] = {"train": str(tmp_path / "data" / "train-*"), "eval": str(tmp_path / "data" / "eval-*")}
    train(config, run_dir=tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    # Resume on records holding huge (finite) values: the loss overflows.
    with FeatureSpec.from_dict(spec).writer(tmp_path / "nan" / "train") as w:
        w.write_many({"x": np.full((64, 4), 3e38, np.float32), "y": np.zeros(64, np.float32)})
    config["train"]["max_steps"] = 40
    config["data"]["train"] = str(tmp_path / "nan" / "train-*")
    config["train"]["resume_changes"] = ["data.train"]
    with pytest.raises(
        TrainingError,
        match=r"the training loss is (nan|inf) at step 25; stopped without saving. "
        r"The last good checkpoint is kept: .*ckpt-20",
    ):
        train(config, run_dir=tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
    assert math.isfinite(read_metrics(tmp_path / "run")[-1]["val_loss"])
