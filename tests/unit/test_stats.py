"""`normalize: auto` and `vocabulary: auto` in the spec, and the statistic classes, without TensorFlow."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from factory import ConfigError, FeatureSpec, RecordError
from factory.features.statistics import Normalization, Statistic, Vocabulary

# -- the spec --------------------------------------------------------------------------------------


def spec_with(**feature):
    return {"features": {"x": feature}, "labels": {"y": {"dtype": "float32", "shape": []}}}


BAD_SPECS = [
    (
        spec_with(dtype="float32", shape=[3], preprocess={"normalize": "automatic"}),
        "features.x.preprocess.normalize: 'automatic' is not one of auto",
    ),
    (
        spec_with(dtype="float32", shape=[3], preprocess={"normalize": {"mean": 0}}),
        "features.x.preprocess.normalize.std: required key is missing",
    ),
    (
        spec_with(dtype="string", shape=[], vocabulary="automatic"),
        "features.x.vocabulary: 'automatic' is not one of auto",
    ),
    (spec_with(dtype="string", shape=[], max_tokens=5), "features.x.max_tokens: only applies to `vocabulary: auto`"),
    (
        spec_with(dtype="string", shape=[], vocabulary=["a"], min_count=2),
        "features.x.min_count: only applies to `vocabulary: auto`",
    ),
    (
        spec_with(dtype="string", shape=[], vocabulary="auto", max_tokens=0),
        "features.x.max_tokens: 0 is below the minimum of 1",
    ),
    (
        spec_with(dtype="string", shape=[], vocabulary="auto", min_count=0),
        "features.x.min_count: 0 is below the minimum of 1",
    ),
    (
        spec_with(dtype="float32", shape=[], vocabulary="auto"),
        "features.x.vocabulary: a vocabulary maps strings to ids",
    ),
    (
        spec_with(dtype="string", shape=[], preprocess={"normalize": "auto"}),
        "features.x.preprocess: applies to numeric features",
    ),
    (
        {
            "features": {"x": {"dtype": "float32", "shape": []}},
            "labels": {"y": {"dtype": "string", "shape": [], "vocabulary": "auto"}},
        },
        "labels.y.vocabulary: expected array, got string 'auto'",  # a label's classes are listed
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"), BAD_SPECS, ids=[e.split(":")[0] + "|" + e.split(":")[1][:25] for _, e in BAD_SPECS]
)
def test_schema_and_rules_reject_bad_auto_declarations(spec, expected):
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_dict(spec)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_auto_declarations_are_accepted_and_need_statistics():
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "x": {"dtype": "float32", "shape": [3], "preprocess": {"scale": 2, "normalize": "auto"}},
                "s": {
                    "dtype": "string",
                    "shape": [],
                    "vocabulary": "auto",
                    "max_tokens": 3,
                    "min_count": 2,
                    "oov_buckets": 1,
                },
                "fixed": {"dtype": "float32", "shape": [], "preprocess": {"normalize": {"mean": 1, "std": 2}}},
            },
            "labels": {"y": {"dtype": "float32", "shape": []}},
        }
    )
    assert spec.needs_statistics
    assert [(f.name, f.auto_statistics) for f in spec.auto_features] == [("x", ("normalize",)), ("s", ("vocabulary",))]
    assert (
        spec["s"].vocabulary is None
        and spec["s"].auto_vocabulary.max_tokens == 3
        and spec["s"].auto_vocabulary.min_count == 2
    )
    assert spec["x"].preprocess.normalize.auto and spec["fixed"].auto_statistics == ()
    assert not FeatureSpec.from_dict(spec_with(dtype="float32", shape=[3])).needs_statistics
    # An unresolved spec cannot make a pipeline: it says how to resolve it.
    with pytest.raises(
        ConfigError,
        match=r"features.x \(normalize: auto\), features.s \(vocabulary: auto\): dataset needs the statistics",
    ):
        spec.dataset("nothing-*")


def test_with_statistics_makes_a_spec_that_round_trips():
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "x": {"dtype": "float32", "shape": [2], "preprocess": {"normalize": "auto"}},
                "s": {"dtype": "string", "shape": [], "vocabulary": "auto", "max_tokens": 2, "oov_buckets": 1},
            },
            "labels": {"y": {"dtype": "float32", "shape": []}},
        }
    )
    stats = {
        "features": {"x": {"normalize": {"mean": [1.5, -2.0], "std": [0.5, 3.0]}}, "s": {"vocabulary": ["b", "a"]}}
    }
    resolved = spec.with_statistics(stats)
    assert not resolved.needs_statistics
    assert resolved["x"].preprocess.normalize.mean == (1.5, -2.0) and resolved["x"].preprocess.normalize.std == (
        0.5,
        3.0,
    )
    assert resolved["s"].vocabulary == ("b", "a") and resolved["s"].oov_buckets == 1
    raw = resolved.to_dict()
    assert raw["features"]["x"]["preprocess"]["normalize"] == {"mean": [1.5, -2.0], "std": [0.5, 3.0]}
    assert raw["features"]["s"] == {"dtype": "string", "shape": [], "vocabulary": ["b", "a"], "oov_buckets": 1}
    assert FeatureSpec.from_dict(json.loads(json.dumps(raw))) == resolved
    assert spec.to_dict()["features"]["s"]["vocabulary"] == "auto"  # the original is untouched
    with pytest.raises(ConfigError, match="features.s: the statistics hold no vocabulary"):
        spec.with_statistics({"features": {"x": stats["features"]["x"]}})


# -- the statistic classes ---------------------------------------------------------------------------


def feature(spec: dict, name: str = "x"):
    return FeatureSpec.from_dict(spec)[name]


def test_normalization_fits_mean_and_std_per_channel_after_scale_with_the_default_for_missing_records():
    f = feature(
        spec_with(dtype="float32", shape=[2], default=[1.0, -1.0], preprocess={"scale": -2.0, "normalize": "auto"})
    )
    stat = Statistic.of(f)
    assert isinstance(stat, Normalization) and (stat.kind,) == f.auto_statistics == ("normalize",)
    rng = np.random.default_rng(0)
    shift = np.array([1e6, 7.0])
    batches = [rng.normal(size=(5, 2)) * [1.0, 3.0] + shift, rng.normal(size=(3, 2)) + shift]
    for values in batches:
        stat.fit(values.reshape(-1), missing=2)  # two records per batch lack `x`: training reads [1, -1]
    seen = np.concatenate([*batches, np.tile([1.0, -1.0], (4, 1))])
    entry = stat.entry()
    np.testing.assert_allclose(entry["normalize"]["mean"], seen.mean(axis=0) * -2.0, rtol=1e-12)
    np.testing.assert_allclose(entry["normalize"]["std"], seen.std(axis=0) * 2.0, rtol=1e-9)
    assert entry["count"] == 12 and "constant_channels" not in entry
    assert entry["declared"] == {
        "statistic": "normalize",
        "dtype": "float32",
        "shape": [2],
        "encoding": None,
        "default": [1.0, -1.0],
        "max_length": None,
        "scale": -2.0,
    }
    assert Normalization.describe(entry) == "mean/std of 2 channels"


def test_normalization_without_usable_values_names_the_feature():
    f = feature(spec_with(dtype="float32", shape=[], preprocess={"normalize": "auto"}))
    with pytest.raises(
        RecordError, match="features.x: the training records hold no values to compute `normalize: auto` from"
    ):
        Normalization(f).entry()
    stat = Normalization(f)
    stat.fit(np.array([1.0, np.nan]))
    with pytest.raises(RecordError, match="features.x: the training records hold NaN or infinite values"):
        stat.entry()


def test_a_constant_scalar_gets_std_one_and_a_warning(caplog):
    stat = Normalization(feature(spec_with(dtype="float32", shape=[], preprocess={"normalize": "auto"})))
    stat.fit(np.full(4, 3.0))
    with caplog.at_level(logging.WARNING, logger="factory"):
        entry = stat.entry()
    assert entry["normalize"] == {"mean": [3.0], "std": [1.0]} and entry["constant_channels"] == [0]
    assert "features.x: it is constant in the training records (std 0); dividing by 1.0 instead" in caplog.text


def test_vocabulary_ranks_by_count_then_text_and_counts_what_it_leaves_out():
    f = feature(
        spec_with(dtype="string", shape=[], default="b", vocabulary="auto", max_tokens=2, min_count=2, oov_buckets=1)
    )
    stat = Statistic.of(f)
    assert isinstance(stat, Vocabulary)
    stat.fit(
        np.array([b"c", b"a", b"c", b"z", b"a", b"q"], dtype=object), missing=2
    )  # two records read the default 'b'
    entry = stat.entry()
    assert entry["vocabulary"] == ["a", "b"]  # a, b and c tie at 2: text order; z and q are seen once (min_count 2)
    assert entry["values"] == 8 and entry["distinct"] == 5
    assert entry["left_out"] == {"distinct": 3, "values": 4}
    assert (
        entry["declared"]["max_tokens"] == 2
        and entry["declared"]["min_count"] == 2
        and entry["declared"]["default"] == ["b"]
    )
    assert Vocabulary.describe(entry) == "vocabulary of 2 (of 5 values)"
    assert stat.problems(entry) == []  # oov_buckets take what is left out


def test_vocabulary_problems_and_errors_name_the_feature():
    f = feature(spec_with(dtype="string", shape=[], vocabulary="auto", max_tokens=1))
    stat = Vocabulary(f)
    stat.fit(np.array([b"a", b"a", b"b"], dtype=object))
    problems = stat.problems(stat.entry())
    assert problems == [
        "features.x.oov_buckets: the vocabulary keeps 1 of 2 values and leaves out 1 (seen 1 times in the training records), "
        "which would stop training; set `oov_buckets: 1` (or more), or raise `max_tokens` / lower `min_count`"
    ]
    with pytest.raises(
        RecordError,
        match="features.x: `vocabulary: auto` found nothing to keep in the training records: they hold no values",
    ):
        Vocabulary(f).entry()
    vocabulary = Vocabulary(f)
    vocabulary.fit(np.array([b"\xff"], dtype=object))  # counted as stored, decoded once at the end
    with pytest.raises(RecordError, match=r"feature 'x': a stored value is not UTF-8 text \(b'\\xff'\)"):
        vocabulary.entry()


def test_write_and_drop_change_the_raw_declaration_of_features_and_labels():
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "x": {"dtype": "float32", "shape": [], "preprocess": {"scale": 2, "normalize": "auto"}},
                "s": {"dtype": "string", "shape": [], "vocabulary": "auto", "max_tokens": 3, "oov_buckets": 1},
            },
            "labels": {"y": {"dtype": "float32", "shape": [], "normalize": "auto"}},
        }
    )
    raw = spec.to_dict()
    entries = {
        "x": {"normalize": {"mean": [1.0], "std": [2.0]}},
        "s": {"vocabulary": ["p"]},
        "y": {"normalize": {"mean": [5.0], "std": [3.0]}},
    }
    for f in spec.auto_features:
        Statistic.of(f).write(raw["labels" if f.role == "label" else "features"][f.name], entries[f.name])
    assert raw["features"]["x"]["preprocess"] == {"scale": 2, "normalize": {"mean": [1.0], "std": [2.0]}}
    assert raw["features"]["s"] == {"dtype": "string", "shape": [], "vocabulary": ["p"], "oov_buckets": 1}
    assert raw["labels"]["y"]["normalize"] == {"mean": [5.0], "std": [3.0]}
    resolved = spec.with_statistics({"features": entries})
    assert resolved.to_dict() == raw
    assert Normalization(resolved["y"]).constants() == ((5.0,), (3.0,))

    plain = spec.without_auto().to_dict()
    assert plain["features"]["x"]["preprocess"] == {"scale": 2}
    assert plain["features"]["s"] == {"dtype": "string", "shape": []}
    assert "normalize" not in plain["labels"]["y"]


def test_unresolved_constants_are_refused_with_their_key():
    spec = FeatureSpec.from_dict(
        {
            "features": {"x": {"dtype": "float32", "shape": [], "preprocess": {"normalize": "auto"}}},
            "labels": {"y": {"dtype": "float32", "shape": [], "normalize": "auto"}},
        }
    )
    assert Normalization.applies_to(spec["x"]) and Normalization.applies_to(spec["y"])
    with pytest.raises(ConfigError, match=r"features.x.preprocess.normalize: `auto` statistics are not resolved yet"):
        Normalization(spec["x"]).constants()
    with pytest.raises(ConfigError, match=r"labels.y.normalize: `auto` statistics are not resolved yet"):
        Normalization(spec["y"]).apply(None)
    assert not Normalization.applies_to(FeatureSpec.from_dict(spec_with(dtype="float32", shape=[]))["x"])
