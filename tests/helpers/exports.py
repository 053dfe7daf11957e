"""A real export without training: an untrained MLP on a small table, written by the real ``Exporter``.

Writing one takes a few seconds (build, SavedModel, load back, verify); the
weights are the initial ones, which is all the tests of loading, retention,
disk space and input checks need.
"""

from __future__ import annotations

from pathlib import Path

# Two float features (one with a default: a missing or NaN value takes it), an int64 with a default, 3 classes.
TABLE = {
    "features": {
        "x": {"dtype": "float32", "shape": [3]},
        "z": {"dtype": "float32", "shape": [], "default": 0.5},
        "n": {"dtype": "int64", "shape": [], "default": 7},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 3}},
}
ROWS = [
    {"x": [0.5, -1.0, 2.0], "z": 1.0, "n": 1, "y": 2},
    {"x": [1.5, 0.0, -2.0], "y": 0},
    {"x": [-0.5, 3.0, 0.25], "z": -2.0, "n": 9, "y": 1},
]


def table_exporter(run_dir: Path, seed: int = 0, table: dict = TABLE, rows: list[dict] = ROWS):
    """An ``Exporter`` of an untrained MLP on ``table`` into ``run_dir``, verified on ``rows``."""
    import keras  # defers TensorFlow

    from factory.features.spec import FeatureSpec
    from factory.features.transform import FeatureTransform  # defers TensorFlow
    from factory.model.builder import build_model  # defers TensorFlow
    from factory.serving.exporter import Exporter  # defers TensorFlow

    keras.utils.set_random_seed(seed)
    spec = FeatureSpec.from_dict(table)
    model = build_model(spec, "mlp", {"hidden": [8]})
    sample = [spec.encode(row) for row in rows]
    return Exporter(run_dir, spec, FeatureTransform(spec), model, "classification", sample, {"features": table})
