"""``factory predict --skip-bad-rows``: bad rows are left out and named, the others predicted with their own index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.test_predict_faults import factory_predict, table_run  # noqa: F401  (a fixture)

GOOD = [[0.5, -1.0, 2.0], [1.5, 0.0, -2.0], [-0.5, 3.0, 0.25], [2.0, 2.0, 2.0]]


def _csv(directory, rows):
    lines = ["x,z"] + [row if isinstance(row, str) else f'"{" ".join(map(str, row))}",1.0' for row in rows]
    (directory / "in.csv").write_text("\n".join(lines) + "\n")
    return directory / "in.csv"


def _jsonl(directory, rows):
    text = "".join((row if isinstance(row, str) else json.dumps({"x": row, "z": 1.0})) + "\n" for row in rows)
    (directory / "in.jsonl").write_text(text)
    return directory / "in.jsonl"


def _npz(directory, rows):
    np.savez(directory / "in.npz", x=np.array(rows, np.float32), z=np.ones(len(rows), np.float32))
    return directory / "in.npz"


def _tfrecord(directory, rows):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(directory / "in.tfrecord")) as writer:
        for values in rows:
            record = tf.train.Example()
            record.features.feature["x"].float_list.value.extend(values)
            record.features.feature["z"].float_list.value.append(1.0)
            writer.write(record.SerializeToString())
    return directory / "in.tfrecord"


# (write, the rows with two bad ones at positions 1 and 3, what the first skipped line says)
CASES = {
    "csv": (_csv, [GOOD[0], '"1 2",1.0', GOOD[1], '"1 nan 2",1.0', GOOD[2], GOOD[3]], "in.csv line 3: "),
    "jsonl": (_jsonl, [GOOD[0], '{"x": [1, 2]}', GOOD[1], '{"x": [1, Infinity, 2]}', GOOD[2], GOOD[3]], "line 2: "),
    "npz": (_npz, [GOOD[0], [1.0, np.inf, 2.0], GOOD[1], [np.nan, 1.0, 2.0], GOOD[2], GOOD[3]], "record 1: "),
    "tfrecord": (_tfrecord, [GOOD[0], [1.0, 2.0], GOOD[1], [1.0, np.nan, 2.0], GOOD[2], GOOD[3]], "record 1"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_rows_are_skipped_and_named_and_the_rest_keep_their_index(table_run, tmp_path, kind):  # noqa: F811
    write, rows, first = CASES[kind]
    source = write(tmp_path, rows)
    refused = factory_predict(table_run, source)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr

    out = tmp_path / "out.jsonl"
    done = factory_predict(table_run, source, "--skip-bad-rows", "--output", str(out), "--batch-size", "4")
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2 and first in skipped[0] and "Traceback" not in done.stderr, done.stderr
    assert "(2 bad rows skipped)" in done.stdout
    predicted = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["index"] for p in predicted] == [0, 2, 4, 5]

    from factory.serving.predictor import load_export

    want = load_export(table_run).predict({"x": np.array(GOOD, np.float32), "z": np.ones(len(GOOD), np.float32)})
    assert [p["class_ids"] for p in predicted] == want["class_ids"].tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predicted], want["probabilities"], rtol=1e-5, atol=1e-6)
