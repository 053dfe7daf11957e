"""Records under faults, without TensorFlow: shard sets all or nothing, the writer's journal,
non-finite numbers, CSV line numbers, the feature names a stored record holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from factory.errors import RecordError
from factory.features import wire
from factory.features.checks import number_problem
from factory.features.encoder import encode_columns, encode_record
from factory.features.shards import check_complete, missing_shards, shard_paths
from factory.features.sources import CsvSource
from factory.features.spec import FeatureSpec
from factory.features.writer import journal_path, recover
from tests import helpers

SPEC = {
    "features": {
        "x": {"dtype": "float32", "shape": [2]},
        "w": {"dtype": "float32", "shape": [], "default": 0.5},
        "n": {"dtype": "int64", "shape": [], "default": 7},
    },
    "labels": {"label": {"dtype": "int64", "shape": [], "num_classes": 3}},
}


def spec() -> FeatureSpec:
    return FeatureSpec.from_dict(SPEC)


# -- shard sets ------------------------------------------------------------------------------------


def test_a_set_with_a_shard_left_out_is_named_with_the_missing_shards(tmp_path):
    paths = [str(p) for p in shard_paths(tmp_path / "train", 4, None)]
    assert missing_shards(paths) == {}
    check_complete(paths)  # the whole set passes
    check_complete([str(tmp_path / "other.tfrecord")])  # not a set: nothing to check
    assert missing_shards([paths[0], paths[3]]) == {str(tmp_path / "train-*-of-00004.tfrecord"): [paths[1], paths[2]]}
    with pytest.raises(RecordError) as err:
        check_complete([paths[0], paths[3]])
    message = str(err.value)
    assert message.startswith(f"{tmp_path}/train-*-of-00004.tfrecord: incomplete shard set, missing shards ")
    assert "train-00001-of-00004.tfrecord, train-00002-of-00004.tfrecord" in message
    assert "the set on disk is incomplete" in message and "\n" not in message


def test_a_list_that_leaves_out_existing_shards_says_so(tmp_path):
    paths = shard_paths(tmp_path / "t", 2, "GZIP")
    for p in paths:
        p.write_bytes(b"")
    with pytest.raises(
        RecordError, match=r"missing shard t-00001-of-00002.tfrecord.gz; the files given leave them out"
    ):
        check_complete([str(paths[0])])
    # Two sets under one prefix (different counts) are checked apart.
    other = [str(p) for p in shard_paths(tmp_path / "t", 3, None)]
    assert list(missing_shards([str(paths[0]), str(paths[1]), *other[:2]])) == [str(tmp_path / "t-*-of-00003.tfrecord")]


# -- the writer's journal --------------------------------------------------------------------------

INTERRUPTED = """
import json, os, signal, sys
from factory.features.spec import FeatureSpec
spec = FeatureSpec.from_dict(json.loads(sys.argv[1]))
writer = spec.writer(sys.argv[2], shards=3)
writer.write_many({"x": [[1.0, 2.0]] * 6, "label": [0, 1, 2, 0, 1, 2]})
journal = json.loads(open(writer.prepare()).read())
partial, final = journal["moves"][0]           # the first rename, as close() does it
directory = os.path.dirname(sys.argv[2])
os.replace(os.path.join(directory, partial), os.path.join(directory, final))
os.kill(os.getpid(), signal.SIGKILL)           # killed between two renames
"""


def interrupted_write(prefix) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(INTERRUPTED), json.dumps(SPEC), str(prefix)],
        capture_output=True,
        text=True,
        cwd=helpers.REPO,
        timeout=60,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    return run


def test_recover_finishes_the_renames_an_interrupted_writer_left(tmp_path):
    prefix = tmp_path / "train"
    interrupted_write(prefix)
    names = sorted(os.listdir(tmp_path))
    assert ".train.journal" in names and sum(".partial-" in n for n in names) == 2
    assert "train-00000-of-00003.tfrecord" in names
    assert recover(prefix) == shard_paths(prefix, 3, None)
    assert sorted(os.listdir(tmp_path)) == [p.name for p in shard_paths(prefix, 3, None)]
    assert recover(prefix) == []  # nothing left to do


def test_recover_removes_a_set_whose_files_are_gone(tmp_path):
    prefix = tmp_path / "train"
    interrupted_write(prefix)
    partial = next(n for n in os.listdir(tmp_path) if ".partial-" in n)
    (tmp_path / partial).unlink()  # one shard can no longer be completed
    assert recover(prefix) == []
    assert os.listdir(tmp_path) == []


def test_a_journal_of_a_live_writer_is_left_alone(tmp_path):
    prefix = tmp_path / "train"
    writer = spec().writer(prefix, shards=2)
    writer.write({"x": [1.0, 2.0], "label": 1})
    writer.prepare()
    live = journal_path(prefix)
    entry = json.loads(live.read_text())
    entry["pid"] = os.getppid()  # another process that runs
    live.write_text(json.dumps(entry))
    with pytest.raises(RecordError, match=r"another writer \(process \d+\) is renaming its shards"):
        spec().writer(prefix, shards=2)
    entry["pid"] = os.getpid()
    live.write_text(json.dumps(entry))
    assert writer.close() == shard_paths(prefix, 2, None)
    assert not live.exists()


# -- numbers that float32 cannot hold ---------------------------------------------------------------

NUMBERS = [
    (float("nan"), False, "nan is NaN; float32 values must be finite numbers"),
    (float("nan"), True, None),
    (float("inf"), True, "inf is infinite; float32 values must be finite numbers"),
    (np.float64("-inf"), False, "-inf is infinite"),
    (1e39, False, "1e+39 is outside the float32 range -3.4028235e+38..3.4028235e+38"),
    (-(10**400), False, "is outside the float32 range"),
    (3.4e38, False, None),
]


@pytest.mark.parametrize(("value", "nan_missing", "expected"), NUMBERS)
def test_float32_takes_finite_numbers_within_its_range(value, nan_missing, expected):
    problem = number_problem(value, "float32", nan_missing=nan_missing)
    if expected is None:
        assert problem is None
    else:
        assert expected in str(problem)


def test_nan_is_missing_for_a_feature_with_a_default_and_an_error_otherwise():
    s = spec()
    keys = wire.feature_keys(encode_record(s, {"x": [1.0, 2.0], "w": float("nan"), "n": np.nan, "label": 1}))
    assert keys == ["x", "label"]  # the missing values stay missing: the reader supplies the defaults
    with pytest.raises(RecordError, match=r"^record 4: feature 'x': nan at \[1\] is NaN"):
        encode_record(s, {"x": [1.0, float("nan")], "label": 1}, 4)
    with pytest.raises(RecordError, match=r"^record 0: feature 'w': inf is infinite"):
        encode_record(s, {"x": [1.0, 2.0], "w": float("inf"), "label": 1}, 0)
    # Columns: rows all NaN are left out, like absent values; the row of an infinity is named.
    columns = {"x": np.ones((3, 2)), "w": np.array([np.nan, 2.0, np.nan]), "label": np.zeros(3, np.int64)}
    records = encode_columns(s, columns)
    assert records[0] == encode_record(s, {"x": [1.0, 1.0], "label": 0})
    assert records[1] == encode_record(s, {"x": [1.0, 1.0], "w": 2.0, "label": 0})
    columns["x"] = np.array([[1.0, 2.0], [1e39, 0.0], [np.inf, 1.0]])
    with pytest.raises(RecordError, match=r"^record 11: feature 'x': 1e\+39 at \[0\] is outside the float32 range"):
        encode_columns(s, columns, start=10)


# -- CSV rows are named by their line in the file ---------------------------------------------------


def test_csv_rows_are_named_by_the_line_an_editor_shows(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('x,label\n\n1 2,0\n\n\n"3\n4",1\n\n5 oops,2\n')
    with CsvSource(path, spec()) as source:
        rows = list(source)
    assert [r.where for r in rows] == ["line 3", "line 6", "line 9"]
    assert rows[2].error == "feature 'x': string 'oops' is not a number; expected float32 [2]"


def test_stored_feature_names_are_read_without_tensorflow():
    record = encode_record(spec(), {"x": [1.0, 2.0], "w": 0.5, "label": 2})
    assert wire.feature_keys(record) == ["x", "w", "label"]
    assert wire.feature_keys(b"") == []
    with pytest.raises(ValueError):
        wire.feature_keys(b"\x0a\x50abc")
