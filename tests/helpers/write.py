"""Helpers for the ``factory write`` tests: a table spec, five rows in every input format, reading shards back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from factory.cli import main

TABLE_SPEC = """
features:
  x: {dtype: float32, shape: [3]}
  color: {dtype: string, shape: [], vocabulary: [red, green, blue]}
  n: {dtype: int64, shape: [], default: 7}
labels:
  label: {dtype: int64, shape: [], num_classes: 3}
"""

# The same five records in every format; `n` is missing in the second (the spec's default, 7, applies).
ROWS = [
    {"x": [1.0, 2.0, 3.0], "color": "red", "n": 1, "label": 0},
    {"x": [4.0, 5.0, 6.0], "color": "green", "n": None, "label": 1},
    {"x": [7.5, 8.0, 9.0], "color": "blue", "n": 3, "label": 2},
    {"x": [-1.0, 0.0, 0.001], "color": "red", "n": 4, "label": 1},
    {"x": [10.0, 11.0, 12.0], "color": "green", "n": 5, "label": 0},
]
# Every way a CSV cell may hold a vector, one per row.
CSV_TEXT = """x,color,n,label
1 2 3,red,1,0
"4,5,6",green,,1
"[7.5, 8, 9]",blue,3,2
" -1, 0  0.001 ",red,4,1
"[10,11,12]",green,5,0
"""


def write_spec(tmp_path: Path, text: str = TABLE_SPEC) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def table_input(tmp_path: Path, fmt: str, bad: bool = False, extra: str | None = None) -> str:
    """ROWS as `fmt`; ``bad`` puts a wrong-typed label in the second row, ``extra`` adds an undeclared column."""
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        lines = CSV_TEXT.splitlines()
        if bad:
            lines[2] = lines[2].rsplit(",", 1)[0] + ",abc"
        if extra:
            lines = [lines[0] + f",{extra}"] + [line + ",1" for line in lines[1:]]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        rows = [dict(r) for r in ROWS]
        if bad:
            rows[1]["label"] = "one"
        if extra:
            for r in rows:
                r[extra] = 1
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:  # npz has no missing values: leave out `n` so that every record takes the default
        label = np.array([r["label"] for r in ROWS], dtype=np.float64 if bad else np.int64)
        if bad:
            label[1] = 2.5
        arrays = {
            "x": np.array([r["x"] for r in ROWS], dtype=np.float32),
            "color": np.array([r["color"] for r in ROWS]),
            "label": label,
        }
        if extra:
            arrays[extra] = np.ones(len(ROWS))
        np.savez(path, **arrays)
    return str(path)


def expected_n(fmt: str) -> list[int]:
    return [7] * len(ROWS) if fmt == "npz" else [7 if r["n"] is None else r["n"] for r in ROWS]


def read_back(pattern: str, features: dict, compression: str = "") -> dict[str, np.ndarray]:
    """Every record of the files matching ``pattern``, parsed with plain TensorFlow and a hand-written spec."""
    import tensorflow as tf  # defers TensorFlow

    files = sorted(tf.io.gfile.glob(pattern))
    assert files, f"no files match {pattern}"
    ds = tf.data.TFRecordDataset(files, compression_type=compression).batch(1000)
    parts = [tf.io.parse_example(batch, features) for batch in ds]
    return {k: np.concatenate([p[k].numpy() for p in parts]) for k in features}


def table_features() -> dict:
    import tensorflow as tf  # defers TensorFlow

    return {
        "x": tf.io.FixedLenFeature([3], tf.float32),
        "color": tf.io.FixedLenFeature([], tf.string),
        # A missing value stays out of the record; a reader supplies the spec's default.
        "n": tf.io.FixedLenFeature([], tf.int64, default_value=7),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }


def by_first_x(records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(records["x"][:, 0])
    return {k: v[order] for k, v in records.items()}


def assert_table(records: dict[str, np.ndarray], rows: list[dict], n: list[int]) -> None:
    records = by_first_x(records)
    order = np.argsort([r["x"][0] for r in rows])
    rows, n = [rows[i] for i in order], [n[i] for i in order]
    np.testing.assert_array_equal(records["x"], np.array([r["x"] for r in rows], dtype=np.float32))
    assert [c.decode() for c in records["color"]] == [r["color"] for r in rows]
    assert records["label"].tolist() == [r["label"] for r in rows]
    assert records["n"].tolist() == n


def files_in(directory: Path) -> list[str]:
    """Everything in ``directory``, hidden partial files included."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def write(spec: str, source: str, output: Path, *extra: str) -> int:
    """``factory write`` in this process, with ``extra`` options; returns the exit status."""
    return main(["write", "--features", spec, "--input", source, "--output", str(output), *extra])
