"""Blank cells cost no accuracy: factory's MLP with `missing: mean` on scikit-learn's breast cancer
table with 5% of its measurements blank (and two string columns, one with blanks) reaches at least
the test accuracy of scikit-learn's logistic regression with median imputation on the same split."""

from __future__ import annotations

import json

import numpy as np

from factory import FeatureSpec
from tests.helpers import compose

SEED = 1
BLANK = 0.05


def table():
    """The measurements with 5% blanks, a size band (strings, 5% blank), a site (noise) and the split."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, y = data.data.astype(np.float64), data.target.astype(np.int64)
    rng = np.random.default_rng(SEED)
    band = np.array(["small", "medium", "large"])[np.digitize(x[:, 0], np.quantile(x[:, 0], [1 / 3, 2 / 3]))]
    site = np.array(["north", "south", "east", "west", "centre"])[rng.integers(0, 5, len(y))]
    x[rng.random(x.shape) < BLANK] = np.nan
    band = np.where(rng.random(len(y)) < BLANK, "", band)
    order, n = rng.permutation(len(y)), len(y)
    parts = {"train": order[: int(n * 0.6)], "eval": order[int(n * 0.6) : int(n * 0.8)], "test": order[int(n * 0.8) :]}
    return x, band, site, y, parts


def logistic_accuracy(x, band, site, y, parts) -> float:
    """scikit-learn: median imputation and standardisation of the numbers, the most frequent string for a
    blank one, one-hot strings, logistic regression."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train, test = parts["train"], parts["test"]
    impute = SimpleImputer(strategy="median").fit(x[train])
    scale = StandardScaler().fit(impute.transform(x[train]))

    def one_hot(column, rows):
        values, counts = np.unique(column[train][column[train] != ""], return_counts=True)
        filled = np.where(column[rows] == "", values[np.argmax(counts)], column[rows])
        return (filled[:, None] == values[None, :]).astype(np.float64)

    def features(rows):
        numbers = scale.transform(impute.transform(x[rows]))
        return np.hstack([numbers, one_hot(band, rows), one_hot(site, rows)])

    model = LogisticRegression(max_iter=5000).fit(features(train), y[train])
    return float(np.mean(model.predict(features(test)) == y[test]))


def test_an_mlp_with_mean_fills_matches_logistic_regression_with_median_imputation(tmp_path):
    from factory.training.runner import train

    x, band, site, y, parts = table()
    names = [f"m{i}" for i in range(x.shape[1])]
    numeric = {"dtype": "float32", "shape": [], "preprocess": {"normalize": "auto"}, "missing": "mean"}
    features = {name: dict(numeric) for name in names}
    features["band"] = {"dtype": "string", "shape": [], "vocabulary": "auto", "missing": "most_frequent"}
    features["site"] = {"dtype": "string", "shape": [], "vocabulary": "auto", "oov_buckets": 1}
    spec_dict = {"features": features, "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}}}
    spec = FeatureSpec.from_dict(spec_dict).without_auto()
    for part, rows in parts.items():
        columns = {name: x[rows, i] for i, name in enumerate(names)}
        columns["band"] = np.array([None if b == "" else b for b in band[rows]], dtype=object)
        columns.update(site=site[rows].astype(object), y=y[rows])
        with spec.writer(tmp_path / "data" / part) as writer:
            writer.write_many(columns)
        assert writer.missing["m0"] > 0 and writer.missing["band"] > 0

    config = compose(
        "network=mlp",
        "network.hidden=[64]",
        "train.batch_size=32",
        "train.max_steps=1500",
        "train.eval_every_steps=50",
        "train.progress=none",
        "early_stop.monitor=val_loss",
        "early_stop.patience=10",
    )
    config["features"] = spec_dict
    config["data"] = {part: str(tmp_path / "data" / f"{part}-*") for part in parts}
    run = tmp_path / "run"
    train(config, run_dir=run)
    ours = json.loads((run / "summary.json").read_text())["test"]["test_accuracy"]
    reference = logistic_accuracy(x, band, site, y, parts)
    assert reference > 0.9  # the reference is a real model, not a strawman
    assert ours >= reference, f"factory {ours:.4f} < scikit-learn {reference:.4f}"
