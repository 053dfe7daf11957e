"""Exact resume after ``kill -9`` for every shipped experiment and for a network with every kind of random state.

Each case trains once straight through and once killed after two evaluations and started
again; evaluations, test metrics and the final checkpoint (weights, optimizer slots, the
random state of dropout and noise layers) must be equal bit for bit.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.resume import assert_same_run, evaluations, train_in_child

COMMON = ["seed=5", "train.deterministic=true", "train.progress=none", "early_stop.patience=100"]

CASES = {
    # The shipped default as it is (cnn with dropout 0.25, augmentation), on a shorter schedule.
    "digits_cnn": ["experiment=digits", "train.max_steps=240", "train.eval_every_steps=60"],
    "iris": ["experiment=iris", "train.max_steps=200", "train.eval_every_steps=40"],
    # An MLP with dropout 0.5 and a wide part; statistics for normalize: auto; ridge reference.
    "diabetes": ["experiment=diabetes", "train.max_steps=200", "train.eval_every_steps=40"],
    # Free text: the vocabulary learnt before training, word embeddings averaged, dropout 0.5.
    "reviews": ["experiment=reviews", "train.max_steps=160", "train.eval_every_steps=40"],
    # A registered network with dropout, Gaussian noise, batch norm and its own keras.random draws,
    # under mixed precision.
    "user_network_mixed_precision": [
        "experiment=digits",
        "imports=[noisy_nets]",
        "network=linear",
        "network.name=noisy",
        "train.mixed_precision=mixed_float16",
        "train.max_steps=150",
        "train.eval_every_steps=30",
        "train.steps_per_execution=5",
    ],
}

NOISY_NETS = '''
import keras
from factory import register_network
from factory.networks import dense_inputs


class RandomScale(keras.layers.Layer):
    """Multiplies by a random factor near 1 in training: its own draws through a SeedGenerator."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, x, training=False):
        if not training:
            return x
        noise = keras.random.uniform(keras.ops.shape(x)[:1], 0.9, 1.1, seed=self.seed_generator)
        return x * keras.ops.cast(keras.ops.expand_dims(noise, -1), x.dtype)


@register_network("noisy")
def noisy(features, num_outputs, units=32):
    x = dense_inputs(features)
    x = keras.layers.GaussianNoise(0.05)(x)
    x = keras.layers.Dense(units)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    return RandomScale()(x)
'''


STATEFUL_NETS = """
import keras
import tensorflow as tf
from factory import register_network
from factory.networks import dense_inputs


class Jitter(keras.layers.Layer):
    def call(self, x, training=False):
        return x + tf.random.uniform(tf.shape(x), maxval=0.01) if training else x


@register_network("jitter")
def jitter(features, num_outputs):
    return Jitter()(dense_inputs(features))
"""


def test_a_network_with_stateful_random_ops_is_warned_of(tmp_path):
    (tmp_path / "stateful_nets.py").write_text(textwrap.dedent(STATEFUL_NETS))
    overrides = [*CASES["digits_cnn"], *COMMON, "imports=[stateful_nets]", "network=linear", "network.name=jitter"]
    run = train_in_child(tmp_path / "run", [*overrides, "train.max_steps=20"], env={"PYTHONPATH": str(tmp_path)})
    warning = next(line for line in run.stderr.splitlines() if "stateful" in line)
    assert "'jitter'" in warning and "RandomUniform" in warning and "keras.random.SeedGenerator" in warning


@pytest.fixture(scope="module")
def iris_records(tmp_path_factory) -> Path:
    """The README tour's iris records (CSV written from scikit-learn's table, then `factory write`)."""
    from sklearn.datasets import load_iris

    work = tmp_path_factory.mktemp("iris")
    iris = load_iris()
    for split, keep in (("train", lambda i: i % 5), ("eval", lambda i: not i % 5)):
        with open(work / f"iris_{split}.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["measurements", "species"])
            for i, (x, y) in enumerate(zip(iris.data, iris.target, strict=True)):
                if keep(i):
                    out.writerow([" ".join(map(str, x)), iris.target_names[y]])
        subprocess.run(
            [
                str(Path(sys.executable).parent / "factory"),
                "write",
                "--features",
                "conf/features/iris.yaml",
                "--input",
                str(work / f"iris_{split}.csv"),
                "--output",
                str(work / "data" / split),
            ],
            check=True,
            capture_output=True,
            cwd=Path(__file__).parents[2],
        )
    return work / "data"


@pytest.mark.parametrize("case", list(CASES))
def test_kill_9_and_resume_is_exact(case, tmp_path, iris_records):
    overrides = [*CASES[case], *COMMON]
    env = {}
    if case == "iris":
        overrides += [f"data.train={iris_records}/train-*", f"data.eval={iris_records}/eval-*"]
    if case.startswith("user_network"):
        (tmp_path / "noisy_nets.py").write_text(textwrap.dedent(NOISY_NETS))
        env["PYTHONPATH"] = str(tmp_path)
    straight = train_in_child(tmp_path / "straight", overrides, env=env)
    assert "stateful" not in straight.stderr  # every random draw is checkpointed
    resumed = tmp_path / "resumed"
    killed = train_in_child(resumed, overrides, kill_when=lambda: evaluations(resumed) >= 2, env=env).killed
    assert killed and not (resumed / "summary.json").exists(), "the run ended before it was killed"
    train_in_child(resumed, overrides, env=env)
    assert_same_run(tmp_path / "straight", resumed)
