"""A mixed table written column-wise reads back exactly with plain TensorFlow.

``spec.writer(...).write_many(columns)`` encodes whole columns (``factory.features.columns``);
here its shards are read with a hand-built ``tf.io.parse_example`` spec (fixed-length
features with defaults for the rows that lack them, ``VarLenFeature`` for lists) and with
``tf.train.Example.FromString``, and every value is compared with the input.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

try:  # an optional dependency: without it, the string column is a list
    import pyarrow as pa
except ImportError:  # pragma: no cover
    pa = None

from factory import FeatureSpec
from factory.features import wire

SHARDS = 3
ROWS = 2000
COLORS = ["red", "grün", "blue"]
SPEC = {
    "features": {
        "f": {"dtype": "float32", "shape": []},
        "vec": {"dtype": "float32", "shape": [3], "missing": "mean"},
        "opt": {"dtype": "float32", "shape": [], "default": 0.5},
        "n": {"dtype": "int64", "shape": [], "missing": "median"},
        "city": {"dtype": "string", "shape": [], "missing": "most_frequent"},
        "word": {"dtype": "string", "shape": []},
        "color": {"dtype": "string", "shape": [], "vocabulary": COLORS},
        "pair": {"dtype": "string", "shape": [2]},
        "tags": {"dtype": "string", "shape": [None]},
        "seq": {"dtype": "int64", "shape": [None]},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 10}},
}
# What the hand-built parse spec supplies for a record that lacks a fixed-length feature.
DEFAULTS = {"vec": [-1.0, -1.0, -1.0], "opt": 0.5, "n": -7, "city": b"?"}


def table(rng: np.random.Generator) -> dict:
    """Columns of every form the writer takes: numpy arrays, object arrays with None, lists, pyarrow."""
    vec = rng.standard_normal((ROWS, 3)).astype(np.float32)
    vec[rng.random(ROWS) < 0.2] = np.nan  # rows all NaN: missing
    opt = rng.standard_normal(ROWS)
    opt[rng.random(ROWS) < 0.3] = np.nan
    n = np.empty(ROWS, dtype=object)
    n[:] = [
        None if rng.random() < 0.1 else int(v) for v in rng.integers(-(2**62), 2**62, ROWS) >> rng.integers(0, 62, ROWS)
    ]
    cities = [
        None if rng.random() < 0.1 else "" if rng.random() < 0.05 else f"city_{rng.integers(3000)}" for _ in range(ROWS)
    ]
    words = ["wörd " * int(k) + "x" * int(k % 7) for k in rng.integers(0, 400, ROWS)]
    return {
        "f": rng.standard_normal(ROWS).astype(np.float32),
        "vec": vec,
        "opt": opt,
        "n": n,
        "city": pa.array(cities, type=pa.string()) if pa is not None else cities,
        "word": words,
        "color": np.array([COLORS[i] for i in rng.integers(0, 3, ROWS)], dtype=object),
        "pair": np.array([[f"a{i}", f"b{i % 5}"] for i in range(ROWS)]),
        "tags": [None if i % 11 == 0 else [f"t{j}" for j in range(i % 4)] for i in range(ROWS)],
        "seq": [rng.integers(-1000, 10**15, i % 5).astype(np.int64) for i in range(ROWS)],
        "y": rng.integers(0, 10, ROWS),
    }


def expected(columns: dict) -> dict[str, list]:
    """Each row's value as the records should hold it (None: the record lacks the feature)."""
    vec = [None if np.isnan(v).all() else v for v in columns["vec"]]
    cities = [c or None for c in (columns["city"] if pa is None else columns["city"].to_pylist())]
    return {
        "f": list(columns["f"]),
        "vec": vec,
        "opt": [None if math.isnan(v) else np.float32(v) for v in columns["opt"]],
        "n": list(columns["n"]),
        "city": [None if c is None else c.encode() for c in cities],
        "word": [w.encode() for w in columns["word"]],
        "color": [c.encode() for c in columns["color"]],
        "pair": [[s.encode() for s in p] for p in columns["pair"]],
        "tags": [None if t is None else [s.encode() for s in t] for t in columns["tags"]],
        "seq": [s.tolist() for s in columns["seq"]],
        "y": list(columns["y"]),
    }


def parse_spec() -> dict:
    fixed = tf.io.FixedLenFeature
    return {
        "f": fixed([], tf.float32),
        "vec": fixed([3], tf.float32, default_value=DEFAULTS["vec"]),
        "opt": fixed([], tf.float32, default_value=DEFAULTS["opt"]),
        "n": fixed([], tf.int64, default_value=DEFAULTS["n"]),
        "city": fixed([], tf.string, default_value=DEFAULTS["city"]),
        "word": fixed([], tf.string),
        "color": fixed([], tf.string),
        "pair": fixed([2], tf.string),
        "tags": tf.io.VarLenFeature(tf.string),
        "seq": tf.io.VarLenFeature(tf.int64),
        "y": fixed([], tf.int64),
    }


def rows_of_sparse(sparse: tf.SparseTensor, rows: int) -> list[list]:
    out: list[list] = [[] for _ in range(rows)]
    for (row, _), value in zip(sparse.indices.numpy(), sparse.values.numpy(), strict=True):
        out[row].append(value)
    return out


@pytest.mark.parametrize("layout", ["groups", "scattered"])
def test_a_mixed_table_written_whole_reads_back_exactly(tmp_path, monkeypatch, layout):
    # Both ways records are laid out (``wire.examples_from_parts``): a block per group of rows, or scattered.
    monkeypatch.setattr(wire, "GROUPS_MIN", 1 << 40 if layout == "groups" else 0)
    monkeypatch.setattr(wire, "ROWS_PER_GROUP", 1 << 40)
    spec = FeatureSpec.from_dict(SPEC)
    columns = table(np.random.default_rng(len(layout)))
    with spec.writer(tmp_path / "mixed", shards=SHARDS) as writer:
        assert writer.write_many(columns, chunk=700) == ROWS
    # Record k of shard s is row s + k * SHARDS.
    records, order = [], []
    for shard, path in enumerate(writer.paths):
        shard_records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
        records += shard_records
        order += range(shard, ROWS, SHARDS)[: len(shard_records)]
    assert sorted(order) == list(range(ROWS))
    want = expected(columns)
    assert writer.missing == Counter({name: sum(v is None for v in want[name]) for name in want})

    parsed = tf.io.parse_example(records, parse_spec())
    for name, values in parsed.items():
        got = rows_of_sparse(values, len(records)) if isinstance(values, tf.SparseTensor) else values.numpy()
        for k, row in enumerate(order):
            value = want[name][row]
            if value is None:
                value = DEFAULTS.get(name, [])
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(value), err_msg=f"{name}, row {row}")

    for k, row in enumerate(order):
        feature = tf.train.Example.FromString(records[k]).features.feature
        held = {name for name, v in want.items() if v[row] is not None}
        assert set(feature) == held, f"row {row}"
        for name in held:
            stored = list(getattr(feature[name], feature[name].WhichOneof("kind")).value)
            assert stored == as_list(want[name][row]), f"{name}, row {row}"


def as_list(value) -> list:
    return value if isinstance(value, list) else np.atleast_1d(np.asarray(value, dtype=object)).tolist()
