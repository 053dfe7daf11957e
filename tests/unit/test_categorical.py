"""Categorical features without TensorFlow: `hash_buckets`, `encode`, `embedding_dim` and their defaults."""

from __future__ import annotations

import pytest

from factory.errors import ConfigError
from factory.features.feature import ONE_HOT_MAX, embedding_size
from factory.features.spec import FeatureSpec


def spec(**features) -> FeatureSpec:
    return FeatureSpec.from_dict(
        {"features": features, "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}}}
    )


def test_encodings_default_by_the_number_of_ids():
    s = spec(
        small={"dtype": "string", "shape": [], "vocabulary": [f"v{i}" for i in range(ONE_HOT_MAX)]},
        large={"dtype": "string", "shape": [], "vocabulary": [f"v{i}" for i in range(ONE_HOT_MAX)], "oov_buckets": 1},
        hashed={"dtype": "string", "shape": [], "hash_buckets": 5000},
        ids={"dtype": "int64", "shape": [], "hash_buckets": 10, "encode": "embedding", "embedding_dim": 3},
        chosen={"dtype": "string", "shape": [], "hash_buckets": 5000, "encode": "one_hot"},
        number={"dtype": "float32", "shape": []},
    )
    assert (s["small"].ids, s["small"].encoded_as, s["small"].embedding_width) == (50, "one_hot", None)
    assert (s["large"].ids, s["large"].encoded_as, s["large"].embedding_width) == (51, "embedding", embedding_size(51))
    assert (s["hashed"].encoded_as, s["hashed"].embedding_width, s["hashed"].output_dtype) == ("embedding", 64, "int64")
    assert (s["ids"].encoded_as, s["ids"].embedding_width) == ("embedding", 3)
    assert s["chosen"].encoded_as == "one_hot"
    assert s["number"].ids is None and s["number"].encoded_as is None
    assert [embedding_size(n) for n in (2, 50, 300, 2000, 50_000)] == [4, 14, 39, 64, 64]


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ({"dtype": "float32", "shape": [], "embedding_dim": 8}, "features.a.embedding_dim: applies to categorical"),
        ({"dtype": "string", "shape": [], "encode": "embedding"}, "features.a.encode: applies to categorical"),
        ({"dtype": "string", "shape": [], "hash_buckets": 0}, "features.a.hash_buckets: 0 is below the minimum of 1"),
        ({"dtype": "float32", "shape": [], "hash_buckets": 8}, "features.a.hash_buckets: hashes strings or int64 ids"),
        (
            {"dtype": "string", "shape": [], "vocabulary": ["x"], "hash_buckets": 8},
            "features.a.hash_buckets: a feature has a vocabulary or hash buckets, not both",
        ),
        (
            {"dtype": "string", "shape": [], "hash_buckets": 8, "encode": "one_hot", "embedding_dim": 2},
            "features.a.embedding_dim: `encode: one_hot` has no embedding",
        ),
        ({"dtype": "string", "shape": [], "hash_buckets": 8, "encode": "dense"}, "features.a.encode: 'dense'"),
    ],
)
def test_a_categorical_key_that_cannot_work_is_named(feature, expected):
    with pytest.raises(ConfigError) as caught:
        spec(a=feature)
    assert expected in str(caught.value)


def test_bins_and_crosses_are_categorical_inputs():
    s = FeatureSpec.from_dict(
        {
            "features": {
                "age": {"dtype": "float32", "shape": [], "bins": [18, 40, 65]},
                "income": {"dtype": "float32", "shape": [], "bins": {"auto": 10}},
                "color": {"dtype": "string", "shape": [], "vocabulary": ["red", "blue"]},
            },
            "crosses": [{"features": ["age", "color"], "hash_buckets": 100}],
            "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
        }
    )
    assert (s["age"].ids, s["age"].encoded_as, s["age"].output_dtype) == (4, "one_hot", "int64")
    assert s["income"].auto_statistics == ("bins",) and s["income"].waits_for == "bins: {auto: 10}"
    assert s.input_names == ("age", "income", "color", "age_x_color")
    cross = s.cross("age_x_color")
    assert (cross.ids, cross.encoded_as, cross.features) == (100, "one_hot", ("age", "color"))
    resolved = s.with_statistics({"features": {"income": {"bins": [1.0, 2.0, 5.0]}}})
    assert resolved["income"].bins == (1.0, 2.0, 5.0) and resolved["income"].ids == 4
    assert not s.without_auto().crosses and s.without_auto()["income"].bins is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"crosses": [{"features": ["age", "colour"], "hash_buckets": 9}]}, "'colour' is not a feature (did you mean"),
        ({"crosses": [{"features": ["age", "x"], "hash_buckets": 9}]}, "'x' is not a categorical scalar"),
        ({"crosses": [{"features": ["age"], "hash_buckets": 9}]}, "crosses[0].features"),
        ({"crosses": [{"features": ["age", "color"], "hash_buckets": 0}]}, "crosses[0].hash_buckets"),
        ({"crosses": [{"features": ["age", "color"], "hash_buckets": 9, "name": "x"}]}, "the name 'x' is already used"),
    ],
)
def test_a_cross_that_cannot_work_is_named(extra, expected):
    features = {
        "age": {"dtype": "float32", "shape": [], "bins": [18, 40]},
        "color": {"dtype": "string", "shape": [], "vocabulary": ["red"]},
        "x": {"dtype": "float32", "shape": []},
    }
    with pytest.raises(ConfigError) as caught:
        FeatureSpec.from_dict({"features": features, **extra})
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        (
            {"dtype": "float32", "shape": [], "bins": [3, 2]},
            "features.a.bins: the boundaries must be strictly increasing",
        ),
        ({"dtype": "string", "shape": [], "bins": [1, 2]}, "features.a.bins: bucketizes numbers"),
        ({"dtype": "float32", "shape": [], "bins": {"auto": 1}}, "features.a.bins"),
        (
            {"dtype": "float32", "shape": [], "bins": [1], "preprocess": {"scale": 2}},
            "features.a.preprocess: a bucketized feature holds bin ids",
        ),
    ],
)
def test_bins_that_cannot_work_are_named(feature, expected):
    with pytest.raises(ConfigError) as caught:
        spec(a=feature)
    assert expected in str(caught.value)


def test_lists_of_categories_may_be_a_set_or_a_bag_and_scalars_may_not():
    s = spec(
        tags={"dtype": "string", "shape": [None], "vocabulary": ["a", "b"], "encode": "multi_hot"},
        bag={"dtype": "int64", "shape": [None], "hash_buckets": 100, "encode": "embedding"},
        words={"dtype": "string", "shape": [None], "vocabulary": [f"w{i}" for i in range(100)], "max_length": 4},
    )
    assert (s["tags"].encoded_as, s["bag"].encoded_as, s["bag"].embedding_width) == ("multi_hot", "embedding", 21)
    assert s["words"].encoded_as == "one_hot"  # a list without `encode`: one-hot per position, as declared
    with pytest.raises(ConfigError, match=r"features.a.encode: multi_hot encodes a list of categories"):
        spec(a={"dtype": "string", "shape": [], "vocabulary": ["a"], "encode": "multi_hot"})
    with pytest.raises(ConfigError, match=r"features.a.embedding_dim: `encode: multi_hot` has no embedding"):
        spec(a={"dtype": "string", "shape": [None], "vocabulary": ["a"], "encode": "multi_hot", "embedding_dim": 3})
