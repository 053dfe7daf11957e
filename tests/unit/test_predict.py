"""Finding an export and checking predict inputs against a manifest, without a model or TensorFlow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from factory.serving.predictor import PredictError, Predictor, find_export


def fake_version(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    return path


def tree(root: Path, layout: dict) -> None:
    """``{"best/3": "version", "best/current": "-> 3", "final": "dir"}`` under ``root``."""
    for name, what in layout.items():
        path = root / name
        if what == "version":
            fake_version(path)
        elif what.startswith("-> "):
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(what[3:], path)
        else:
            path.mkdir(parents=True, exist_ok=True)


# (id, layout under RUN_DIR/export, the dir given (relative to RUN_DIR), the version dir found)
FIND_CASES = [
    (
        "current_link",
        {"best/1": "version", "best/2": "version", "best/current": "-> 1"},
        "export/best",
        "export/best/1",
    ),
    ("no_link_highest_numerically", {"best/9": "version", "best/10": "version"}, "export/best", "export/best/10"),
    ("dangling_link_falls_back", {"best/4": "version", "best/current": "-> 7"}, "export/best", "export/best/4"),
    ("staging_dirs_ignored", {"best/2": "version", ".staging-best-3-1": "version"}, "export", "export/best/2"),
    (
        "best_before_final",
        {"final/1": "version", "best/3": "version", "latest/5": "version"},
        "export",
        "export/best/3",
    ),
    ("final_before_latest", {"final/1": "version", "latest/5": "version"}, ".", "export/final/1"),
    ("empty_best_skipped", {"best": "dir", "latest/2": "version", "latest/current": "-> 2"}, ".", "export/latest/2"),
]


@pytest.mark.parametrize("layout, given, found", [c[1:] for c in FIND_CASES], ids=[c[0] for c in FIND_CASES])
def test_find_export_rules(tmp_path, layout, given, found):
    tree(tmp_path / "export", layout)
    assert find_export(tmp_path / given).resolve() == (tmp_path / found).resolve()


def test_find_export_names_what_it_looked_for(tmp_path):
    tree(tmp_path / "export", {"best": "dir"})
    for path in (tmp_path, tmp_path / "export", tmp_path / "export" / "best"):
        with pytest.raises(
            PredictError, match=r"no export found; looked for saved_model.pb .*current.*best/, final/, latest/.*export/"
        ):
            find_export(path)
    with pytest.raises(PredictError, match="export not found: .*nowhere does not exist"):
        find_export(tmp_path / "nowhere")
    version = fake_version(tmp_path / "export" / "best" / "1")
    with pytest.raises(PredictError, match=r"a SavedModel without assets.extra/manifest.json"):
        Predictor(version)


MIXED = {
    "features": {
        "x": {"dtype": "float32", "shape": [3]},
        "color": {"dtype": "string", "shape": [], "vocabulary": ["red", "green", "blue"]},
        "tags": {"dtype": "string", "shape": [2], "default": ["a", "b"]},
        "n": {"dtype": "int64", "shape": [], "default": 7},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 3}},
}


def test_check_strings_vocabulary_and_defaults_from_the_manifest_alone(tmp_path):
    version = fake_version(tmp_path / "export" / "best" / "1")
    (version / "assets.extra").mkdir()
    # No `signatures` in this manifest: the inputs come from the feature spec.
    (version / "assets.extra" / "manifest.json").write_text(
        json.dumps({"policy": "best", "version": 1, "feature_spec": MIXED})
    )
    predictor = Predictor(tmp_path)
    assert {n: (i.dtype, i.shape) for n, i in predictor.inputs.items()} == {
        "x": ("float32", (3,)),
        "color": ("string", ()),
        "tags": ("string", (2,)),
        "n": ("int64", ()),
    }
    good = {"x": np.zeros((3, 3), np.float64), "color": ["red", b"blue", np.str_("green")], "y": [0, 1, 2]}
    arrays = predictor.check(good)
    assert arrays["x"].dtype == np.float32 and arrays["n"].tolist() == [7, 7, 7]
    assert arrays["color"].tolist() == [b"red", b"blue", b"green"] and arrays["tags"].tolist() == [[b"a", b"b"]] * 3
    bad = [
        (
            {**good, "color": ["red", "purple", "blue"]},
            "feature 'color': 'purple' at [1] is not in the vocabulary; expected one of red, green, blue",
        ),
        (
            {**good, "color": ["red", "gren", "blue"]},
            "feature 'color': 'gren' at [1] is not in the vocabulary (did you mean 'green'?)",
        ),
        ({**good, "color": [1, 2, 3]}, "feature 'color': expected string of shape [batch], got int64 of shape [3]"),
        ({**good, "tags": np.array([["a", 1]] * 3, dtype=object)}, "feature 'tags': int 1 at [0, 1] is not a string"),
        ({**good, "n": [1, 2.5, 3]}, "feature 'n': 2.5 at [1] is not a whole number (int64 holds whole numbers)"),
        ({**good, "n": [1, 2]}, "features have different batch sizes ('x' 3, 'color' 3, 'n' 2)"),
        ({"y": [1]}, "missing feature 'x': expected float32 of shape [batch, 3], got nothing"),
        (
            {"x": np.zeros((3, 4)), "color": good["color"]},
            "feature 'x': expected float32 of shape [batch, 3], got float64 of shape [3, 4]",
        ),
    ]
    for features, message in bad:
        with pytest.raises(PredictError) as err:
            predictor.check(features)
        assert message in str(err.value)
    assert predictor._loaded is None
