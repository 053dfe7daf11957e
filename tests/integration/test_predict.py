"""The Python side of a real (tiny) export: ``load_export``, ``Predictor`` and the SavedModel outside factory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import factory
from factory.serving.predictor import PredictError, Predictor, find_export, load_export
from tests.helpers.predict import BIN, N

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
        out = model.signatures["serving_default"](image=tf.constant(np.load({str(tmp_path / "pixels.npy")!r})))
        assert not any(m == "factory" or m.startswith("factory.") for m in sys.modules), "factory was imported"
        # Each weight is stored once (Keras' export alone stores every weight twice).
        stored = tf.train.list_variables({str(predictor.path / "variables" / "variables")!r})
        values = sum(int(np.prod(shape)) for name, shape in stored if "OBJECT_GRAPH" not in name)
        assert values == sum(int(np.prod(v.shape)) for v in model.variables), (values, stored)
        print(json.dumps(out["probabilities"].numpy().tolist()))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(fresh, predictor.predict({"image": pixels[:N]})["probabilities"], atol=1e-6)


def test_saved_model_cli_runs_serving_default(predictor, test_records, tmp_path):
    # TF 2.21's --input_exprs takes Python literals only (no np.zeros): the pixels go in as a uint8 .npy file.
    pixels = test_records[2][:3]
    np.save(tmp_path / "pixels.npy", pixels)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    done = subprocess.run(
        [
            str(BIN / "saved_model_cli"),
            "run",
            "--dir",
            str(predictor.path),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"image={tmp_path / 'pixels.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = predictor.predict({"image": pixels})
    for name in ("class_ids", "probabilities", "logits"):
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"), expected[name], atol=1e-6)


ROW = np.zeros((2, 8, 8, 1), np.uint8)
# (id, features, what the message must say); every one is refused before TensorFlow runs.
BAD_FEATURES = [
    ("missing", {"label": [1, 2]}, ["missing feature 'image'", "expected uint8 of shape [batch, 8, 8, 1]"]),
    (
        "unknown",
        {"image": ROW, "imgae": ROW},
        ["unknown feature 'imgae' (did you mean 'image'?)", "the export takes image (uint8 of shape [batch, 8, 8, 1])"],
    ),
    (
        "shape",
        {"image": np.zeros((2, 8, 8))},
        ["feature 'image': expected uint8 of shape [batch, 8, 8, 1], got float64 of shape [2, 8, 8]"],
    ),
    ("unbatched", {"image": ROW[0]}, ["got uint8 of shape [8, 8, 1]", "for a single example pass [x] or x[None]"]),
    (
        "strings",
        {"image": np.full((2, 8, 8, 1), "7")},
        ["feature 'image': expected uint8 of shape [batch, 8, 8, 1], got string of shape [2, 8, 8, 1]"],
    ),
    (
        "out_of_range",
        {"image": np.where(np.arange(128).reshape(2, 8, 8, 1) == 77, 300, 0)},
        ["feature 'image': 300 at [1, 1, 5, 0] is outside the uint8 range 0..255"],
    ),
    (
        "fraction",
        {"image": np.full((2, 8, 8, 1), 0.5)},
        ["feature 'image': 0.5 at [0, 0, 0, 0] is not a whole number (uint8 holds whole numbers)"],
    ),
    ("ragged", {"image": [[1, 2], [3]]}, ["feature 'image'", "nested lists of unequal length"]),
    (
        "none_inside",
        {"image": [[[[None]] * 8] * 8]},
        ["feature 'image': NoneType None at [0, 0, 0, 0] is not a number"],
    ),
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
