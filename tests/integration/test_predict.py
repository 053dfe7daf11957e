"""Loading exports and predicting: ``load_export``, ``Predictor`` and ``factory predict`` on a real (tiny) run."""

from __future__ import annotations

import base64
import glob
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import factory
from factory.cli import main
from factory.features.images import encode_png
from factory.serving.predictor import PredictError, Predictor, find_export, load_export
from tests.helpers import TINY, compose

BIN = Path(sys.executable).parent
# Records used for the file formats (the test split has 360; the text formats take the first few).
N = 40


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, _record_cache):
    from factory.training.runner import train

    run = tmp_path_factory.mktemp("predict") / "run"
    train(compose(*TINY, "train.max_steps=40"), run_dir=run)
    return run


@pytest.fixture(scope="module")
def predictor(run_dir):
    return load_export(run_dir)


@pytest.fixture(scope="module")
def test_records(run_dir):
    """The digits test split as serialized records, and their decoded pixels and labels."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(os.environ["FACTORY_CACHE"], "digits", "test-*.tfrecord")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    parsed = tf.io.parse_example(records, {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)})
    pixels = np.stack([tf.io.decode_png(b, channels=1).numpy() for b in parsed["image"].numpy()])
    return files, records, pixels, parsed["label"].numpy()


@pytest.fixture(scope="module")
def reference(predictor, test_records):
    """What the ``tf_example`` signature gives for every test record."""
    return predictor.predict_examples(test_records[1])


# -- finding an export ----------------------------------------------------------------------------


def test_load_export_from_version_policy_export_and_run_dir(run_dir, predictor):
    current = run_dir / "export" / "best" / os.readlink(run_dir / "export" / "best" / "current")
    for path in (current, run_dir / "export" / "best", run_dir / "export", run_dir):
        assert find_export(path).resolve() == current.resolve(), path
    loaded = factory.load_export(run_dir / "export" / "best")
    assert loaded.version == predictor.version == int(current.name) and loaded.policy == "best"
    assert loaded.manifest["task"] == "classification"
    assert {name: (i.dtype, i.shape) for name, i in loaded.inputs.items()} == {"image": ("uint8", (8, 8, 1))}
    assert set(loaded.outputs) == {"class_ids", "probabilities", "logits"}
    assert loaded.outputs["probabilities"].shape == (10,)
    older = sorted(p for p in (run_dir / "export" / "best").iterdir() if p.name.isdigit())[0]
    assert load_export(older).version == int(older.name)


# -- predicting -----------------------------------------------------------------------------------


def test_predict_agrees_with_predict_examples(predictor, test_records, reference):
    _, records, pixels, labels = test_records
    dense = predictor.predict({"image": pixels, "label": labels})  # labels are ignored
    assert list(dense) == ["class_ids", "logits", "probabilities"]
    for name, want in reference.items():
        assert dense[name].shape == want.shape
        np.testing.assert_allclose(dense[name], want, atol=1e-5)
    np.testing.assert_array_equal(dense["class_ids"], np.argmax(dense["probabilities"], axis=1))
    assert (dense["class_ids"] == labels).mean() > 0.2  # the model learnt something (chance: 0.1)
    # Batches of 7 give the same as one batch; so do a list of lists and an int array.
    small = predictor.predict({"image": pixels[:20].tolist()}, batch_size=7)
    np.testing.assert_allclose(small["probabilities"], reference["probabilities"][:20], atol=1e-5)
    by_sevens = predictor.predict_examples(records[:20], batch_size=7)
    np.testing.assert_array_equal(by_sevens["class_ids"], reference["class_ids"][:20])
    empty = predictor.predict({"image": np.zeros((0, 8, 8, 1), np.uint8)})
    assert empty["probabilities"].shape == (0, 10)


def test_a_fresh_process_with_only_tensorflow_gives_the_same(predictor, test_records, tmp_path):
    _, _, pixels, _ = test_records
    np.save(tmp_path / "pixels.npy", pixels[:N])
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({str(predictor.path)!r})
        out = model.signatures["serving_default"](image=tf.constant(np.load({str(tmp_path / 'pixels.npy')!r})))
        assert not any(m == "factory" or m.startswith("factory.") for m in sys.modules), "factory was imported"
        print(json.dumps(out["probabilities"].numpy().tolist()))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(fresh, predictor.predict({"image": pixels[:N]})["probabilities"], atol=1e-6)


def test_saved_model_cli_runs_serving_default(predictor, test_records, tmp_path):
    # TF 2.21's --input_exprs takes Python literals only (no np.zeros): the pixels go in as a uint8 .npy file.
    pixels = test_records[2][:3]
    np.save(tmp_path / "pixels.npy", pixels)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    done = subprocess.run(
        [str(BIN / "saved_model_cli"), "run", "--dir", str(predictor.path), "--tag_set", "serve",
         "--signature_def", "serving_default", "--inputs", f"image={tmp_path / 'pixels.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = predictor.predict({"image": pixels})
    for name in ("class_ids", "probabilities", "logits"):
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"), expected[name], atol=1e-6)


ROW = np.zeros((2, 8, 8, 1), np.uint8)
# (id, features, what the message must say); every one is refused before TensorFlow runs.
BAD_FEATURES = [
    ("missing", {"label": [1, 2]}, ["missing feature 'image'", "expected uint8 of shape [batch, 8, 8, 1]"]),
    ("unknown", {"image": ROW, "imgae": ROW}, ["unknown feature 'imgae' (did you mean 'image'?)", "the export takes image (uint8 of shape [batch, 8, 8, 1])"]),
    ("shape", {"image": np.zeros((2, 8, 8))}, ["feature 'image': expected uint8 of shape [batch, 8, 8, 1], got float64 of shape [2, 8, 8]"]),
    ("unbatched", {"image": ROW[0]}, ["got uint8 of shape [8, 8, 1]", "for a single example pass [x] or x[None]"]),
    ("strings", {"image": np.full((2, 8, 8, 1), "7")}, ["feature 'image': expected uint8 of shape [batch, 8, 8, 1], got string of shape [2, 8, 8, 1]"]),
    ("out_of_range", {"image": np.where(np.arange(128).reshape(2, 8, 8, 1) == 77, 300, 0)}, ["feature 'image': 300 at [1, 1, 5, 0] is outside the uint8 range 0..255"]),
    ("fraction", {"image": np.full((2, 8, 8, 1), 0.5)}, ["feature 'image': 0.5 at [0, 0, 0, 0] is not a whole number (uint8 holds whole numbers)"]),
    ("ragged", {"image": [[1, 2], [3]]}, ["feature 'image'", "nested lists of unequal length"]),
    ("none_inside", {"image": [[[[None]] * 8] * 8]}, ["feature 'image': NoneType None at [0, 0, 0, 0] is not a number"]),
    ("not_a_mapping", [ROW], ["expected a mapping of feature name to array", "got list"]),
]


@pytest.mark.parametrize("features, expected", [c[1:] for c in BAD_FEATURES], ids=[c[0] for c in BAD_FEATURES])
def test_predict_names_the_bad_feature_before_tensorflow_runs(run_dir, features, expected):
    fresh = Predictor(run_dir)  # not loaded: the check alone must refuse the input
    with pytest.raises(PredictError) as err:
        fresh.predict(features)
    for text in expected:
        assert text in str(err.value)
    assert fresh._loaded is None


def test_predict_examples_names_the_bad_record(predictor, test_records):
    import tensorflow as tf

    records = test_records[1][:3]
    label_only = tf.train.Example()
    label_only.features.feature["label"].int64_list.value.append(3)
    cases = [
        ([*records, label_only.SerializeToString()], 3, "lacks the required feature 'image' (uint8 [8, 8, 1] (png))"),
        ([records[0], b"\x07not a record"], 1, "not a serialized tf.train.Example"),
        ([records[0], "text"], 1, "expected a serialized tf.train.Example (bytes), got str"),
    ]
    for batch, index, text in cases:
        with pytest.raises(PredictError) as err:
            predictor.predict_examples(batch)
        assert err.value.index == index and str(err.value) == f"record {index}: {text}"


# -- factory predict ------------------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def b64_png(pixels: np.ndarray) -> str:
    return base64.b64encode(encode_png(pixels)).decode()


def inputs(kind: str, directory: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """The first N test images written as ``kind``; labels are included where a user would have them."""
    images, labels = pixels[:N], labels[:N]
    if kind == "jsonl_pixels":
        return write_jsonl(directory / "in.jsonl", [{"image": im.tolist(), "label": int(y)} for im, y in zip(images, labels, strict=True)])
    if kind == "jsonl_base64":
        rows = [{"image": {"b64": b64_png(im)}} if i % 2 else {"image": b64_png(im)} for i, im in enumerate(images)]
        return write_jsonl(directory / "in.jsonl", rows)
    if kind == "csv_paths":
        (directory / "images").mkdir()
        lines = ["label,image"]
        for i, (im, y) in enumerate(zip(images, labels, strict=True)):
            (directory / "images" / f"{i}.png").write_bytes(encode_png(im))
            lines.append(f"{y},images/{i}.png")
        (directory / "in.csv").write_text("\n".join(lines) + "\n")
        return directory / "in.csv"
    if kind == "npz_pixels":
        np.savez(directory / "in.npz", image=images, label=labels)
        return directory / "in.npz"
    if kind == "npz_png_bytes":
        np.savez(directory / "in.npz", image=np.array([encode_png(im) for im in images]))
        return directory / "in.npz"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["jsonl_pixels", "jsonl_base64", "csv_paths", "npz_pixels", "npz_png_bytes"])
def test_cli_predicts_each_file_format_alike(capsys, tmp_path, run_dir, test_records, reference, kind):
    _, _, pixels, labels = test_records
    source = inputs(kind, tmp_path, pixels, labels)
    out = tmp_path / "out" / "predictions.jsonl"
    out.parent.mkdir()
    status, stdout, stderr = run_cli(capsys, run_dir, "--input", source, "--output", out, "--batch-size", 16)
    assert status == 0, stderr
    assert stdout.startswith(f"predicted {N} records with ")
    rows = read_lines(out)
    assert [r["index"] for r in rows] == list(range(N))
    assert set(rows[0]) == {"index", "class_ids", "probabilities", "logits"}
    assert [r["class_ids"] for r in rows] == reference["class_ids"][:N].tolist()
    np.testing.assert_allclose([r["probabilities"] for r in rows], reference["probabilities"][:N], atol=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.jsonl"]  # no partial file left


def test_cli_predicts_tfrecords_to_stdout(capsys, run_dir, test_records, reference):
    files = test_records[0]
    pattern = os.path.join(os.path.dirname(files[0]), "test-*.tfrecord")
    status, stdout, stderr = run_cli(capsys, run_dir / "export", "--input", pattern, "--batch-size", 100)
    assert status == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(len(test_records[1])))
    assert [r["class_ids"] for r in rows] == reference["class_ids"].tolist()
    np.testing.assert_allclose([r["logits"] for r in rows], reference["logits"], atol=1e-5)
    assert stderr.startswith(f"predicted {len(rows)} records with ")


def tfrecord_lacking_image(directory: Path, good: bytes) -> Path:
    import tensorflow as tf

    example = tf.train.Example()
    example.features.feature["label"].int64_list.value.append(1)
    path = directory / "in.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in (good, good, example.SerializeToString()):
            writer.write(record)
    return path


ZEROS = [[[0]] * 8] * 8
# (id, how to write the input into a dir, what the error must say)
BAD_INPUTS = [
    ("missing", lambda d, r: write_jsonl(d / "in.jsonl", [{"image": ZEROS}, {"label": 3}]),
     ["in.jsonl line 2: missing feature 'image': expected uint8 of shape [8, 8, 1]", "got nothing"]),
    ("missing_csv_column", lambda d, r: (d / "in.csv").write_text("label\n1\n") and d / "in.csv",
     ["in.csv row 1: missing feature 'image'"]),
    ("unknown", lambda d, r: write_jsonl(d / "in.jsonl", [{"imgae": ZEROS}]),
     ["in.jsonl line 1: unknown key 'imgae' (did you mean 'image'?)"]),
    ("wrong_shape", lambda d, r: write_jsonl(d / "in.jsonl", [{"image": ZEROS}, {"image": [[0] * 8] * 8}]),
     ["in.jsonl line 2: feature 'image': expected uint8 of shape [8, 8, 1], got int64 of shape [8, 8]"]),
    ("strings", lambda d, r: write_jsonl(d / "in.jsonl", [{"image": [[["x"]] * 8] * 8}]),
     ["in.jsonl line 1: feature 'image': expected uint8 of shape [8, 8, 1], got string of shape [8, 8, 1]"]),
    ("out_of_range", lambda d, r: write_jsonl(d / "in.jsonl", [{"image": [[[300]] * 8] * 8}]),
     ["feature 'image': 300 at [0, 0, 0] is outside the uint8 range 0..255"]),
    ("npz_wrong_shape", lambda d, r: np.savez(d / "in.npz", image=np.zeros((3, 8, 8))) or d / "in.npz",
     ["in.npz: feature 'image': expected uint8 of shape [batch, 8, 8, 1], got float64 of shape [3, 8, 8]"]),
    ("image_too_big", lambda d, r: write_jsonl(d / "in.jsonl", [{"image": b64_png(np.zeros((16, 16, 1), np.uint8))}]),
     ["in.jsonl line 1: feature 'image': expected an image of 8x8 pixels, got a PNG image of 16x16"]),
    ("image_file_missing", lambda d, r: (d / "in.csv").write_text("image\nnope.png\n") and d / "in.csv",
     ["in.csv row 1: feature 'image': 'nope.png' is neither an image file", "nor base64 PNG/JPEG data"]),
    ("tfrecord_lacks_image", lambda d, r: tfrecord_lacking_image(d, r),
     ["in.tfrecord, record 2: lacks the required feature 'image' (uint8 [8, 8, 1] (png))"]),
]


@pytest.mark.parametrize("write, expected", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_cli_bad_input_exits_2_naming_the_feature(capsys, tmp_path, run_dir, test_records, write, expected):
    source = write(tmp_path, test_records[1][0])
    out = tmp_path / "out.jsonl"
    out.write_text("earlier predictions\n")
    status, stdout, stderr = run_cli(capsys, run_dir, "--input", source, "--output", out)
    assert status == 2 and stdout == ""
    assert stderr.startswith("error: ") and "Traceback" not in stderr
    for text in expected:
        assert text in stderr
    assert out.read_text() == "earlier predictions\n"  # left as it was
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_cli_refuses_a_path_without_an_export(capsys, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"image": ZEROS}])
    status, _, stderr = run_cli(capsys, tmp_path, "--input", tmp_path / "in.jsonl")
    assert status == 2 and stderr.startswith(f"error: {tmp_path}: no export found")


def test_cli_binary_reports_bad_input_without_a_traceback(tmp_path, run_dir):
    source = write_jsonl(tmp_path / "in.jsonl", [{"image": [[0] * 8] * 8}])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([str(BIN / "factory"), "predict", str(run_dir), "--input", str(source)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: {source} line 1: feature 'image': expected uint8 of shape [8, 8, 1], got int64 of shape [8, 8]\n"


# -- an export of a table: vectors and defaults ----------------------------------------------------

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
    filled = {"x": [r["x"] for r in TABLE_ROWS], "n": [float(r.get("n", 7)) for r in TABLE_ROWS]}  # whole floats are fine for int64
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
