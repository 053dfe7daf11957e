"""``factory write`` round trips: each input format read back with plain TensorFlow, shards, and ``factory check``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from factory.cli import main
from tests.helpers.write import (
    CSV_TEXT,
    ROWS,
    assert_table,
    expected_n,
    files_in,
    read_back,
    table_features,
    table_input,
    write,
    write_spec,
)

# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, options, compression, suffix",
    [
        ("csv", ["--shards", "2"], "", ".tfrecord"),
        ("jsonl", ["--compression", "gzip"], "GZIP", ".tfrecord.gz"),
        ("npz", ["--shards", "3", "--compression", "zlib"], "ZLIB", ".tfrecord.zz"),
    ],
)
def test_write_reads_back_with_plain_tensorflow(tmp_path, capsys, fmt, options, compression, suffix):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    assert write(spec, table_input(tmp_path, fmt), out / "train", *options) == 0

    shards = int(options[options.index("--shards") + 1]) if "--shards" in options else 1
    names = [f"train-{i:05d}-of-{shards:05d}{suffix}" for i in range(shards)]
    assert files_in(out) == names
    summary = capsys.readouterr().out.strip()
    assert summary.startswith("wrote 5 records (0 bad rows skipped) to "), summary
    assert all(str(out / name) in summary for name in names)
    assert_table(read_back(str(out / "train-*"), table_features(), compression), ROWS, expected_n(fmt))


def test_check_prints_counts_per_file_and_total(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert write(spec, table_input(tmp_path, "csv"), tmp_path / "out" / "train", "--shards", "2") == 0
    capsys.readouterr()

    assert main(["check", "--features", spec, str(tmp_path / "out" / "train-*")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{tmp_path}/out/train-00000-of-00002.tfrecord: 3 records",
        f"{tmp_path}/out/train-00001-of-00002.tfrecord: 2 records",
        "total: 5 records in 2 files",
    ]

    assert main(["check", "--features", spec, str(tmp_path / "nothing-*")]) == 2
    assert "error: no record files match" in capsys.readouterr().err


def test_summary_shows_a_glob_for_many_shards(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert write(spec, table_input(tmp_path, "csv"), tmp_path / "out" / "train", "--shards", "5") == 0
    summary = capsys.readouterr().out.splitlines()
    assert summary[0] == f"wrote 5 records (0 bad rows skipped) to {tmp_path}/out/train-*-of-00005.tfrecord (5 shards)"
    assert summary[1:] == ["missing values, left out of the records:", "  n  1 of 5 (20.0%)  default"]
    assert len(files_in(tmp_path / "out")) == 5


SHAPES_SPEC = """
features:
  seq: {dtype: int64, shape: [null]}
  grid: {dtype: float32, shape: [2, 2]}
  words: {dtype: string, shape: [null]}
  pair: {dtype: string, shape: [2], default: [a, b]}
"""


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_variable_length_and_multi_dimensional_values(tmp_path, capsys, fmt):
    import tensorflow as tf

    data = tmp_path / f"shapes.{fmt}"
    if fmt == "csv":
        data.write_text(
            "seq,grid,words,pair\n"
            '1 2 3,1 2 3 4,hello world,"[""x"", ""y z""]"\n'
            ',"[[5, 6], [7, 8]]","[""one token""]",\n'
            '4,"9,10,11,12",,\n'
        )
    else:
        rows = [
            {"seq": [1, 2, 3], "grid": [1, 2, 3, 4], "words": ["hello", "world"], "pair": ["x", "y z"]},
            {"grid": [[5, 6], [7, 8]], "words": ["one token"], "pair": None},
            {"seq": [4], "grid": [9, 10, 11, 12]},
        ]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    assert write(write_spec(tmp_path, SHAPES_SPEC), str(data), tmp_path / "out" / "s") == 0, capsys.readouterr().err
    records = read_back(
        str(tmp_path / "out" / "s-*"),
        # A missing `pair` stays out of its record: a reader supplies the spec's default.
        {
            "grid": tf.io.FixedLenFeature([2, 2], tf.float32),
            "pair": tf.io.FixedLenFeature([2], tf.string, default_value=[b"a", b"b"]),
        },
    )
    # Variable-length values come back as sparse tensors: read those record by record.
    ds = tf.data.TFRecordDataset(str(tmp_path / "out" / "s-00000-of-00001.tfrecord"))
    spec = {"seq": tf.io.VarLenFeature(tf.int64), "words": tf.io.VarLenFeature(tf.string)}
    parsed = [tf.io.parse_single_example(r, spec) for r in ds]
    assert [p["seq"].values.numpy().tolist() for p in parsed] == [[1, 2, 3], [], [4]]
    assert [p["words"].values.numpy().tolist() for p in parsed] == [[b"hello", b"world"], [b"one token"], []]
    np.testing.assert_array_equal(records["grid"], np.arange(1, 13, dtype=np.float32).reshape(3, 2, 2))
    assert records["pair"].tolist() == [[b"x", b"y z"], [b"a", b"b"], [b"a", b"b"]]


# -- existing output, usage, formats ------------------------------------------------------------


def test_existing_output_needs_overwrite_and_stays_untouched(tmp_path, capsys):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    assert write(spec, table_input(tmp_path, "csv"), out / "train", "--shards", "2") == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    other = tmp_path / "other.csv"
    other.write_text("x,color,n,label\n9 9 9,blue,9,2\n")

    assert write(spec, str(other), out / "train", "--shards", "2") == 2
    err = capsys.readouterr().err
    assert "train-00000-of-00002.tfrecord already exists" in err and "--overwrite" in err, err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before

    # One shard now: the two old ones are replaced by it.
    assert write(spec, str(other), out / "train", "--overwrite") == 0
    assert files_in(out) == ["train-00000-of-00001.tfrecord"]
    assert read_back(str(out / "train-*"), table_features())["n"].tolist() == [9]


def test_input_format_comes_from_the_extension_or_format(tmp_path, capsys):
    spec = write_spec(tmp_path)
    data = tmp_path / "data.txt"
    data.write_text(CSV_TEXT)
    assert write(spec, str(data), tmp_path / "out" / "t") == 2
    assert "cannot tell the input format from the extension '.txt'" in capsys.readouterr().err

    assert write(spec, str(data), tmp_path / "out" / "t", "--format", "csv") == 0
    assert capsys.readouterr().out.startswith("wrote 5 records")

    assert write(spec, str(tmp_path / "absent.csv"), tmp_path / "out" / "u") == 2
    assert f"error: input file not found: {tmp_path}/absent.csv" in capsys.readouterr().err
