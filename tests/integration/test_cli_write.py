"""`factory write` and `factory check`: inputs in tmp_path, shards read back with plain TensorFlow."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from factory.cli import main
from factory.features.images import encode_png
from tests import helpers

FACTORY = Path(sys.executable).parent / "factory"
ROOT = helpers.REPO

TABLE_SPEC = """
features:
  x: {dtype: float32, shape: [3]}
  color: {dtype: string, shape: [], vocabulary: [red, green, blue]}
  n: {dtype: int64, shape: [], default: 7}
labels:
  label: {dtype: int64, shape: [], num_classes: 3}
"""

IMAGE_SPEC = """
features:
  image: {dtype: uint8, shape: [4, 4, 1], encoding: png}
labels:
  label: {dtype: int64, shape: [], num_classes: 3}
"""

# The same five records in every format; `n` is missing in the second (the spec's default, 7, applies).
ROWS = [
    {"x": [1.0, 2.0, 3.0], "color": "red", "n": 1, "label": 0},
    {"x": [4.0, 5.0, 6.0], "color": "green", "n": None, "label": 1},
    {"x": [7.5, 8.0, 9.0], "color": "blue", "n": 3, "label": 2},
    {"x": [-1.0, 0.0, 0.001], "color": "red", "n": 4, "label": 1},
    {"x": [10.0, 11.0, 12.0], "color": "green", "n": 5, "label": 0},
]
# Every way a CSV cell may hold a vector, one per row.
CSV_TEXT = """x,color,n,label
1 2 3,red,1,0
"4,5,6",green,,1
"[7.5, 8, 9]",blue,3,2
" -1, 0  0.001 ",red,4,1
"[10,11,12]",green,5,0
"""
# Where the bad row of `bad_input` is, as each format names it.
BAD_WHERE = {"csv": "data.csv row 2", "jsonl": "data.jsonl line 2", "npz": "data.npz record 1"}


def write_spec(tmp_path: Path, text: str = TABLE_SPEC) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def table_input(tmp_path: Path, fmt: str, bad: bool = False, extra: str | None = None) -> str:
    """ROWS as `fmt`; ``bad`` puts a wrong-typed label in the second row, ``extra`` adds an undeclared column."""
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        lines = CSV_TEXT.splitlines()
        if bad:
            lines[2] = lines[2].rsplit(",", 1)[0] + ",abc"
        if extra:
            lines = [lines[0] + f",{extra}"] + [line + ",1" for line in lines[1:]]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        rows = [dict(r) for r in ROWS]
        if bad:
            rows[1]["label"] = "one"
        if extra:
            for r in rows:
                r[extra] = 1
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:  # npz has no missing values: leave out `n` so that every record takes the default
        label = np.array([r["label"] for r in ROWS], dtype=np.float64 if bad else np.int64)
        if bad:
            label[1] = 2.5
        arrays = {
            "x": np.array([r["x"] for r in ROWS], dtype=np.float32),
            "color": np.array([r["color"] for r in ROWS]),
            "label": label,
        }
        if extra:
            arrays[extra] = np.ones(len(ROWS))
        np.savez(path, **arrays)
    return str(path)


def expected_n(fmt: str) -> list[int]:
    return [7] * len(ROWS) if fmt == "npz" else [7 if r["n"] is None else r["n"] for r in ROWS]


def read_back(pattern: str, features: dict, compression: str = "") -> dict[str, np.ndarray]:
    """Every record of the files matching ``pattern``, parsed with plain TensorFlow and a hand-written spec."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(pattern))
    assert files, f"no files match {pattern}"
    ds = tf.data.TFRecordDataset(files, compression_type=compression).batch(1000)
    parts = [tf.io.parse_example(batch, features) for batch in ds]
    return {k: np.concatenate([p[k].numpy() for p in parts]) for k in features}


def table_features() -> dict:
    import tensorflow as tf

    return {
        "x": tf.io.FixedLenFeature([3], tf.float32),
        "color": tf.io.FixedLenFeature([], tf.string),
        "n": tf.io.FixedLenFeature([], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }


def by_first_x(records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(records["x"][:, 0])
    return {k: v[order] for k, v in records.items()}


def assert_table(records: dict[str, np.ndarray], rows: list[dict], n: list[int]) -> None:
    records = by_first_x(records)
    order = np.argsort([r["x"][0] for r in rows])
    rows, n = [rows[i] for i in order], [n[i] for i in order]
    np.testing.assert_array_equal(records["x"], np.array([r["x"] for r in rows], dtype=np.float32))
    assert [c.decode() for c in records["color"]] == [r["color"] for r in rows]
    assert records["label"].tolist() == [r["label"] for r in rows]
    assert records["n"].tolist() == n


def files_in(directory: Path) -> list[str]:
    """Everything in ``directory``, hidden partial files included."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def write(spec: str, source: str, output: Path, *extra: str) -> int:
    return main(["write", "--features", spec, "--input", source, "--output", str(output), *extra])


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
    summary = capsys.readouterr().out.strip()
    assert summary == f"wrote 5 records (0 bad rows skipped) to {tmp_path}/out/train-*-of-00005.tfrecord (5 shards)"
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
            "4,\"9,10,11,12\",,\n"
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
        {"grid": tf.io.FixedLenFeature([2, 2], tf.float32), "pair": tf.io.FixedLenFeature([2], tf.string)},
    )
    # Variable-length values come back as sparse tensors: read those record by record.
    ds = tf.data.TFRecordDataset(str(tmp_path / "out" / "s-00000-of-00001.tfrecord"))
    spec = {"seq": tf.io.VarLenFeature(tf.int64), "words": tf.io.VarLenFeature(tf.string)}
    parsed = [tf.io.parse_single_example(r, spec) for r in ds]
    assert [p["seq"].values.numpy().tolist() for p in parsed] == [[1, 2, 3], [], [4]]
    assert [p["words"].values.numpy().tolist() for p in parsed] == [[b"hello", b"world"], [b"one token"], []]
    np.testing.assert_array_equal(records["grid"], np.arange(1, 13, dtype=np.float32).reshape(3, 2, 2))
    assert records["pair"].tolist() == [[b"x", b"y z"], [b"a", b"b"], [b"a", b"b"]]


def test_many_rows_report_bad_ones_in_file_order(tmp_path, capsys):
    """Rows are written in batches; bad rows are still met, reported and skipped in file order."""
    lines = [f"{i} {i + 1} {i + 2},{['red', 'green', 'blue'][i % 3]},{'' if i % 7 else i},{i % 3}" for i in range(6000)]
    lines[4499] = "1 2 3,gren,1,0"  # row 4500: the writer rejects it
    lines[4599] = "1 2 three,red,1,0"  # row 4600: it cannot be converted
    lines[10] = ",,,"  # row 11: nothing at all
    data = tmp_path / "many.csv"
    data.write_text("x,color,n,label\n" + "\n".join(lines) + "\n")
    spec = write_spec(tmp_path)

    assert write(spec, str(data), tmp_path / "out" / "m") == 2
    assert capsys.readouterr().err.startswith(f"error: {data} row 11: feature 'x': missing, and it has no default")
    lines[10] = "10 11 12,green,,1"
    data.write_text("x,color,n,label\n" + "\n".join(lines) + "\n")
    assert write(spec, str(data), tmp_path / "out" / "m") == 2
    assert capsys.readouterr().err.startswith(f"error: {data} row 4500: feature 'color': 'gren' is not in the vocabulary")
    assert files_in(tmp_path / "out") == []

    assert write(spec, str(data), tmp_path / "out" / "m", "--skip-bad-rows", "--shards", "3") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("wrote 5998 records (2 bad rows skipped)")
    assert [line.split(": feature")[0] for line in captured.err.splitlines()] == [
        f"skipped {data} row 4500",
        f"skipped {data} row 4600",
    ]
    records = by_first_x(read_back(str(tmp_path / "out" / "m-*"), table_features()))
    kept = [i for i in range(6000) if i not in (4499, 4599)]
    np.testing.assert_array_equal(records["x"][:, 0], np.array(kept, dtype=np.float32))
    assert records["n"].tolist() == [7 if i % 7 else i for i in kept]
    assert records["label"].tolist() == [i % 3 for i in kept]


# -- images from file paths -------------------------------------------------------------------


def write_pngs(tmp_path: Path, count: int, size: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (size, size, 1), dtype=np.uint8) for _ in range(count)]
    (tmp_path / "img").mkdir(exist_ok=True)
    for i, image in enumerate(pixels):
        (tmp_path / "img" / f"{i}.png").write_bytes(encode_png(image))
    return pixels


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_png_paths_store_the_file_bytes(tmp_path, capsys, fmt):
    import tensorflow as tf

    pixels = write_pngs(tmp_path, 3)
    # Relative paths resolve against the input file's directory, not the working directory.
    paths = ["img/0.png", str(tmp_path / "img" / "1.png"), "./img/2.png"]
    data = tmp_path / "inputs" / f"images.{fmt}"
    data.parent.mkdir()
    paths = ["../" + p if not p.startswith("/") else p for p in paths]
    if fmt == "csv":
        data.write_text("image,label\n" + "".join(f"{p},{i}\n" for i, p in enumerate(paths)))
    else:
        data.write_text("".join(json.dumps({"image": p, "label": i}) + "\n" for i, p in enumerate(paths)))

    assert write(write_spec(tmp_path, IMAGE_SPEC), str(data), tmp_path / "out" / "img") == 0
    assert capsys.readouterr().out.startswith("wrote 3 records")
    records = read_back(
        str(tmp_path / "out" / "img-*"),
        {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)},
    )
    assert records["label"].tolist() == [0, 1, 2]
    for i, stored in enumerate(records["image"]):
        assert stored == (tmp_path / "img" / f"{i}.png").read_bytes()
        np.testing.assert_array_equal(tf.io.decode_png(stored).numpy(), pixels[i])


@pytest.mark.parametrize(
    "cell, message",
    [
        ("img/missing.png", "images.csv row 2: feature 'image': image file not found: {tmp}/img/missing.png ('img/missing.png' is relative to the input file's directory)"),
        ("img/big.png", "images.csv row 2: feature 'image': expected an image of 4x4 pixels, got a PNG image of 5x5"),
        ("img", "images.csv row 2: feature 'image': cannot read image file {tmp}/img"),
    ],
)
def test_a_bad_image_names_row_feature_and_path(tmp_path, capsys, cell, message):
    write_pngs(tmp_path, 1)
    (tmp_path / "img" / "big.png").write_bytes(encode_png(np.zeros((5, 5, 1), np.uint8)))
    data = tmp_path / "images.csv"
    data.write_text(f"image,label\nimg/0.png,0\n{cell},1\n")

    assert write(write_spec(tmp_path, IMAGE_SPEC), str(data), tmp_path / "out" / "img") == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert files_in(tmp_path / "out") == []


# -- bad rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "npz"])
def test_a_bad_row_stops_with_its_row_number_and_writes_nothing(tmp_path, capsys, fmt):
    source = table_input(tmp_path, fmt, bad=True)
    assert write(write_spec(tmp_path), source, tmp_path / "out" / "train", "--shards", "2") == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith(f"error: {tmp_path}/{BAD_WHERE[fmt]}: feature 'label': "), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert files_in(tmp_path / "out") == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "npz"])
def test_skip_bad_rows_writes_the_rest_and_counts(tmp_path, capsys, fmt):
    source = table_input(tmp_path, fmt, bad=True)
    assert write(write_spec(tmp_path), source, tmp_path / "out" / "train", "--skip-bad-rows") == 0

    captured = capsys.readouterr()
    assert captured.out.startswith("wrote 4 records (1 bad row skipped) to "), captured.out
    assert captured.err.startswith(f"skipped {tmp_path}/{BAD_WHERE[fmt]}: feature 'label': ")
    keep = [0, 2, 3, 4]
    records = read_back(str(tmp_path / "out" / "train-*"), table_features())
    assert_table(records, [ROWS[i] for i in keep], [expected_n(fmt)[i] for i in keep])


def test_skip_bad_rows_shows_the_first_reasons_and_counts_the_rest(tmp_path, capsys):
    rows = "".join(f"{i} {i} {i},red,,{'x' if i % 2 else 0}\n" for i in range(20))
    data = tmp_path / "data.csv"
    data.write_text("x,color,n,label\n" + rows)
    assert write(write_spec(tmp_path), str(data), tmp_path / "out" / "t", "--skip-bad-rows") == 0

    captured = capsys.readouterr()
    assert captured.out.startswith("wrote 10 records (10 bad rows skipped)")
    reasons = captured.err.splitlines()
    assert reasons[:5] == [
        f"skipped {data} row {r}: feature 'label': string 'x' is not a number; expected int64 []" for r in (2, 4, 6, 8, 10)
    ]
    assert reasons[5:] == ["skipped 5 more bad rows"]


def test_all_rows_bad_is_an_error_and_keeps_existing_shards(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert write(spec, table_input(tmp_path, "csv"), tmp_path / "out" / "train") == 0
    shard = tmp_path / "out" / "train-00000-of-00001.tfrecord"
    before = shard.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("x,color,n,label\n1 2 3,red,1,x\n")

    assert write(spec, str(bad), tmp_path / "out" / "train", "--skip-bad-rows", "--overwrite") == 2
    assert "no records to write (all 1 rows were skipped as bad)" in capsys.readouterr().err
    assert shard.read_bytes() == before
    assert files_in(tmp_path / "out") == [shard.name]


@pytest.mark.parametrize(
    "text, message",
    [
        ("x,color,n,label\n1 2 3,red,1,0,5\n", "row 1: has 5 cells but the header has 4 columns"),
        ("x,color,n,label\n1 2,red,1,0\n", "row 1: feature 'x': expected float32 [3], got shape [2]"),
        ("x,color,n,label\n1 2 q,red,1,0\n", "row 1: feature 'x': string 'q' is not a number; expected float32 [3]"),
        ("x,color,n,label\n[1 2 3],red,1,0\n", "row 1: feature 'x': '[1 2 3]' is not a valid JSON list"),
        ("x,color,n,label\n1 2 3,,1,0\n", "row 1: feature 'color': missing, and it has no default"),
        ("x,color,n,label\n1 2 3,gren,1,0\n", "row 1: feature 'color': 'gren' is not in the vocabulary (did you mean 'green'?)"),
        ("x,color,n,label\n1 2 3,red,1,2.5\n", "row 1: feature 'label': 2.5 is not a whole number (int64 holds whole numbers)"),
        ("x,color,label\n", "no records to write (the input has no rows)"),
        ("x,color,n\n", "no column for the required feature 'label' (int64 [])"),
        ("x,color,n,label,color\n", "the header names column 'color' twice"),
        ("", "the file is empty; the first row must name the columns"),
    ],
)
def test_csv_problems_name_the_row_and_feature(tmp_path, capsys, text, message):
    data = tmp_path / "data.csv"
    data.write_text(text)
    assert write(write_spec(tmp_path), str(data), tmp_path / "out" / "t") == 2
    assert f"error: {data}" in (err := capsys.readouterr().err)
    assert message in err, err
    assert files_in(tmp_path / "out") == []


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"x": [1, 2, 3], "color": "red", "label": 0', "line 2: not valid JSON"),
        ('[1, 2, 3]', "line 2: expected a JSON object of feature name to value, got list"),
        ('{"x": "1 2 3", "color": "red", "label": 0}', "line 2: feature 'x': string '1 2 3' is not a number; expected float32 [3]"),
        ('{"x": [1, 2, 3], "color": "red", "label": true}', "line 2: feature 'label': bool True is not a number; expected int64 []"),
        ('{"x": [1, 2, 3], "color": null, "label": 0}', "line 2: feature 'color': missing, and it has no default"),
    ],
)
def test_jsonl_problems_name_the_line_and_feature(tmp_path, capsys, line, message):
    data = tmp_path / "data.jsonl"
    data.write_text('{"x": [1, 2, 3], "color": "red", "label": 0}\n' + line + "\n")
    assert write(write_spec(tmp_path), str(data), tmp_path / "out" / "t") == 2
    err = capsys.readouterr().err
    assert f"error: {data} {message}" in err, err


# -- columns the spec does not declare ---------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, message",
    [
        ("csv", "data.csv: unknown column 'colour' (did you mean 'color'?); the spec declares x, color, n, label"),
        ("jsonl", "data.jsonl line 1: unknown key 'colour' (did you mean 'color'?); the spec declares x, color, n, label"),
        ("npz", "data.npz: unknown array 'colour' (did you mean 'color'?); the spec declares x, color, n, label"),
    ],
)
def test_unknown_columns_are_an_error_unless_ignored(tmp_path, capsys, fmt, message):
    spec = write_spec(tmp_path)
    source = table_input(tmp_path, fmt, extra="colour")
    assert write(spec, source, tmp_path / "out" / "train") == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path}/{message}" in err and "--ignore-unknown" in err, err
    assert files_in(tmp_path / "out") == []

    assert write(spec, source, tmp_path / "out" / "train", "--ignore-unknown") == 0
    assert capsys.readouterr().out.startswith("wrote 5 records")
    records = read_back(str(tmp_path / "out" / "train-*"), table_features())
    assert_table(records, ROWS, expected_n(fmt))


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


# -- real processes ------------------------------------------------------------------------------


def quiet_env() -> dict[str, str]:
    """The environment without TensorFlow's log settings: the command must set them itself."""
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}


def test_console_script_writes_quietly(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run = subprocess.run(
        [str(FACTORY), "write", "--features", spec, "--input", table_input(tmp_path, "csv"), "--output", str(out / "train"), "--shards", "2"],
        capture_output=True, text=True, env=quiet_env(), timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no TensorFlow log lines
    assert run.stdout.startswith("wrote 5 records (0 bad rows skipped) to ")
    assert_table(read_back(str(out / "train-*"), table_features()), ROWS, expected_n("csv"))


def test_config_and_input_errors_come_before_tensorflow(tmp_path):
    spec = write_spec(tmp_path)
    typo = tmp_path / "typo.yaml"
    typo.write_text(TABLE_SPEC.replace("x: {dtype: float32", "x: {dtpye: float32"))
    unknown = table_input(tmp_path, "csv", extra="colour")
    existing = tmp_path / "out" / "train-00000-of-00001.tfrecord"
    existing.parent.mkdir()
    existing.write_bytes(b"")
    calls = [
        ["write", "--features", str(typo), "--input", "data.csv", "--output", str(tmp_path / "o")],
        ["write", "--features", spec, "--input", unknown, "--output", str(tmp_path / "o")],
        ["write", "--features", spec, "--input", table_input(tmp_path, "jsonl"), "--output", str(tmp_path / "out" / "train")],
        ["check", "--features", str(typo), "anything"],
    ]
    code = (
        "import sys, time\n"
        "from factory.cli import main\n"
        "start = time.perf_counter()\n"
        f"codes = [main(argv) for argv in {calls!r}]\n"
        "print('tensorflow' in sys.modules, *codes, round(time.perf_counter() - start, 2))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    imported, *codes, seconds = run.stdout.split()
    assert (imported, codes) == ("False", ["2", "2", "2", "2"]), run.stdout + run.stderr
    errors = run.stderr.splitlines()
    assert errors[0] == f"error: 2 problems in config in {typo}:"
    assert "  - features.x.dtpye: unknown key (did you mean 'dtype'?); allowed keys:" in run.stderr
    assert "  - features.x.dtype: required key is missing" in run.stderr
    assert "unknown column 'colour' (did you mean 'color'?)" in run.stderr
    assert "train-00000-of-00001.tfrecord already exists" in run.stderr
    assert "Traceback" not in run.stderr
    print(f"four failing commands took {seconds} s without TensorFlow")


def test_interrupt_exits_130_and_leaves_no_files(tmp_path):
    """Ctrl-C while rows are still arriving (a named pipe as input): exit 130, no shard, no partial file."""
    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [str(FACTORY), "write", "--features", write_spec(tmp_path), "--input", str(fifo), "--output", str(out / "train")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=quiet_env(),
    )
    deadline = time.monotonic() + 60
    try:
        while True:  # open the writing end without blocking until the command opens the reading end
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as err:
                assert err.errno == errno.ENXIO
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
        os.write(fd, b"x,color,n,label\n1 2 3,red,1,0\n")
        while not any(".partial-" in name for name in files_in(out)):  # the writer is open
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        os.close(fd)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted" and stdout == ""
    assert files_in(out) == []
