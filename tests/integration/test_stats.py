"""Statistics from the data: `normalize: auto`, `vocabulary: auto`, statistics.json, `factory stats`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from factory import ConfigError, FeatureSpec, RecordError
from factory.cli import main


def spec_with(**feature):
    return {"features": {"x": feature}, "labels": {"y": {"dtype": "float32", "shape": []}}}


# -- the numbers -------------------------------------------------------------------------------------

STATS_SPEC = {
    "features": {
        "v": {"dtype": "float32", "shape": [3], "preprocess": {"normalize": "auto"}},
        "n": {"dtype": "int64", "shape": [], "default": 7, "preprocess": {"scale": 0.5, "normalize": "auto"}},
        "img": {"dtype": "uint8", "shape": [4, 4, 3], "encoding": "png", "preprocess": {"normalize": "auto"}},
        "seq": {"dtype": "float32", "shape": [None], "max_length": 2, "preprocess": {"normalize": "auto"}},
        "s": {"dtype": "string", "shape": [], "vocabulary": "auto", "max_tokens": 3, "oov_buckets": 1},
        "rare": {"dtype": "string", "shape": [], "vocabulary": "auto", "min_count": 3, "oov_buckets": 1},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
}
# `s`: 'd' and 'b' tie for first (3 each); 'c', 'a' and 'e' tie for third (2 each) where
# max_tokens 3 cuts: string order decides both ties.
S_VALUES = ["d", "b", "c", "a", "b", "d", "e", "a", "c", "d", "b", "e"]
# `rare`: 'p' 4 times, 'q' 3 times, 'r' twice: min_count 3 keeps p, q.
RARE_VALUES = ["p", "q", "r", "p", "q", "r", "p", "q", "p", "z", "z", "x"]


def write_stats_table(tmp_path: Path, n: int = 12):
    """Records of STATS_SPEC in two shards; the second lacks `n` (training reads its default, 7)."""
    rng = np.random.default_rng(1)
    v = (rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [5.0, -3.0, 1000.0]).astype(np.float32)
    nums = rng.integers(-50, 50, size=n)
    img = rng.integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
    seqs = [rng.normal(size=i % 4).astype(np.float32) * 3 + 1 for i in range(n)]
    half = n // 2
    full = FeatureSpec.from_dict(STATS_SPEC)
    without_n = dict(STATS_SPEC, features={k: v for k, v in STATS_SPEC["features"].items() if k != "n"})
    for part, spec, rows in (("a", full, range(half)), ("b", FeatureSpec.from_dict(without_n), range(half, n))):
        with spec.writer(tmp_path / "data" / part) as w:
            for i in rows:
                record = {
                    "v": v[i],
                    "img": img[i],
                    "seq": seqs[i],
                    "s": S_VALUES[i],
                    "rare": RARE_VALUES[i],
                    "y": i % 2,
                }
                if part == "a":
                    record["n"] = int(nums[i])
                w.write(record)
    n_train = np.concatenate([nums[:half], np.full(n - half, 7)]).astype(np.float64)
    seq_train = np.concatenate([s[:2] for s in seqs]).astype(np.float64)  # max_length 2: what training keeps
    return full, {
        "v": v.astype(np.float64),
        "n": n_train,
        "img": img,
        "seq": seq_train,
        "seq_all": np.concatenate(seqs),
        "nums": nums,
    }


def test_statistics_match_numpy(tmp_path):
    from factory.features.scan import compute_statistics

    spec, data = write_stats_table(tmp_path)
    stats = compute_statistics(spec, str(tmp_path / "data" / "*.tfrecord"))
    assert stats["records"] == 12 and len(stats["files"]) == 2
    got = stats["features"]

    def close(name, mean, std):
        np.testing.assert_allclose(got[name]["normalize"]["mean"], mean, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got[name]["normalize"]["std"], std, rtol=1e-10)

    close("v", data["v"].mean(axis=0), data["v"].std(axis=0))  # per channel, population std
    close("n", data["n"].mean() * 0.5, [data["n"].std() * 0.5])  # the default for missing records; after scale
    pixels = data["img"].reshape(-1, 3).astype(np.float64)
    close("img", pixels.mean(axis=0), pixels.std(axis=0))  # decoded PNG pixels, per channel
    close("seq", [data["seq"].mean()], [data["seq"].std()])  # real values up to max_length, no padding
    assert got["v"]["count"] == 12 and got["seq"]["count"] == len(data["seq"])
    assert got["s"]["vocabulary"] == ["b", "d", "a"]  # b 3, d 3, then a 2 before c 2 and e 2
    assert got["s"]["left_out"] == {"distinct": 2, "values": 4} and got["s"]["distinct"] == 5
    assert got["rare"]["vocabulary"] == ["p", "q"]
    assert got["v"]["declared"] == {
        "statistic": "normalize",
        "dtype": "float32",
        "shape": [3],
        "encoding": None,
        "default": None,
        "max_length": None,
        "scale": None,
    }
    json.dumps(stats, allow_nan=False)  # a plain JSON dict (it goes into the run dir and can go into a checkpoint)


def test_constant_feature_gets_std_one_and_a_warning(tmp_path, caplog):
    from factory.features.scan import compute_statistics

    spec = FeatureSpec.from_dict(
        {
            "features": {"c": {"dtype": "float32", "shape": [2], "preprocess": {"normalize": "auto"}}},
            "labels": {"y": {"dtype": "float32", "shape": []}},
        }
    )
    with spec.writer(tmp_path / "c") as w:
        w.write_many(
            {
                "c": np.tile(np.float32([[4.0, 1.0]]), (5, 1)) + np.float32([[0, 1], [0, 2], [0, 3], [0, 4], [0, 5]]),
                "y": np.zeros(5, np.float32),
            }
        )
    with caplog.at_level(logging.WARNING, logger="factory"):
        stats = compute_statistics(spec, str(tmp_path / "c-*"))
    norm = stats["features"]["c"]["normalize"]
    assert (
        norm["mean"] == [4.0, 4.0]
        and norm["std"][0] == 1.0
        and norm["std"][1] == pytest.approx(np.std([2, 3, 4, 5, 6]))
    )
    assert stats["features"]["c"]["constant_channels"] == [0]
    assert "features.c: channel 0 are constant in the training records (std 0); dividing by 1.0 instead" in caplog.text
    resolved = spec.with_statistics(stats)  # std 1.0: a valid spec, no division by zero
    assert resolved["c"].preprocess.normalize.std[0] == 1.0


def test_records_that_do_not_match_are_named(tmp_path):
    from factory.features.scan import compute_statistics

    spec = FeatureSpec.from_dict(spec_with(dtype="float32", shape=[3], preprocess={"normalize": "auto"}))
    short = FeatureSpec.from_dict(spec_with(dtype="float32", shape=[2]))
    with short.writer(tmp_path / "bad") as w:
        w.write_many({"x": np.ones((3, 2), np.float32), "y": np.zeros(3, np.float32)})
    with pytest.raises(
        RecordError,
        match=r"bad-00000-of-00001.tfrecord, record 0: feature 'x' holds 2 values, but float32 \[3\] holds 3",
    ):
        compute_statistics(spec, str(tmp_path / "bad-*"))
    with pytest.raises(RecordError, match="no record files match"):
        compute_statistics(spec, str(tmp_path / "nothing-*"))


# -- the run directory -------------------------------------------------------------------------------


def test_resolve_statistics_computes_once_then_reuses_the_file(tmp_path, caplog):
    from factory.features.scan import resolve_statistics

    spec, data = write_stats_table(tmp_path)
    files = [str(tmp_path / "data" / "*.tfrecord")]
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="factory"):
        first = resolve_statistics(spec, files, None, run)
    path = run / "statistics.json"
    assert "computed statistics from 12 training records in" in caplog.text and str(path) in caplog.text
    assert not first.needs_statistics and first["s"].vocabulary == ("b", "d", "a")
    np.testing.assert_allclose(first["v"].preprocess.normalize.mean, data["v"].mean(axis=0), rtol=1e-12)
    assert not [p for p in run.iterdir() if p.name != "statistics.json"]  # no temporary file left behind
    saved, mtime = path.read_text(), path.stat().st_mtime_ns

    # Other records now: a second call must read the file, not the records.
    for p in (tmp_path / "data").iterdir():
        p.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="factory"):
        second = resolve_statistics(spec, files, None, run)
    assert second == first and second.to_dict() == first.to_dict()
    assert "computed statistics" not in caplog.text and "reusing the statistics in" in caplog.text
    assert path.read_text() == saved and path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: s["features"]["s"].update(max_tokens=4),
            "features.s: changed since the statistics were computed: max_tokens 3 -> 4",
        ),
        (
            lambda s: s["features"]["v"]["preprocess"].update(scale=2.0),
            "features.v: changed since the statistics were computed: scale None -> 2.0",
        ),
        (
            lambda s: s["features"]["v"].pop("preprocess"),
            "features.v: has statistics, but is no longer `auto` in the spec",
        ),
        (
            lambda s: s["features"].update(w={"dtype": "float32", "shape": [], "preprocess": {"normalize": "auto"}}),
            "features.w: `normalize: auto` now, but the statistics were computed without it",
        ),
    ],
    ids=["max_tokens", "scale", "no-longer-auto", "new-auto"],
)
def test_a_changed_spec_does_not_reuse_the_statistics(tmp_path, change, expected):
    import copy

    from factory.features.scan import resolve_statistics

    spec, _ = write_stats_table(tmp_path)
    files = [str(tmp_path / "data" / "*.tfrecord")]
    resolve_statistics(spec, files, None, tmp_path / "run")
    changed = copy.deepcopy(STATS_SPEC)
    change(changed)
    with pytest.raises(ConfigError) as info:
        resolve_statistics(FeatureSpec.from_dict(changed), files, None, tmp_path / "run")
    assert expected in info.value.problems, info.value.problems
    assert f"delete {tmp_path / 'run' / 'statistics.json'} to compute them again" in str(info.value)
    assert "start a new run dir" in str(info.value)


def test_a_broken_statistics_file_is_named(tmp_path):
    from factory.features.scan import resolve_statistics

    spec, _ = write_stats_table(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "statistics.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"statistics.json: cannot read the statistics .*delete the file"):
        resolve_statistics(spec, [str(tmp_path / "data" / "*")], None, tmp_path / "run")


def test_a_vocabulary_that_leaves_values_out_needs_oov_buckets(tmp_path):
    from factory.features.scan import resolve_statistics

    spec_dict = {
        "features": {"s": {"dtype": "string", "shape": [], "vocabulary": "auto", "max_tokens": 2}},
        "labels": {"y": {"dtype": "float32", "shape": []}},
    }
    spec = FeatureSpec.from_dict(spec_dict)
    with spec.without_auto().writer(tmp_path / "s") as w:
        w.write_many({"s": np.array(["a", "b", "c", "a"], dtype=object), "y": np.zeros(4, np.float32)})
    with pytest.raises(
        ConfigError, match=r"features.s.oov_buckets: the vocabulary keeps 2 of 3 values and leaves out 1 \(seen 1 times"
    ):
        resolve_statistics(spec, [str(tmp_path / "s-*")], None, tmp_path / "run")
    assert not (tmp_path / "run" / "statistics.json").exists()
    spec_dict["features"]["s"]["oov_buckets"] = 1
    resolved = resolve_statistics(FeatureSpec.from_dict(spec_dict), [str(tmp_path / "s-*")], None, tmp_path / "run")
    assert resolved["s"].vocabulary == ("a", "b")


def test_check_reads_records_of_an_unresolved_spec(tmp_path):
    spec, _ = write_stats_table(tmp_path)
    counts = spec.check(str(tmp_path / "data" / "a-*"))
    assert list(counts.values()) == [6]


# -- factory stats ------------------------------------------------------------------------------------


def write_spec_file(tmp_path: Path, spec: dict) -> str:
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_factory_stats_prints_summaries_and_auto_statistics(tmp_path, capsys):
    _, data = write_stats_table(tmp_path)
    spec_file = write_spec_file(tmp_path, STATS_SPEC)
    assert main(["stats", "--features", spec_file, "--input", str(tmp_path / "data" / "*.tfrecord")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("12 records in 2 files\n")
    blocks = {b.split(":")[0]: b for b in out.split("\n\n")[1:]}
    n = data["nums"][:6]
    assert blocks["n"].splitlines()[1:3] == [
        "  records 12, missing 6 (50.0%), values 6",
        f"  min {n.min()}, max {n.max()}, mean {n.mean():.6g}, std {n.std():.6g}",
    ]
    assert "  normalize: auto -> mean [" in blocks["n"] and "(after scale)" in blocks["n"]
    assert blocks["s"].splitlines()[1:4] == ["  records 12, missing 0, values 12", "  distinct 5", "  top values:"]
    assert blocks["s"].splitlines()[4:9] == ["    'b'  3", "    'd'  3", "    'a'  2", "    'c'  2", "    'e'  2"]
    assert "  vocabulary: auto -> 3 of 5 values: 'b', 'd', 'a'" in blocks["s"]
    assert "    left out: 2 values seen 4 times" in blocks["s"]
    seq = data["seq_all"]
    assert f"  records 12, missing 3 (25.0%), values {len(seq)}" in blocks["seq"]  # records with an empty sequence
    assert blocks["y (label)"].splitlines()[0] == "y (label): int64 []"

    assert (
        main(
            [
                "stats",
                "--features",
                spec_file,
                "--input",
                str(tmp_path / "data" / "a-*"),
                str(tmp_path / "data" / "b-*"),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 12 and len(report["files"]) == 2
    v = report["features"]["v"]
    assert v["records"] == 12 and v["missing"] == 0 and v["values"] == 36
    assert v["min"] == pytest.approx(data["v"].min()) and v["max"] == pytest.approx(data["v"].max())
    assert v["mean"] == pytest.approx(data["v"].mean()) and v["std"] == pytest.approx(data["v"].std())
    np.testing.assert_allclose(v["statistics"]["normalize"]["mean"], data["v"].mean(axis=0), rtol=1e-12)
    assert report["features"]["img"]["min"] >= 0 and report["features"]["img"]["values"] == 12 * 48
    assert report["features"]["s"]["top"][:3] == [["b", 3], ["d", 3], ["a", 2]]
    assert report["features"]["rare"]["statistics"]["vocabulary"] == ["p", "q"]
    assert report["features"]["y"]["role"] == "label" and "statistics" not in report["features"]["y"]


def test_factory_stats_errors_exit_2(tmp_path, capsys):
    spec_file = write_spec_file(tmp_path, STATS_SPEC)
    assert main(["stats", "--features", spec_file, "--input", str(tmp_path / "nothing" / "*")]) == 2
    assert f"error: no record files match {str(tmp_path / 'nothing' / '*')!r}" in capsys.readouterr().err
    # A bad spec is reported before TensorFlow is imported.
    bad = write_spec_file(tmp_path, spec_with(dtype="float32", shape=[3], preprocess={"normalize": "automatic"}))
    code = textwrap.dedent(f"""
        import sys
        from factory.cli import main
        status = main(["stats", "--features", {bad!r}, "--input", "x-*"])
        print(status, "tensorflow" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "features.x.preprocess.normalize: 'automatic' is not one of auto" in result.stderr
