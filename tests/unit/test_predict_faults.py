"""Predict under faults, without TensorFlow: a version deleted under a reader, non-finite inputs, strict JSON out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from factory.cli.predict_output import JsonLinesOutput
from factory.errors import RecordError
from factory.serving.export_tree import ExportTree
from factory.serving.manifest import find_export, follow, vanished
from factory.serving.predictor import PredictError, Predictor

SPEC = {
    "features": {
        "x": {"dtype": "float32", "shape": [3]},
        "z": {"dtype": "float32", "shape": [], "default": 0.5},
        "v": {"dtype": "float32", "shape": [2], "default": [0.25, -1.0]},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 3}},
}


def fake_export(run: Path, policy: str, version: int) -> Path:
    """A version dir with a manifest and an empty saved_model.pb, published the way the exporter does."""
    tree = ExportTree(run)
    staging = tree.staging(policy, version)
    (staging / "assets.extra").mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"")
    manifest = {"policy": policy, "version": version, "feature_spec": SPEC}
    (staging / "assets.extra" / "manifest.json").write_text(json.dumps(manifest))
    path = tree.publish(staging, policy, version)
    tree.point(policy, version)
    return path


@pytest.fixture
def run(tmp_path) -> Path:
    for version in (1, 2, 3):
        fake_export(tmp_path / "run", "best", version)
    return tmp_path / "run"


# -- a version deleted under a reader -------------------------------------------------------------


def test_follow_resolves_the_given_path_again_after_retention_deletes_the_version(run):
    tree = ExportTree(run)
    for given in (run, run / "export", run / "export" / "best", run / "export" / "best" / "current"):
        gone = find_export(given)
        assert gone.name == "3"
        tree.point("best", 2)
        assert tree.prune("best", [3]) == [3]  # the real retention code; current has moved on
        assert vanished(gone)
        assert follow(given, gone).resolve() == (run / "export" / "best" / "2").resolve()
        fake_export(run, "best", 3)  # back for the next path
    # Nothing half-written is ever a version: a staging dir and a trash dir are not.
    assert sorted(p.name for p in (run / "export").iterdir()) == ["best"]


def test_a_version_given_itself_or_the_last_one_gone_is_one_line(run):
    tree = ExportTree(run)
    version = run / "export" / "best" / "3"
    tree.point("best", 2)
    tree.prune("best", [3])
    with pytest.raises(PredictError) as err:
        follow(version, version)
    message = str(err.value)
    assert message == (
        f"{version} was deleted while it was being loaded (export retention of a running training removes old "
        f"versions); pass its policy dir ({version.parent}) to load the version that replaced it"
    )
    gone = run / "export" / "best" / "2"
    assert tree.remove_newer("best", 1) == [1, 2]  # every version: a resume from before the first export
    with pytest.raises(PredictError) as err:
        follow(run, gone)
    assert str(err.value) == (
        f"{gone} was deleted while it was being loaded (export retention of a running training removes old "
        f"versions), and {run} holds no other export; train with an export policy to write one"
    )
    assert "\n" not in str(err.value) and not os.path.lexists(run / "export" / "best" / "current")


def test_a_predictor_resolves_a_current_link_to_the_version_it_points_at_now(run):
    predictor = Predictor(run / "export" / "best" / "current")
    assert predictor.path == (run / "export" / "best" / "3").resolve() and predictor.version == 3


# -- non-finite inputs ----------------------------------------------------------------------------


NAN, INF = float("nan"), float("inf")
GOOD = {"x": [[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]], "z": [1.0, 2.0], "v": [[1.0, 2.0], [3.0, 4.0]]}
# (id, features, the message's start: `{}` is the example, counted from the batch's `start`).
NON_FINITE = [
    ("nan_without_default", {**GOOD, "x": [[1.0, 2.0, 3.0], [0.0, NAN, 4.0]]}, "feature 'x': nan at [{}, 1] is NaN"),
    ("inf", {**GOOD, "z": [1.0, INF]}, "feature 'z': inf at [{}] is infinite; float32 values must be finite numbers"),
    ("minus_inf", {**GOOD, "x": [[0.0, 1.0, 4.0], [-INF, 2.0, 3.0]]}, "feature 'x': -inf at [{}, 0] is infinite"),
    (
        "beyond_float32",
        {**GOOD, "x": [[1.0, 2.0, 3.0], [0.0, 1.0, 1e39]]},
        "feature 'x': 1e+39 at [{}, 2] is outside the float32 range",
    ),
    ("nan_among_numbers", {**GOOD, "v": [[1.0, 2.0], [NAN, 4.0]]}, "feature 'v': nan at [{}, 0] is NaN"),
    ("object_array", {**GOOD, "z": np.array([1.0, INF], dtype=object)}, "feature 'z': inf at [{}] is infinite"),
]


@pytest.mark.parametrize("features, message", [c[1:] for c in NON_FINITE], ids=[c[0] for c in NON_FINITE])
def test_non_finite_floats_are_refused_by_feature_and_example(run, features, message):
    predictor = Predictor(run)
    for start in (0, 7):  # positions count from the batch's first example
        with pytest.raises(RecordError) as err:  # a PredictError is a RecordError
            predictor.check(features, start=start)
        assert isinstance(err.value, PredictError)
        assert str(err.value).startswith(message.format(start + 1)), str(err.value)
        assert "\n" not in str(err.value)


def test_a_value_nan_throughout_takes_the_default_where_the_spec_has_one(run):
    predictor = Predictor(run)
    arrays = predictor.check({**GOOD, "z": [NAN, 2.0], "v": [[3.0, 4.0], [NAN, NAN]]})
    assert arrays["z"].tolist() == [0.5, 2.0]
    assert arrays["v"].tolist() == [[3.0, 4.0], [0.25, -1.0]]
    assert arrays["z"].dtype == np.float32
    # One example at a time (factory predict's CSV and JSON Lines rows): the same rule.
    info = predictor.inputs["v"]
    assert info.convert([NAN, NAN], batched=False, default=predictor.default("v")).tolist() == [0.25, -1.0]
    with pytest.raises(PredictError, match=r"^feature 'v': nan at \[1\] is NaN"):
        info.convert([1.0, NAN], batched=False, default=predictor.default("v"))
    assert predictor._loaded is None  # all of it before TensorFlow


# -- strict JSON out ------------------------------------------------------------------------------


def strict(line: str) -> dict:
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(line, parse_constant=refuse)


def test_non_finite_outputs_are_written_as_null(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonLinesOutput(path) as out:
        out.write(
            [5, 6],
            {
                "class_ids": np.array([0, 2]),
                "probabilities": np.array([[NAN, 0.5], [0.25, 0.75]], np.float32),
                "logits": np.array([[INF, -INF], [1.0, 2.0]], np.float32),
            },
        )
    rows = [strict(line) for line in path.read_text().splitlines()]
    assert rows == [
        {"index": 5, "class_ids": 0, "probabilities": [None, 0.5], "logits": [None, None]},
        {"index": 6, "class_ids": 2, "probabilities": [0.25, 0.75], "logits": [1.0, 2.0]},
    ]
