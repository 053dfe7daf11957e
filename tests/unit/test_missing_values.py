"""Missing values as data, without TensorFlow: the spec's `missing:` and `column:`, records that leave
missing values out, the fills computed from present values, serving inputs, `factory write --split`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factory.cli import main
from factory.errors import ConfigError
from factory.features import wire
from factory.features.accumulators import Sample
from factory.features.encoder import encode_columns, encode_record
from factory.features.feature import MISSING_VALUE
from factory.features.sources import open_source
from factory.features.spec import FeatureSpec
from factory.features.statistics import Fill, Statistic, Together
from factory.serving.inputs import ServingInputs, TensorInfo
from factory.serving.manifest import PredictError


def table(**features) -> dict:
    return {"features": features, "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}}}


def problems(**features) -> str:
    with pytest.raises(ConfigError) as caught:
        FeatureSpec.from_dict(table(**features))
    return str(caught.value)


# -- the spec --------------------------------------------------------------------------------------


def test_missing_is_parsed_with_its_shorthand_and_waits_for_the_fill():
    spec = FeatureSpec.from_dict(
        table(
            a={"dtype": "float32", "shape": [], "missing": "median", "preprocess": {"normalize": "auto"}},
            s={"dtype": "string", "shape": [], "vocabulary": "auto", "missing": {"fill": "most_frequent"}},
            c={"dtype": "int64", "shape": [2], "missing": {"fill": "constant", "value": [1, 2], "indicator": True}},
        )
    )
    assert spec["a"].missing.fill == "median" and spec["a"].auto_statistics == ("fill", "normalize")
    assert spec["s"].auto_statistics == ("fill", "vocabulary")
    assert spec["c"].auto_statistics == () and spec["c"].missing.value == (1, 2)
    assert not spec["a"].required and spec["a"].indicator is None and spec["c"].indicator == "c_missing"
    assert spec.input_names == ("a", "s", "c", "c_missing")
    assert spec.indicated("c_missing") is spec["c"] and spec.indicated("c") is None
    assert isinstance(Statistic.of(spec["a"]), Together) and isinstance(Statistic.of(spec["s"]), Together)


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ({"dtype": "string", "shape": [], "missing": "mean"}, "features.a.missing.fill: mean needs numbers"),
        (
            {"dtype": "float32", "shape": [], "missing": {"fill": "constant"}},
            "features.a.missing.value: `fill: constant`",
        ),
        ({"dtype": "float32", "shape": [], "missing": {"fill": "constant", "value": "x"}}, "'x' is not a number"),
        ({"dtype": "int64", "shape": [], "missing": {"fill": "constant", "value": 1.5}}, "1.5 is not a whole number"),
        (
            {"dtype": "float32", "shape": [3], "missing": {"fill": "constant", "value": [1, 2]}},
            "2 values, but the last",
        ),
        ({"dtype": "uint8", "shape": [2], "missing": "median"}, "applies to float32, int64 and string features"),
        ({"dtype": "float32", "shape": [None], "missing": "median"}, "a variable-length feature is empty"),
        ({"dtype": "float32", "shape": [], "default": 0, "missing": "mean"}, "features.a.default: `missing` and"),
        (
            {"dtype": "string", "shape": [], "vocabulary": ["x"], "missing": {"fill": "constant", "value": "y"}},
            "features.a.missing.value: 'y' is not in the vocabulary",
        ),
        ({"dtype": "float32", "shape": [], "missing": "sometimes"}, "features.a.missing"),
    ],
)
def test_a_missing_that_cannot_work_is_named_with_its_fix(feature, expected):
    assert expected in problems(a=feature)


def test_an_indicator_or_a_column_that_clashes_is_named():
    text = problems(
        a={"dtype": "float32", "shape": [], "missing": {"fill": "mean", "indicator": True}},
        a_missing={"dtype": "float32", "shape": []},
        b={"dtype": "float32", "shape": [], "column": "a"},
    )
    assert "features.a.missing.indicator: the indicator input 'a_missing' clashes with features.a_missing" in text
    assert "features.b.column: reads the column 'a', which features.a reads already" in text


def test_a_label_takes_a_column_but_not_missing():
    spec = FeatureSpec.from_dict(
        {
            "features": {"x": {"dtype": "float32", "shape": []}},
            "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2, "column": "Target (0/1)"}},
        }
    )
    assert spec["y"].source == "Target (0/1)" and spec["x"].source == "x"
    with pytest.raises(ConfigError, match="labels.y"):
        FeatureSpec.from_dict(
            {
                "features": {"x": {"dtype": "float32", "shape": []}},
                "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2, "missing": "median"}},
            }
        )


# -- records leave missing values out ------------------------------------------------------------

GAPS = table(
    a={"dtype": "float32", "shape": [], "missing": "mean"},
    v={"dtype": "float32", "shape": [2], "missing": {"fill": "constant", "value": 0}},
    s={"dtype": "string", "shape": [], "missing": "most_frequent"},
    n={"dtype": "int64", "shape": [], "missing": "median"},
)


def test_records_leave_missing_values_out_and_count_them():
    spec = FeatureSpec.from_dict(GAPS)
    keys = wire.feature_keys(encode_record(spec, {"a": math.nan, "v": [math.nan, math.nan], "s": "x", "y": 1}))
    assert keys == ["s", "y"]
    columns = {
        "a": np.array([1.0, np.nan, 3.0]),
        "v": np.array([[1.0, 2.0], [np.nan, np.nan], [5.0, 6.0]]),
        "n": np.array([1.0, 2.0, np.nan]),
        "y": np.array([0, 1, 0]),
    }
    missing = __import__("collections").Counter()
    records = encode_columns(spec, columns, missing=missing)
    assert [wire.feature_keys(r) for r in records] == [["a", "v", "n", "y"], ["n", "y"], ["a", "v", "y"]]
    assert records[0] == encode_record(spec, {"a": 1.0, "v": [1.0, 2.0], "n": 1, "y": 0})
    assert missing == {"a": 1, "v": 1, "n": 1, "s": 3}
    # A NaN among present values is still an error (a partly missing vector is not a missing value).
    with pytest.raises(Exception, match=r"record 0: feature 'v': nan at \[1\] is NaN"):
        encode_record(spec, {"v": [1.0, math.nan], "y": 0}, 0)


def test_the_writer_counts_only_records_it_wrote(tmp_path):
    spec = FeatureSpec.from_dict(GAPS)
    with spec.writer(tmp_path / "t") as writer:
        writer.write({"a": 1.0, "y": 0})
        with pytest.raises(Exception, match="feature 'n'"):
            writer.write({"n": "x", "y": 0})
        writer.write_many({"a": np.array([np.nan, 2.0]), "y": np.array([0, 1])})
    assert writer.missing == {"a": 1, "v": 3, "s": 3, "n": 3}


def test_columns_map_headers_keys_and_arrays_to_features(tmp_path):
    spec = FeatureSpec.from_dict(
        table(
            ratio={"dtype": "float32", "shape": [], "column": "od280/od315_of_diluted_wines", "missing": "mean"},
            name={"dtype": "string", "shape": [], "column": "Name (full)"},
        )
    )
    (tmp_path / "a.csv").write_text('od280/od315_of_diluted_wines,Name (full),y\n3.5,"Ann B",1\n,Bo,0\n')
    with open_source(tmp_path / "a.csv", spec) as source:
        assert [row.record for row in source] == [{"ratio": 3.5, "name": "Ann B", "y": 1}, {"name": "Bo", "y": 0}]
    (tmp_path / "a.jsonl").write_text('{"od280/od315_of_diluted_wines": null, "Name (full)": "C", "y": 1}\n')
    with open_source(tmp_path / "a.jsonl", spec) as source:
        assert [row.record for row in source] == [{"name": "C", "y": 1}]
    arrays = {"Name (full)": np.array(["D"]), "y": np.array([1]), "od280/od315_of_diluted_wines": np.array([2.0])}
    np.savez(tmp_path / "a.npz", **arrays)
    with open_source(tmp_path / "a.npz", spec) as source:
        assert set(source.columns) == {"name", "y", "ratio"}
    (tmp_path / "b.csv").write_text("ratio,y\n1,0\n")
    with pytest.raises(Exception, match=r"unknown column 'ratio' \(the feature 'ratio' reads the column 'od280/"):
        open_source(tmp_path / "b.csv", spec).__enter__()
    (tmp_path / "b.csv").write_text("od280/od315_of_diluted_wine,Name (full),y\n1,a,0\n")
    with pytest.raises(
        Exception,
        match=r"features.ratio.column: the file has no column 'od280/od315_of_diluted_wines' \(did you mean 'od280/od315_of_diluted_wine'\?\)",
    ):
        open_source(tmp_path / "b.csv", spec, ignore_unknown=True).__enter__()
    (tmp_path / "b.csv").write_text("od280/od315_of_diluted_wines,y\n1,0\n")
    with pytest.raises(
        Exception, match=r"features.name.column: the file has no column 'Name \(full\)'; its columns are od280/"
    ):
        open_source(tmp_path / "b.csv", spec).__enter__()


# -- the fills -------------------------------------------------------------------------------------


def fitted(feature: dict, *batches) -> list:
    spec = FeatureSpec.from_dict(table(a=feature))
    fill = Fill(spec["a"])
    for batch in batches:
        fill.fit(np.asarray(batch))
    return fill.entry()["fill"]


def test_fills_come_from_present_values():
    assert fitted({"dtype": "float32", "shape": [], "missing": "mean"}, [1.0, 2.0], [6.0]) == [3.0]
    assert fitted({"dtype": "float32", "shape": [], "missing": "median"}, [5.0, 1.0], [2.0, 100.0]) == [3.5]
    assert fitted({"dtype": "int64", "shape": [], "missing": "median"}, [1, 2], [4, 8]) == [2]  # one of the values
    assert fitted({"dtype": "float32", "shape": [2], "missing": "mean"}, [1.0, 10.0, 3.0, 30.0]) == [2.0, 20.0]
    assert fitted({"dtype": "int64", "shape": [], "missing": "most_frequent"}, [3, 1, 3, 1, 2]) == [1]  # tie: smaller
    strings = np.array([b"b", b"a", b"b", b"c", b"a"], dtype=object)
    assert fitted({"dtype": "string", "shape": [], "missing": "most_frequent"}, strings) == ["a"]


def test_a_fill_without_present_values_says_what_to_do():
    spec = FeatureSpec.from_dict(table(a={"dtype": "float32", "shape": [], "missing": "median"}))
    with pytest.raises(Exception, match=r"features.a: the training records hold no value of it .* `fill: constant`"):
        Fill(spec["a"]).entry()


def test_the_sample_is_exact_up_to_its_size_and_bounded_beyond():
    rng = np.random.default_rng(1)
    values = rng.normal(size=5000)
    small = Sample(size=10_000)
    for chunk in np.array_split(values, 7):
        small.add(chunk)
    assert small.quantiles(0.5)[0] == np.median(values)
    big = Sample(size=2000)
    many = rng.exponential(size=200_000)
    for chunk in np.array_split(many, 50):
        big.add(chunk)
    assert len(big.values()) == 2000 and len(big.keys) <= 4000
    assert abs(big.quantiles(0.5)[0] - np.median(many)) < 0.05  # a uniform sample's median
    again = Sample(size=2000)
    for chunk in np.array_split(many, 50):
        again.add(chunk)
    assert np.array_equal(np.sort(again.values(), axis=0), np.sort(big.values(), axis=0))


def test_resolved_fills_round_trip_through_the_spec():
    spec = FeatureSpec.from_dict(GAPS)
    stats = {"features": {"a": {"fill": [2.5]}, "s": {"fill": ["x"]}, "n": {"fill": [4]}}}
    resolved = spec.with_statistics(stats)
    assert resolved["a"].missing.value == (2.5,) and resolved["s"].missing.value == ("x",)
    assert FeatureSpec.from_dict(resolved.to_dict())["n"].missing == resolved["n"].missing
    assert not resolved.needs_statistics
    plain = spec.without_auto()  # reads records as stored: still optional
    assert not plain.needs_statistics and not plain["a"].required


# -- serving_default takes NaN, "" and the smallest int64 as missing ------------------------------


def test_serving_inputs_take_missing_values_for_missing_features():
    spec = FeatureSpec.from_dict(GAPS).with_statistics(
        {"features": {"a": {"fill": [2.5]}, "s": {"fill": ["x"]}, "n": {"fill": [4]}}}
    )
    tensors = {f.name: TensorInfo(f.name, f.dtype, f.shape) for f in spec.features}
    inputs = ServingInputs(tensors, spec)
    got = inputs.check({"a": [1.0, math.nan, None], "s": ["p", None, ""], "n": [None, 3, 5]})
    assert np.isnan(got["a"][1:]).all() and got["a"][0] == 1.0
    assert got["s"].tolist() == [b"p", b"", b""]
    assert got["n"].tolist() == [MISSING_VALUE["int64"], 3, 5]
    assert np.isnan(got["v"]).all() and got["v"].shape == (3, 2)  # absent: missing throughout
    with pytest.raises(PredictError, match="is infinite"):
        inputs.check({"a": [math.inf]})


# -- factory write --split --------------------------------------------------------------------------


def test_write_splits_one_input_into_parts_reproducibly(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "features:\n  a: {dtype: float32, shape: [], missing: mean}\nlabels:\n  y: {dtype: int64, shape: []}\n"
    )
    rows = "\n".join(f"{'' if i % 10 == 0 else i},{i % 2}" for i in range(200))
    (tmp_path / "in.csv").write_text("a,y\n" + rows + "\n")
    argv = ["write", "--features", str(spec), "--input", str(tmp_path / "in.csv"), "--split", "train=0.7,eval=0.3"]
    assert main([*argv, "--output", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "of train to" in out and "of eval to" in out
    assert "a  20 of 200 (10.0%)  missing.fill: mean" in out
    assert main([*argv, "--output", str(tmp_path / "two")]) == 0
    for part in ("train", "eval"):
        first = (tmp_path / "one" / f"{part}-00000-of-00001.tfrecord").read_bytes()
        assert first == (tmp_path / "two" / f"{part}-00000-of-00001.tfrecord").read_bytes()
    assert main([*argv[:-1], "train=0.7,eval=0.4", "--output", str(tmp_path / "bad")]) == 2
    assert "--split: the fractions add up to 1.1" in capsys.readouterr().err
    assert main([*argv[:-1], "train=0.7,1eval=0.3", "--output", str(tmp_path / "bad")]) == 2
    assert "'1eval=0.3' is not NAME=FRACTION" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_markers_of_missing_values_stay_out_of_records_and_serving_takes_nan_for_integers():
    spec = FeatureSpec.from_dict(GAPS)
    record = encode_record(spec, {"s": "", "n": MISSING_VALUE["int64"], "a": 1.0, "y": 0})
    assert wire.feature_keys(record) == ["a", "y"]  # "" and the smallest int64 are missing, as serving takes them
    resolved = spec.with_statistics({"features": {"a": {"fill": [2.5]}, "s": {"fill": ["x"]}, "n": {"fill": [4]}}})
    inputs = ServingInputs({f.name: TensorInfo(f.name, f.dtype, f.shape) for f in resolved.features}, resolved)
    got = inputs.check({"n": np.array([1.0, np.nan, 3.0])})  # an integer column with gaps, as pandas gives it
    assert got["n"].tolist() == [1, MISSING_VALUE["int64"], 3] and got["n"].dtype == np.int64
    with pytest.raises(PredictError, match=r"1.5 at \[0\] is not a whole number"):
        inputs.check({"n": np.array([1.5, np.nan])})
