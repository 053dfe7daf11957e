"""``factory write`` and bad rows: each stops the write naming file, row and feature, or is skipped and counted."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.write import (
    ROWS,
    assert_table,
    by_first_x,
    expected_n,
    files_in,
    read_back,
    table_features,
    table_input,
    write,
    write_spec,
)

# Where the bad row of `table_input(..., bad=True)` is, as each format names it.
BAD_WHERE = {"csv": "data.csv line 3", "jsonl": "data.jsonl line 2", "npz": "data.npz record 1"}


def test_many_rows_report_bad_ones_in_file_order(tmp_path, capsys):
    """Rows are written in batches; bad rows are still met, reported and skipped in file order."""
    lines = [f"{i} {i + 1} {i + 2},{['red', 'green', 'blue'][i % 3]},{'' if i % 7 else i},{i % 3}" for i in range(6000)]
    lines[4499] = "1 2 3,gren,1,0"  # line 4501 (row 4500 after the header): the writer rejects it
    lines[4599] = "1 2 three,red,1,0"  # line 4601: it cannot be converted
    lines[10] = ",,,"  # line 12: nothing at all
    data = tmp_path / "many.csv"
    data.write_text("x,color,n,label\n" + "\n".join(lines) + "\n")
    spec = write_spec(tmp_path)

    assert write(spec, str(data), tmp_path / "out" / "m") == 2
    assert capsys.readouterr().err.startswith(f"error: {data} line 12: feature 'x': missing, and it has no default")
    lines[10] = "10 11 12,green,,1"
    data.write_text("x,color,n,label\n" + "\n".join(lines) + "\n")
    assert write(spec, str(data), tmp_path / "out" / "m") == 2
    assert capsys.readouterr().err.startswith(
        f"error: {data} line 4501: feature 'color': 'gren' is not in the vocabulary"
    )
    assert files_in(tmp_path / "out") == []

    assert write(spec, str(data), tmp_path / "out" / "m", "--skip-bad-rows", "--shards", "3") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("wrote 5998 records (2 bad rows skipped)")
    assert [line.split(": feature")[0] for line in captured.err.splitlines()] == [
        f"skipped {data} line 4501",
        f"skipped {data} line 4601",
    ]
    records = by_first_x(read_back(str(tmp_path / "out" / "m-*"), table_features()))
    kept = [i for i in range(6000) if i not in (4499, 4599)]
    np.testing.assert_array_equal(records["x"][:, 0], np.array(kept, dtype=np.float32))
    assert records["n"].tolist() == [7 if i % 7 else i for i in kept]
    assert records["label"].tolist() == [i % 3 for i in kept]


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
        f"skipped {data} line {r + 1}: feature 'label': string 'x' is not a number; expected int64 []"
        for r in (2, 4, 6, 8, 10)
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
        ("x,color,n,label\n1 2 3,red,1,0,5\n", "line 2: has 5 cells but the header has 4 columns"),
        ("x,color,n,label\n1 2,red,1,0\n", "line 2: feature 'x': expected float32 [3], got shape [2]"),
        ("x,color,n,label\n1 2 q,red,1,0\n", "line 2: feature 'x': string 'q' is not a number; expected float32 [3]"),
        ("x,color,n,label\n[1 2 3],red,1,0\n", "line 2: feature 'x': '[1 2 3]' is not a valid JSON list"),
        ("x,color,n,label\n1 2 3,,1,0\n", "line 2: feature 'color': missing, and it has no default"),
        (
            "x,color,n,label\n1 2 3,gren,1,0\n",
            "line 2: feature 'color': 'gren' is not in the vocabulary (did you mean 'green'?)",
        ),
        (
            "x,color,n,label\n1 2 3,red,1,2.5\n",
            "line 2: feature 'label': 2.5 is not a whole number (int64 holds whole numbers)",
        ),
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
        ("[1, 2, 3]", "line 2: expected a JSON object of feature name to value, got list"),
        (
            '{"x": "1 2 3", "color": "red", "label": 0}',
            "line 2: feature 'x': string '1 2 3' is not a number; expected float32 [3]",
        ),
        (
            '{"x": [1, 2, 3], "color": "red", "label": true}',
            "line 2: feature 'label': bool True is not a number; expected int64 []",
        ),
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
        (
            "jsonl",
            "data.jsonl line 1: unknown key 'colour' (did you mean 'color'?); the spec declares x, color, n, label",
        ),
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
