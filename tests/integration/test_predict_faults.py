"""Predict under faults with real exports: retention deleting the version being loaded, a full disk during an
export, non-finite inputs to ``factory predict`` (a real process) and strict JSON out."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from factory.errors import StorageError
from factory.serving.export_tree import ExportTree
from factory.serving.predictor import PredictError, Predictor, load_export
from tests.helpers.disk import fill, small_disk, unfill
from tests.helpers.exports import table_exporter
from tests.helpers.predict import BIN, write_jsonl

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    """A run dir with two real exports of an untrained table model, ``best/1`` and ``best/2`` (current)."""
    run = tmp_path_factory.mktemp("faults") / "run"
    exporter = table_exporter(run)
    exporter.write("best", 1, {})
    exporter.write("best", 2, {})
    return run


@pytest.fixture
def run_copy(table_run, tmp_path) -> Path:
    """A copy of ``table_run`` for a test to delete versions from."""
    shutil.copytree(table_run, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


def factory_predict(run: Path, source: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "factory"), "predict", str(run), "--input", str(source), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )


def strict(line: str) -> dict:
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(line, parse_constant=refuse)


# -- readers never race retention -----------------------------------------------------------------


def test_a_version_deleted_between_resolving_and_loading_is_replaced(run_copy):
    predictor = Predictor(run_copy)  # resolves best/2 and reads its manifest
    assert predictor.version == 2
    tree = ExportTree(run_copy)
    tree.point("best", 1)
    assert tree.prune("best", [2]) == [2]  # retention, as a training run does it
    predictor.load()  # the real SavedModel loader finds best/2 gone
    assert predictor.version == 1 and predictor.path == run_copy / "export" / "best" / "1"
    assert predictor.manifest["version"] == 1  # manifest and model from the same version
    rows = {"x": [[0.5, -1.0, 2.0], [1.5, 0.0, -2.0]], "z": [1.0, 0.5]}
    want = load_export(run_copy / "export" / "best" / "1").predict(rows)
    got = predictor.predict(rows)
    np.testing.assert_array_equal(got["logits"], want["logits"])


def test_every_version_gone_is_one_line(run_copy):
    predictor = Predictor(run_copy / "export")
    assert ExportTree(run_copy).remove_newer("best", 1) == [1, 2]
    with pytest.raises(PredictError) as err:
        predictor.load()
    gone = run_copy / "export" / "best" / "2"
    assert str(err.value) == (
        f"{gone} was deleted while it was being loaded (export retention of a running training removes old "
        f"versions), and {run_copy / 'export'} holds no other export; train with an export policy to write one"
    )


# -- a full disk during an export -----------------------------------------------------------------


def test_a_full_disk_during_an_export_leaves_earlier_exports_and_no_staging(tmp_path):
    with small_disk(tmp_path / "disk", "4m") as disk:
        exporter = table_exporter(disk / "run")
        exporter.write("best", 1, {})
        fill(disk, leave=16384)
        try:
            with pytest.raises(StorageError) as err:
                exporter.write("best", 2, {})
        finally:
            unfill(disk)
        message = str(err.value)
        assert message.startswith(f"no space left on the device while writing {disk / 'run' / 'export' / 'best' / '2'}")
        assert "\n" not in message and "Traceback" not in message and "tensorflow" not in message.lower()
        assert err.value.__cause__ is None and err.value.__suppress_context__
        export = disk / "run" / "export"
        assert sorted(p.name for p in export.iterdir()) == ["best"]  # no .staging-* left
        assert sorted(p.name for p in (export / "best").iterdir()) == ["1", "current"]
        assert os.readlink(export / "best" / "current") == "1"
        # The earlier export still loads and predicts, in a fresh process.
        write_jsonl(tmp_path / "in.jsonl", [{"x": [0.5, -1.0, 2.0]}])
        done = factory_predict(disk / "run", tmp_path / "in.jsonl")
        assert done.returncode == 0, done.stderr
        assert f"{export / 'best' / '1'} (best v1)" in done.stderr
        assert [strict(line)["index"] for line in done.stdout.splitlines()] == [0]


# -- non-finite inputs to factory predict ---------------------------------------------------------


def bad_csv(directory: Path, cell: str, column: str = "x") -> Path:
    """A CSV whose second data row (the file's line 3) has ``cell`` in ``column``."""
    good = {"x": '"0.5 -1.0 2.0"', "z": "1.0"}
    bad = {**good, column: cell}
    lines = ["x,z", ",".join(good.values()), ",".join(bad.values()), ",".join(good.values())]
    (directory / "in.csv").write_text("\n".join(lines) + "\n")
    return directory / "in.csv"


def bad_jsonl(directory: Path, text: str) -> Path:
    """JSON Lines whose second line is ``text`` (Python's json reads NaN and Infinity)."""
    good = json.dumps({"x": [0.5, -1.0, 2.0]})
    (directory / "in.jsonl").write_text(f"{good}\n{text}\n{good}\n")
    return directory / "in.jsonl"


def bad_tfrecord(directory: Path, x: list[float]) -> Path:
    import tensorflow as tf

    def example(values):
        record = tf.train.Example()
        record.features.feature["x"].float_list.value.extend(values)
        return record.SerializeToString()

    path = directory / "in.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for values in ([0.5, -1.0, 2.0], x, [0.5, -1.0, 2.0]):
            writer.write(example(values))
    return path


# (id, how to write the input, the location, the problem): one line each, exit 2.
NON_FINITE = [
    ("csv_nan", lambda d: bad_csv(d, '"0.5 nan 2.0"'), r"in\.csv line 3", r"feature 'x': nan at \[1\] is NaN"),
    ("csv_inf", lambda d: bad_csv(d, "inf", "z"), r"in\.csv line 3", r"feature 'z': inf is infinite"),
    ("csv_1e39", lambda d: bad_csv(d, '"0.5 1e39 2.0"'), r"in\.csv line 3", r"feature 'x': 1e\+39 at \[1\]"),
    ("jsonl_nan", lambda d: bad_jsonl(d, '{"x": [NaN, 1, 2]}'), r"in\.jsonl line 2", r"feature 'x': nan at \[0\]"),
    (
        "jsonl_minus_inf",
        lambda d: bad_jsonl(d, '{"x": [1, 2, -Infinity]}'),
        r"in\.jsonl line 2",
        r"feature 'x': -inf at \[2\] is infinite",
    ),
    (
        "jsonl_1e39",
        lambda d: bad_jsonl(d, '{"x": [1, 2, 3], "z": 1e39}'),
        r"in\.jsonl line 2",
        r"feature 'z': 1e\+39 is outside the float32 range",
    ),
    (
        "tfrecord_nan",
        lambda d: bad_tfrecord(d, [0.0, float("nan"), 1.0]),
        r"in\.tfrecord, record 1",
        r"feature 'x': nan at \[1\] is NaN",
    ),
]


@pytest.mark.parametrize("write, where, problem", [c[1:] for c in NON_FINITE], ids=[c[0] for c in NON_FINITE])
def test_cli_refuses_non_finite_inputs_by_feature_and_row(table_run, tmp_path, write, where, problem):
    out = tmp_path / "out.jsonl"
    out.write_text("kept\n")
    done = factory_predict(table_run, write(tmp_path), "--output", str(out))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert re.search(f"^error: .*{where}: {problem}", lines[0]), lines[0]
    assert out.read_text() == "kept\n"  # --output left as it was


X = [0.5, -1.0, 2.0]
HUGE = {"x": [3e38, 3e38, -3e38], "z": 3e38}  # finite in float32, so accepted; the model overflows on them


def test_cli_takes_the_default_for_a_missing_or_nan_value_and_writes_strict_json(table_run, tmp_path):
    # z: the default (0.5) written, left out, NaN; then another value, and values the model overflows on.
    rows = [{"x": X, "z": 0.5}, {"x": X}, {"x": X, "z": float("nan")}, {"x": X, "z": -3.0}, HUGE]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # NaN as Python writes it
    done = factory_predict(table_run, tmp_path / "in.jsonl")
    assert done.returncode == 0, done.stderr
    out = [strict(line) for line in done.stdout.splitlines()]  # strict: no NaN/Infinity constants
    assert out[0]["logits"] == out[1]["logits"] == out[2]["logits"] != out[3]["logits"]
    direct = load_export(table_run).predict({"x": [HUGE["x"]], "z": [HUGE["z"]]})
    assert not np.isfinite(direct["probabilities"]).all()  # the model does overflow here
    assert out[4]["class_ids"] == int(direct["class_ids"][0])
    for name in ("logits", "probabilities"):
        values = direct[name][0]
        assert [v is None for v in out[4][name]] == (~np.isfinite(values)).tolist(), name  # null where not finite
        np.testing.assert_allclose([v for v in out[4][name] if v is not None], values[np.isfinite(values)], rtol=1e-6)
    # CSV: an empty cell and `nan` are missing values too.
    (tmp_path / "in.csv").write_text('x,z\n"0.5 -1.0 2.0",0.5\n"0.5 -1.0 2.0",\n"0.5 -1.0 2.0",nan\n')
    done = factory_predict(table_run, tmp_path / "in.csv")
    assert done.returncode == 0, done.stderr
    assert [strict(line)["logits"] for line in done.stdout.splitlines()] == [out[0]["logits"]] * 3
