"""An export of a table (a float vector and an int64 with a default): ``Predictor`` and ``factory predict``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from factory.serving.predictor import load_export
from tests.helpers import TINY, compose
from tests.helpers.predict import run_cli, write_jsonl

TABLE = {
    "features": {
        "x": {"dtype": "float32", "shape": [3]},
        "n": {"dtype": "int64", "shape": [], "default": 7},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 3}},
}
# `n` is absent from rows 1 and 4: the spec's default (7) applies.
TABLE_ROWS = [
    {"x": [0.5, -1.0, 2.0], "n": 1, "y": 2},
    {"x": [1.5, 0.0, -2.0], "y": 0},
    {"x": [-0.5, 3.0, 0.25], "n": 9, "y": 1},
    {"x": [2.0, 2.0, 2.0], "n": 0, "y": 0},
    {"x": [0.0, 0.0, -1.0], "y": 1},
]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory, _record_cache):
    from factory import FeatureSpec
    from factory.training.runner import train

    root = tmp_path_factory.mktemp("table")
    spec = FeatureSpec.from_dict(TABLE)
    rng = np.random.default_rng(0)
    rows = 256
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    n = rng.integers(0, 10, rows)
    columns = {"x": x, "n": n, "y": np.argmax(x + (n[:, None] > 4), axis=1)}
    for split in ("train", "eval"):
        with spec.writer(root / "data" / split) as writer:
            writer.write_many(columns)
    config = compose(*TINY, "train.max_steps=20", "train.eval_every_steps=20")
    config["features"] = TABLE
    config["data"] = {"train": str(root / "data" / "train-*"), "eval": str(root / "data" / "eval-*")}
    train(config, run_dir=root / "run")
    return root / "run", spec


def test_table_export_fills_defaults_and_takes_whole_floats(table_run):
    run, spec = table_run
    predictor = load_export(run)
    reference = predictor.predict_examples([spec.encode(row) for row in TABLE_ROWS])
    filled = {
        "x": [r["x"] for r in TABLE_ROWS],
        "n": [float(r.get("n", 7)) for r in TABLE_ROWS],
    }  # whole floats are fine for int64
    for name, want in reference.items():
        np.testing.assert_allclose(predictor.predict(filled)[name], want, atol=1e-5)
    without_n = predictor.predict({"x": filled["x"]})
    with_7 = predictor.predict({"x": filled["x"], "n": [7] * len(TABLE_ROWS)})
    with_0 = predictor.predict({"x": filled["x"], "n": [0] * len(TABLE_ROWS)})
    np.testing.assert_allclose(without_n["logits"], with_7["logits"], atol=1e-6)
    assert not np.allclose(with_7["logits"], with_0["logits"])  # n matters, so the default was used


def test_cli_table_csv_and_jsonl_match_the_records(capsys, tmp_path, table_run):
    run, spec = table_run
    reference = load_export(run).predict_examples([spec.encode(row) for row in TABLE_ROWS])
    lines = ["y,x,n"] + [f'{r["y"]},"{" ".join(map(str, r["x"]))}",{r.get("n", "")}' for r in TABLE_ROWS]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    write_jsonl(tmp_path / "in.jsonl", TABLE_ROWS)
    for source in ("in.csv", "in.jsonl"):
        status, stdout, stderr = run_cli(capsys, run, "--input", tmp_path / source, "--batch-size", 2)
        assert status == 0, stderr
        rows = [json.loads(line) for line in stdout.splitlines()]
        assert [r["index"] for r in rows] == list(range(len(TABLE_ROWS)))
        assert [r["class_ids"] for r in rows] == reference["class_ids"].tolist()
        np.testing.assert_allclose([r["probabilities"] for r in rows], reference["probabilities"], atol=1e-5)
