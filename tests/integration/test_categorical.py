"""Categorical features through a run: hashed strings and ids, embedded or one-hot; the export serves raw
values, unseen ones too, with plain TensorFlow in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from factory import FeatureSpec
from tests.helpers import TINY, compose
from tests.helpers.tables import train_table

SPEC = {
    "features": {
        "user": {"dtype": "string", "shape": [], "hash_buckets": 3000},  # embedded: 64 dimensions by default
        "shop": {"dtype": "int64", "shape": [], "hash_buckets": 40},  # one-hot: 40 ids
        "color": {"dtype": "string", "shape": [], "vocabulary": ["red", "green", "blue"], "encode": "embedding"},
        "x": {"dtype": "float32", "shape": [], "preprocess": {"normalize": "auto"}},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
}

CHILD = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    shapes = sorted(v.shape.as_list() for v in model.variables if len(v.shape) == 2)
    out = model.signatures["serving_default"](
        user=tf.constant(["u1", "someone never seen"]),
        shop=tf.constant([3, 123456789], tf.int64),
        color=tf.constant(["red", "blue"]),
        x=tf.constant([0.5, -1.0]),
    )
    print(json.dumps({"shapes": shapes, "probabilities": out["probabilities"].numpy().tolist(),
                      "factory": any(m.startswith("factory") for m in sys.modules)}))
    """
)


def test_hashed_and_embedded_features_train_and_serve_raw_values(tmp_path):

    rng = np.random.default_rng(0)
    n = 1200
    users = rng.integers(0, 1000, n)
    effect = rng.normal(size=1000)
    x = rng.normal(size=n)
    y = (effect[users] + 0.3 * x > 0).astype(np.int64)
    columns = {
        "user": np.array([f"u{i}" for i in users], dtype=object),
        "shop": users % 37,
        "color": np.array(["red", "green", "blue"], dtype=object)[users % 3],
        "x": x,
        "y": y,
    }
    train_table(tmp_path, SPEC, columns, 1000, "train.max_steps=40", "train.eval_every_steps=20")

    export = tmp_path / "run" / "export" / "best" / "current"
    done = subprocess.run([sys.executable, "-c", CHILD, str(export)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert not out["factory"]
    assert [3001, 64] in out["shapes"]  # user: 3000 hash buckets (+ row 0) embedded in 64 dimensions
    assert [4, 4] in out["shapes"]  # color: 3 values embedded in 4 (the smallest default)
    assert [64 + 40 + 4 + 1, 32] in out["shapes"]  # the first layer sees user, shop one-hot (40), color and x
    probabilities = np.asarray(out["probabilities"])
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_wide_deep_learns_an_interaction_through_a_cross_of_bins_and_a_vocabulary(tmp_path):
    """The label depends on age band and color together: the cross of learnt age bins and the color
    gives the linear part what it needs; the bins come from the statistics pass and reach the export."""

    rng = np.random.default_rng(1)
    n = 2000
    age = rng.uniform(18, 90, n)
    color = np.array(["red", "green", "blue"], dtype=object)[rng.integers(0, 3, n)]
    y = (((age > 54) & (color == "red")) | ((age <= 54) & (color == "blue"))).astype(np.int64)
    spec_dict = {
        "features": {
            "age": {"dtype": "float32", "shape": [], "bins": {"auto": 4}},
            "color": {"dtype": "string", "shape": [], "vocabulary": "auto"},
            "noise": {"dtype": "float32", "shape": [], "preprocess": {"normalize": "auto"}},
        },
        "crosses": [{"features": ["age", "color"], "hash_buckets": 64}],
        "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
    }
    columns = {"age": age, "color": color, "noise": rng.normal(size=n), "y": y}
    train_table(
        tmp_path, spec_dict, columns, 1600, "network=wide_deep", "train.max_steps=300", "train.eval_every_steps=100"
    )

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_value"] >= 0.9, summary  # without the cross: about 0.83 at best (green, red right)
    bins = json.loads((tmp_path / "run" / "statistics.json").read_text())["features"]["age"]["bins"]
    np.testing.assert_allclose(bins, np.quantile(age[:1600].astype(np.float32), [0.25, 0.5, 0.75]), rtol=1e-6)
    manifest = json.loads(
        (tmp_path / "run" / "export" / "best" / "current" / "assets.extra" / "manifest.json").read_text()
    )
    assert manifest["feature_spec"]["features"]["age"]["bins"] == bins


def test_lists_of_categories_as_a_set_or_a_bag(tmp_path):
    """A variable-length list of tags: multi-hot (a set) or the mean of its embeddings (a bag), any
    length in training and serving; the label depends on whether a tag is among them."""
    from factory.training.runner import train

    rng = np.random.default_rng(2)
    n = 1500
    tags = [rng.choice(60, size=rng.integers(1, 6), replace=False) for _ in range(n)]
    y = np.array([int((t < 10).any()) for t in tags], dtype=np.int64)  # about 42% ones
    spec_dict = {
        "features": {
            "tags": {"dtype": "string", "shape": [None], "vocabulary": "auto", "oov_buckets": 1, "encode": "multi_hot"},
            "bag": {"dtype": "int64", "shape": [None], "hash_buckets": 100, "encode": "embedding", "embedding_dim": 8},
        },
        "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
    }
    spec = FeatureSpec.from_dict(spec_dict).without_auto()
    for part, rows in (("train", range(0, 1200)), ("eval", range(1200, n))):
        with spec.writer(tmp_path / "data" / part) as writer:
            for i in rows:
                writer.write({"tags": [f"t{v}" for v in tags[i]], "bag": tags[i].astype(np.int64), "y": y[i]})
    config = compose(*TINY, "train.max_steps=300", "train.eval_every_steps=100", "early_stop.monitor=val_accuracy")
    config["features"] = spec_dict
    config["data"] = {part: str(tmp_path / "data" / f"{part}-*") for part in ("train", "eval")}
    train(config, run_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert np.mean(y[1200:]) < 0.6 and summary["best_value"] >= 0.9, summary  # the majority class: below 0.6
