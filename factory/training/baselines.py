"""Reference models from scikit-learn, fitted on the same split, for an honest comparison.

``compare_with: [ridge]`` (regression: ``RidgeCV``) or ``[logistic]``
(classification: ``LogisticRegression``) in the config makes the runner fit
the model on ``data.train`` and report its test metrics next to ours, measured
in the same run. The features are the spec's preprocessed ones (the same
normalisation the network sees), flattened; vocabulary ids are one-hot encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factory.errors import ConfigError
from factory.features.spec import FeatureSpec
from factory.features.transform import FeatureTransform

REFERENCES = {"ridge": "regression", "logistic": "classification"}


def _table(spec: FeatureSpec, transform: FeatureTransform, files: Sequence[str], compression: str | None):
    columns, labels = [], []
    for features, label in spec.dataset(
        list(files), mode="eval", batch_size=1024, compression=compression, transform=transform
    ):
        parts = []
        for name in spec.input_names:  # features and missing-value indicators, as the network sees them
            value, f = features[name].numpy(), spec.indicated(name) or spec.cross(name) or spec[name]
            if f.name == name and f.ids is not None:
                size = f.ids
                value = np.eye(size, dtype=np.float32)[np.clip(value, 0, size - 1)] * (value >= 0)[..., None]
            parts.append(value.reshape(len(value), -1).astype(np.float64))
        columns.append(np.concatenate(parts, axis=1))
        labels.append(label.numpy())
    return np.concatenate(columns), np.concatenate(labels)


def reference_metrics(
    name: str,
    spec: FeatureSpec,
    transform: FeatureTransform,
    train: Sequence[str],
    test: Sequence[str],
    compression: str | None = None,
) -> dict[str, float]:
    """Fit reference model ``name`` on ``train``; its ``test_*`` metrics on ``test``."""
    task = spec.label.task
    if REFERENCES.get(name) != task and not (name == "logistic" and task == "binary"):
        raise ConfigError(f"compare_with: '{name}' is for {REFERENCES.get(name, 'no')} tasks; this run is {task}")
    try:  # defers scikit-learn (optional)
        from sklearn.linear_model import (  # optional: scikit-learn (the examples extra)
            LogisticRegression,
            RidgeCV,
        )
    except ImportError:
        raise ConfigError("compare_with: needs scikit-learn; pip install 'factory[examples]'") from None
    x_train, y_train = _table(spec, transform, train, compression)
    x_test, y_test = _table(spec, transform, test, compression)
    if name == "ridge":
        model = RidgeCV(alphas=np.logspace(-3, 3, 25)).fit(x_train, y_train.reshape(len(y_train), -1))
        pred = model.predict(x_test).reshape(y_test.shape)
        err = pred - y_test
        return {"test_mae": float(np.mean(np.abs(err))), "test_mse": float(np.mean(err**2))}
    model = LogisticRegression(max_iter=2000).fit(x_train, y_train.reshape(-1))
    return {"test_accuracy": float(np.mean(model.predict(x_test) == y_test.reshape(-1)))}
