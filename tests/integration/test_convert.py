"""``factory convert``: TFLite and ONNX copies of ``serving_default``, checked, recorded, or refused with the ops at fault."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from factory.cli import main
from factory.names import MANIFEST
from factory.serving.manifest import find_export
from tests.helpers.exports import ROWS, TABLE, table_exporter


@pytest.fixture
def version(run_dir, tmp_path):
    """A copy of the shared digits run's best export (converting writes into the version dir)."""
    return shutil.copytree(find_export(run_dir), tmp_path / "run" / "export" / "best" / "1", symlinks=True)


def run_converted(path, fmt: str, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The converted file run with its own runtime (not factory's code)."""
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
        return {k: np.asarray(v) for k, v in runner(image=pixels).items()}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": pixels}), strict=True))


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_the_converted_model_gives_the_saved_models_outputs_and_is_recorded(version, test_records, capsys, fmt):
    assert main(["convert", str(version), "--to", fmt, "--calls", "20"]) == 0
    out = capsys.readouterr().out
    assert f"converted/serving_default.{fmt}" in out and "SavedModel" in out
    record = json.loads((version / MANIFEST).read_text())["converted"][fmt]
    path = version / record["path"]
    assert path.is_file() and record["bytes"] == path.stat().st_size and record["max_difference"] <= 1e-4
    assert record["latency_ms_batch_1"] > 0 and record["saved_model_latency_ms_batch_1"] > 0
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    pixels = test_records[2][:16]  # other records than the check used
    loaded = tf.saved_model.load(str(version))
    want = {k: v.numpy() for k, v in loaded.signatures["serving_default"](image=tf.constant(pixels)).items()}
    got = run_converted(path, fmt, pixels)
    assert set(got) == set(want)
    np.testing.assert_array_equal(got["class_ids"], want["class_ids"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-4)


HASHED = {"dtype": "string", "shape": [], "hash_buckets": 8, "default": "?"}
VOCABULARY = {"dtype": "string", "shape": [], "vocabulary": ["u1", "u123"], "default": "u1"}


@pytest.mark.parametrize(
    "fmt, feature, op",
    [
        ("tflite", HASHED, "StringToHashBucketFast (hashing strings into buckets)"),
        ("onnx", HASHED, "StringToHashBucketFast (hashing strings into buckets)"),
        ("onnx", VOCABULARY, "LookupTableFindV2 (a vocabulary lookup)"),  # TFLite has builtin lookup tables
    ],
)
def test_string_ops_without_a_builtin_are_refused_naming_the_op_and_nothing_is_kept(tmp_path, capsys, fmt, feature, op):
    table = json.loads(json.dumps(TABLE))
    table["features"]["user"] = feature
    rows = [{**row, "user": "u123"} for row in ROWS]
    version = table_exporter(tmp_path / "run", table=table, rows=rows).write("best", 1, {"step": 0})
    before = (version / MANIFEST).read_text()
    assert main(["convert", str(version), "--to", fmt]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {fmt}: ") and "Traceback" not in err
    assert op in err and "entry_function" not in err, err
    assert (version / MANIFEST).read_text() == before
    assert not (version / "converted").exists()


def test_bad_arguments_are_refused_before_tensorflow_runs(version, capsys):
    assert main(["convert", str(version), "--to", "tflite", "--tolerance", "0"]) == 2
    assert "--tolerance" in capsys.readouterr().err
    assert main(["convert", str(version.parent / "nope"), "--to", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err
