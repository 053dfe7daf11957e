"""Feature spec validation: every problem at once, with its dotted path, without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from factory import ConfigError, FeatureSpec

GOOD_FEATURE = {"dtype": "float32", "shape": [4]}


def spec_with(**feature):
    return {"features": {"x": feature}, "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 3}}}


BAD_SPECS = [
    # (spec, expected fragments of one problem line)
    (spec_with(dtype="float32", shape=[8, 8, 1], encoding="gif"), "features.x.encoding: 'gif' is not one of png, jpeg"),
    (spec_with(dtype="float64", shape=[2]), "features.x.dtype: 'float64' is not one of float32, int64, uint8, string"),
    (spec_with(dtype="float32", shap=[2]), "features.x.shap: unknown key (did you mean 'shape'?)"),
    (spec_with(dtype="float32"), "features.x.shape: required key is missing"),
    (spec_with(dtype="float32", shape=[0]), "features.x.shape[0]: 0 is below the minimum of 1"),
    (spec_with(dtype="float32", shape=["a"]), "features.x.shape[0]: 'a' is not valid here"),
    (spec_with(dtype="float32", shape=[2, None]), "features.x.shape: only the first dimension may be null"),
    (spec_with(dtype="float32", shape=[8, 8, 1], encoding="png"), "features.x.encoding: png images decode to uint8"),
    (
        spec_with(dtype="uint8", shape=[8, 8], encoding="png"),
        "features.x.shape: an encoded image needs a fixed [height, width, channels] shape",
    ),
    (
        spec_with(dtype="uint8", shape=[8, 8, 2], encoding="jpeg"),
        "features.x.shape: jpeg images have 1, 3 channels, got 2",
    ),
    (spec_with(dtype="int64", shape=[], vocabulary=["a"]), "features.x.vocabulary: a vocabulary maps strings to ids"),
    (spec_with(dtype="string", shape=[], oov_buckets=2), "features.x.oov_buckets: needs a `vocabulary`"),
    (spec_with(dtype="string", shape=[], vocabulary=["a", "a"]), "features.x.vocabulary: duplicate entries 'a'"),
    (
        spec_with(dtype="float32", shape=[2], default=[1, 2, 3]),
        "features.x.default: expected shape [2] or a scalar, got shape [3]",
    ),
    (
        spec_with(dtype="int64", shape=[], default=1.5),
        "features.x.default: 1.5 is not a whole number (int64 holds whole numbers)",
    ),
    (
        spec_with(dtype="string", shape=[], vocabulary=["a"], default="b"),
        "features.x.default: 'b' is not in the vocabulary",
    ),
    (spec_with(dtype="float32", shape=[2], ragged=True), "features.x.ragged: only applies to variable-length features"),
    (
        spec_with(dtype="float32", shape=[None], ragged=True, max_length=3),
        "features.x.max_length: a ragged feature is not padded",
    ),
    (
        spec_with(dtype="float32", shape=[3], preprocess={"normalize": {"mean": [1, 2], "std": 1}}),
        "features.x.preprocess.normalize.mean: 2 values, but the last dimension has size 3",
    ),
    (
        spec_with(dtype="float32", shape=[3], preprocess={"normalize": {"mean": 0, "std": 0}}),
        "features.x.preprocess.normalize.std: must be positive",
    ),
    (
        spec_with(dtype="float32", shape=[3], preprocess={"sclae": 2}),
        "features.x.preprocess.sclae: unknown key (did you mean 'scale'?)",
    ),
    (
        spec_with(dtype="string", shape=[], preprocess={"scale": 2}),
        "features.x.preprocess: applies to numeric features",
    ),
    (
        spec_with(dtype="float32", shape=[3], augment={"flip": "horizontal"}),
        "features.x.augment: augmentation applies to images",
    ),
    (
        spec_with(dtype="uint8", shape=[8, 8, 1], augment={"flip": "sideways"}),
        "features.x.augment.flip: 'sideways' is not one of none, horizontal, vertical, both",
    ),
    (
        spec_with(dtype="uint8", shape=[8, 8, 1], augment={"crop": [9, 4]}),
        "features.x.augment.crop: [9, 4] is larger than the image (8x8)",
    ),
    (
        spec_with(dtype="uint8", shape=[8, 8, 1], augment={"brightness": 2}),
        "features.x.augment.brightness: 2 is above the maximum of 1",
    ),
    ({"features": {"1x": GOOD_FEATURE}}, "features: '1x' is not a valid name"),
    ({"features": {}}, "features: needs at least 1 entry"),
    ({"feature": {"x": GOOD_FEATURE}}, "feature: unknown key (did you mean 'features'?)"),
    (
        {"features": {"x": GOOD_FEATURE}, "labels": {"x": {"dtype": "int64", "shape": [], "num_classes": 2}}},
        "labels.x: the name 'x' is already used in features.x",
    ),
    (
        {"features": {"x": GOOD_FEATURE}, "labels": {"y": {"dtype": "float32", "shape": [], "task": "classification"}}},
        "labels.y.num_classes: a classification label needs `num_classes`",
    ),
    (
        {"features": {"x": GOOD_FEATURE}, "labels": {"y": {"dtype": "float32", "shape": [], "num_classes": 3}}},
        "labels.y.dtype: class ids are integers",
    ),
    (
        {
            "features": {"x": GOOD_FEATURE},
            "labels": {"y": {"dtype": "string", "shape": [], "vocabulary": ["a", "b"], "num_classes": 3}},
        },
        "labels.y.num_classes: 3 does not match the vocabulary's 2 entries",
    ),
    (
        {"features": {"x": GOOD_FEATURE}, "labels": {"y": {"dtype": "float32", "shape": [], "num_classes": 1}}},
        "labels.y.num_classes: 1 is below the minimum of 2",
    ),
    (
        {"features": {"x": GOOD_FEATURE}, "weight": {"name": "x"}},
        "weight.name: the name 'x' is already used in features.x",
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"), BAD_SPECS, ids=[e.split(":")[0] + "|" + e.split(":")[1][:25] for _, e in BAD_SPECS]
)
def test_bad_spec_reports_dotted_path_and_fix(spec, expected):
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_dict(spec)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once():
    spec = {
        "features": {
            "image": {"dtype": "uint8", "shape": [8, 8, 1], "encoding": "gif"},
            "x": {"dtype": "float32", "shap": [2]},
        },
        "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": "ten"}},
    }
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_dict(spec, source="spec.yaml")
    problems = info.value.problems
    assert "features.image.encoding: 'gif' is not one of png, jpeg" in problems
    assert any(p.startswith("features.x.shap: unknown key (did you mean 'shape'?)") for p in problems)
    assert "features.x.shape: required key is missing" in problems
    assert any(p.startswith("labels.y.num_classes: expected integer") for p in problems)
    assert "4 problems in config in spec.yaml" in str(info.value)


def test_prefix_locates_an_embedded_spec():
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_dict(spec_with(dtype="float32", shape=[8, 8, 1], encoding="gif"), prefix="features")
    assert info.value.problems[0].startswith("features.features.x.encoding:")


def test_good_spec_builds_frozen_typed_objects(digits_like):
    spec = FeatureSpec.from_dict(digits_like)
    image = spec["image"]
    assert image.encoding == "png" and image.shape == (8, 8, 1) and image.stored_shape == ()
    assert image.storage == "bytes" and image.output_dtype == "float32"
    assert image.augment.translate == 1 and image.augment.brightness == pytest.approx(0.1)
    label = spec.label
    assert (label.task, label.num_classes, label.output_dtype) == ("classification", 10, "int64")
    with pytest.raises(AttributeError):
        image.dtype = "float32"  # frozen
    with pytest.raises(KeyError, match="did you mean 'image'"):
        spec["imag"]
    assert spec.to_dict() == digits_like


def test_defaults_are_broadcast_and_tasks_inferred():
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "v": {"dtype": "float32", "shape": [3], "default": 0.5},
                "tokens": {"dtype": "string", "shape": [None], "vocabulary": ["a", "b"], "oov_buckets": 1},
            },
            "labels": {
                "price": {"dtype": "float32", "shape": []},
                "kind": {"dtype": "string", "shape": [], "vocabulary": ["cat", "dog"]},
                "flag": {"dtype": "int64", "shape": [], "task": "binary"},
            },
            "weight": {"name": "w", "default": 1.0},
        }
    )
    assert spec["v"].default == (0.5, 0.5, 0.5) and not spec["v"].required
    assert spec["tokens"].variable and not spec["tokens"].required and spec["tokens"].pad_value == ""
    assert [f.task for f in spec.labels] == ["regression", "classification", "binary"]
    assert spec["kind"].num_classes == 2
    assert spec.weight.name == "w" and spec.weight.default == (1.0,)
    assert [f.name for f in spec.all(labels=False)] == ["v", "tokens"]


def test_from_yaml_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        FeatureSpec.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("features:\n  x: {dtype: float32, shape: [2]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+, column \d+: not valid YAML"):
        FeatureSpec.from_yaml(bad)


def test_shipped_specs_are_valid():
    from factory.validation import resource_dir

    files = sorted((resource_dir("conf") / "features").glob("*.yaml"))
    assert files
    for path in files:
        FeatureSpec.from_yaml(path)


def test_validation_does_not_import_tensorflow(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("features:\n  image: {dtype: uint8, shape: [8, 8, 1], encoding: gif}\n")
    code = textwrap.dedent(
        f"""
        import sys
        from factory import FeatureSpec, ConfigError
        try:
            FeatureSpec.from_yaml({str(spec)!r})
        except ConfigError as err:
            print(err)
        print("tensorflow" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "features.image.encoding: 'gif' is not one of png, jpeg" in out
    assert out.strip().endswith("False")
