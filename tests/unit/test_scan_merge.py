"""The statistics pass gathers each file apart and merges the parts in file order: every accumulator
and every statistic merged from parts holds what one pass over all the values holds (exactly for
counts, extremes, text counts and samples; to the last bits for a mean and a std), and merging the
same parts in the same order gives the same bits wherever they were gathered (pickled, as Ray
returns them). Without TensorFlow."""

from __future__ import annotations

import itertools
import pickle
from collections import Counter

import numpy as np
import pytest

from factory import FeatureSpec
from factory.features.accumulators import Moments, Sample, TextCounts
from factory.features.statistics import Statistic

# Where the values are cut into parts (one part per file): an empty part and parts of unequal sizes.
CUTS = [0, 0, 1, 170, 400, 999]


def parts(values: np.ndarray, cuts=CUTS) -> list[np.ndarray]:
    edges = [*cuts, len(values)]
    return [values[a:b] for a, b in itertools.pairwise(edges)]


def merged(make, add, pieces, through_pickle=False):
    """An accumulator ``make()`` that merged one accumulator per piece (each fed by ``add``), in order."""
    total = make()
    for piece in pieces:
        part = make()
        add(part, piece)
        total.merge(pickle.loads(pickle.dumps(part)) if through_pickle else part)
    return total


def test_moments_merged_from_parts_are_those_of_one_pass():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(1200, 3)) * [1.0, 50.0, 1e-3] + [1e6, -4.0, 0.5]
    one = Moments(3)
    for batch in parts(values):
        one.add(batch)

    def add(m, piece):
        for batch in np.array_split(piece, 3):  # several batches per part, as a file is read
            m.add(batch)

    total = merged(lambda: Moments(3), add, parts(values))
    assert total.count == one.count == 1200
    assert (total.min, total.max) == (one.min, one.max) == (values.min(), values.max())
    np.testing.assert_allclose(total.mean, values.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(total.std, values.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(total.mean, one.mean, rtol=1e-13)
    # The same parts merged in the same order: the same bits, pickled or not.
    again = merged(lambda: Moments(3), add, parts(values), through_pickle=True)
    assert again.mean.tobytes() == total.mean.tobytes() and again.std.tobytes() == total.std.tobytes()


def test_an_empty_part_changes_nothing():
    m = Moments.of(np.arange(5.0))
    before = (m.count, m.mean.tobytes(), m.std.tobytes(), m.min, m.max)
    m.merge(Moments(1))
    assert (m.count, m.mean.tobytes(), m.std.tobytes(), m.min, m.max) == before
    s = Sample(1, size=3)
    s.add(np.arange(5.0), np.linspace(0.9, 0.1, 5))
    s.merge(Sample(1, size=3))
    assert sorted(s.values()[:, 0]) == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="merging a sample of 3 rows of 2 channels into one of 3 rows of 1"):
        s.merge(Sample(2, size=3))


@pytest.mark.parametrize("size", [50, 2000], ids=["sampled", "all-rows"])
def test_a_sample_merged_from_parts_is_the_sample_of_one_pass(size):
    """Bottom-k: the rows of the ``size`` smallest keys, whether the keys came in one pass or in parts."""
    rng = np.random.default_rng(1)
    rows, keys = rng.normal(size=(1200, 2)), rng.random(1200)
    one = Sample(2, size=size)
    for batch, batch_keys in zip(parts(rows), parts(keys), strict=True):
        one.add(batch, batch_keys)

    def add(sample, piece):
        r, k = piece
        for batch, batch_keys in zip(np.array_split(r, 4), np.array_split(k, 4), strict=True):
            sample.add(batch, batch_keys)

    pieces = list(zip(parts(rows), parts(keys), strict=True))
    total = merged(lambda: Sample(2, size=size), add, pieces)
    expected = rows[np.argsort(keys)[:size]]

    def ordered(a):
        return a[np.lexsort(a.T[::-1])]

    np.testing.assert_array_equal(ordered(total.values()), ordered(expected))
    np.testing.assert_array_equal(ordered(one.values()), ordered(expected))
    np.testing.assert_array_equal(total.quantiles([0.1, 0.5, 0.9]), one.quantiles([0.1, 0.5, 0.9]))
    again = merged(lambda: Sample(2, size=size), add, pieces, through_pickle=True)
    np.testing.assert_array_equal(again.values(), total.values())  # the same rows in the same order


def test_a_sample_drawing_its_own_keys_draws_them_from_its_stream():
    a, b = Sample(1, size=10), Sample(1, size=10)
    a.draw_from(7)
    b.draw_from(7)
    a.add(np.arange(100.0))
    b.add(np.arange(100.0))
    np.testing.assert_array_equal(a.values(), b.values())
    c = Sample(1, size=10)
    c.draw_from(8)
    c.add(np.arange(100.0))
    assert sorted(c.values()[:, 0]) != sorted(a.values()[:, 0])


def test_text_counts_merged_from_parts_are_those_of_one_pass():
    rng = np.random.default_rng(2)
    values = np.array([f"v{int(i)}".encode() for i in rng.zipf(1.5, size=1000) % 200], dtype=object)
    one = TextCounts("s")
    one.CHUNK = 64  # counted a chunk at a time
    for batch in parts(values):
        one.add(batch)
    one.add(np.array([b"default"], dtype=object), times=5)  # missing records read as a default

    def add(counts, piece):
        counts.CHUNK = 64
        counts.add(piece)

    pieces = parts(values)
    total = merged(lambda: TextCounts("s"), add, pieces)
    extra = TextCounts("s")
    extra.add(np.array([b"default"], dtype=object), times=5)
    total.merge(extra)
    assert total.raw == one.raw == Counter([*values.tolist(), *[b"default"] * 5])
    assert total.text() == one.text()


SPEC = {
    "features": {
        "x": {"dtype": "float32", "shape": [2], "default": [1.0, -1.0], "preprocess": {"normalize": "auto"}},
        "n": {"dtype": "int64", "shape": [], "missing": "median", "preprocess": {"normalize": "auto"}},
        "m": {"dtype": "float32", "shape": [], "missing": "mean"},
        "age": {"dtype": "float32", "shape": [], "bins": {"auto": 4}},
        "s": {"dtype": "string", "shape": [], "vocabulary": "auto", "max_tokens": 3, "oov_buckets": 1},
        "c": {"dtype": "string", "shape": [], "vocabulary": "auto", "missing": "most_frequent"},
        "t": {"dtype": "string", "shape": [], "text": {"output": "tf_idf", "min_count": 1}},
    },
    "labels": {"y": {"dtype": "float32", "shape": []}},
}


def batches(name: str, rng: np.random.Generator, n: int):
    """``(values, missing)`` of one batch of ``n`` records, as the pass hands a statistic its values."""
    if name == "x":
        return rng.normal(size=2 * n) * 3 + 1e4, 1
    if name in ("n", "age", "m"):
        return rng.integers(0, 90, size=n).astype(np.float64), 2
    if name in ("s", "c"):
        return np.array([f"{name}{i}".encode() for i in rng.integers(0, 6, size=n)], dtype=object), 1
    tokens = np.array([b"a", b"b", f"t{n}".encode()], dtype=object)  # the pass's (tokens, counts, documents, texts)
    return (tokens, np.array([n, 2, 1]), np.array([n, 1, 1]), n), 1


@pytest.mark.parametrize("name", list(SPEC["features"]))
def test_statistics_merged_from_parts_give_the_entry_of_one_pass(name):
    f = FeatureSpec.from_dict(SPEC)[name]
    rng = np.random.default_rng(3)
    files = [[batches(name, rng, n) for n in sizes] for sizes in ([5, 7], [], [11], [3, 3, 9])]
    one = Statistic.of(f)
    for batch in (b for file in files for b in file):
        one.fit(*batch)
    total = Statistic.of(f)
    for file in files:
        part = Statistic.of(f)
        for batch in file:
            part.fit(*batch)
        total.merge(pickle.loads(pickle.dumps(part)))
    got, expected = total.entry(), one.entry()
    if "normalize" in expected:  # float64 sums added in another order: the same to the last bits
        for key in ("mean", "std"):
            np.testing.assert_allclose(got["normalize"].pop(key), expected["normalize"].pop(key), rtol=1e-12)
    if f.missing is not None and f.missing.fill == "mean":
        np.testing.assert_allclose(got.pop("fill"), expected.pop("fill"), rtol=1e-12)
    assert got == expected
