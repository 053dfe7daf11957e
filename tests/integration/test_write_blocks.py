"""``factory write`` on large inputs: blocks, parallel workers, Parquet, and the same records and errors as row by row.

The reference is the row-by-row reader (``factory.features.sources``) and the per-record
encoder: a file written in blocks, by any number of workers, must hold the records they
give, in the same shards, and a bad row must be named by the same line.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.cli import main
from factory.cluster.preflight import RAY_EXTRA
from factory.features.encoder import encode_record
from factory.features.sources import CsvSource
from factory.features.spec import FeatureSpec
from tests.helpers.run_dirs import BIN
from tests.helpers.write import files_in

SPEC = """
features:
  a: {dtype: float32, shape: []}
  b: {dtype: float32, shape: [], missing: mean}
  city: {dtype: string, shape: []}
  note: {dtype: string, shape: [], missing: {fill: constant, value: none}}
  v: {dtype: float32, shape: [2]}
labels:
  y: {dtype: int64, shape: [], num_classes: 5}
"""


def records_of(path) -> list[bytes]:
    """The records of an uncompressed TFRecord file (its framing read by hand)."""
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
    return out


def shards(directory, prefix: str = "out") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob(f"{prefix}-*"))}


def csv_table(rows: int, seed: int = 0) -> str:
    """A CSV with blank cells, quoted cells holding commas, quotes and line breaks, and blank lines."""
    rng = np.random.default_rng(seed)
    lines = ["a,b,city,note,v,y"]
    for i in range(rows):
        b = "" if i % 7 == 0 else f"{rng.normal():.4f}"
        note = ['"a, b"', '"say ""hi"""', '"two\nlines"', "", "plain"][i % 5]
        lines.append(f'{rng.normal():.5f},{b},city_{rng.integers(0, 300)},{note},"{i} {i / 2}",{i % 5}')
        if i % 97 == 0:
            lines.append("")
    return "\n".join(lines) + "\n"


def write(tmp_path, data, *options: str, output: str = "out") -> int:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    argv = ["write", "--features", str(spec), "--input", str(data), "--output", str(tmp_path / output)]
    return main([*argv, *options])


def expected_records(tmp_path, data) -> list[bytes]:
    """Row by row: the reference reader and encoder."""
    spec = FeatureSpec.from_yaml(tmp_path / "spec.yaml")
    with CsvSource(data, spec) as source:
        return [encode_record(spec, row.record) for row in source]


def test_blocks_and_workers_write_the_records_of_the_row_by_row_reader(tmp_path, capsys):
    data = tmp_path / "in.csv"
    data.write_text(csv_table(3000))
    assert write(tmp_path, data, "--shards", "3", "--block-size", "4MB", "--workers", "1", output="one") == 0
    assert write(tmp_path, data, "--shards", "3", "--block-size", "2KB", "--workers", "1", output="blocks") == 0
    assert write(tmp_path, data, "--shards", "3", "--block-size", "2KB", "--workers", "2", output="workers") == 0
    out = capsys.readouterr().out
    assert out.count("wrote 3000 records (0 bad rows skipped)") == 3
    assert out.count("  b     429 of 3000 (14.3%)  missing.fill: mean\n") == 3  # blank cells, counted alike
    assert data.stat().st_size > 40 * 2048  # many blocks
    one = shards(tmp_path, "one")
    assert len(one) == 3
    assert [shards(tmp_path, name) for name in ("blocks", "workers")] == [
        {k.replace("one", name): v for k, v in one.items()} for name in ("blocks", "workers")
    ]
    expected = expected_records(tmp_path, data)
    written = [records_of(tmp_path / name) for name in sorted(one)]
    assert [r for i in range(len(expected)) for r in [written[i % 3][i // 3]]] == expected


def test_a_bad_row_in_a_later_block_is_named_by_its_line(tmp_path, capsys):
    text = csv_table(2000).splitlines()
    bad_line = 1701  # counted as an editor counts them, past several cells with line breaks
    assert text[bad_line - 1].count(",") >= 5
    text[bad_line - 1] = "abc," + text[bad_line - 1].split(",", 1)[1]
    data = tmp_path / "in.csv"
    data.write_text("\n".join(text) + "\n")
    (tmp_path / "keep-00000-of-00001.tfrecord").write_bytes(b"old")
    for workers in ("1", "2"):
        assert write(tmp_path, data, "--block-size", "1KB", "--workers", workers) == 2
        err = capsys.readouterr().err
        assert err.strip() == (
            f"error: {data} line {bad_line}: feature 'a': string 'abc' is not a number; expected float32 []"
        )
        assert files_in(tmp_path) == ["in.csv", "keep-00000-of-00001.tfrecord", "spec.yaml"]
    assert write(tmp_path, data, "--block-size", "1KB", "--workers", "2", "--skip-bad-rows") == 0
    captured = capsys.readouterr()
    assert f"skipped {data} line {bad_line}: feature 'a'" in captured.err
    assert "wrote 1999 records (1 bad row skipped)" in captured.out


def test_split_parts_follow_the_rows_not_the_blocks_workers_or_skipped_rows(tmp_path, capsys):
    text = csv_table(1500).splitlines()
    data = tmp_path / "in.csv"
    data.write_text("\n".join(text) + "\n")
    split = ["--split", "train=0.7,eval=0.3", "--seed", "5"]
    assert write(tmp_path, data, *split, "--workers", "1", output="serial") == 0
    assert write(tmp_path, data, *split, "--workers", "2", "--block-size", "1KB", output="parallel") == 0
    serial = {p.name: p.read_bytes() for p in (tmp_path / "serial").iterdir()}
    assert serial == {p.name: p.read_bytes() for p in (tmp_path / "parallel").iterdir()}
    counts = {
        part: len(records_of(tmp_path / "serial" / f"{part}-00000-of-00001.tfrecord")) for part in ("train", "eval")
    }
    assert counts["train"] + counts["eval"] == 1500 and 900 < counts["train"] < 1200
    # A bad row skipped leaves every other row in its part.
    line = 801
    bad = list(text)
    bad[line - 1] = "abc," + bad[line - 1].split(",", 1)[1]
    data.write_text("\n".join(bad) + "\n")
    assert write(tmp_path, data, *split, "--workers", "2", "--block-size", "1KB", "--skip-bad-rows", output="skip") == 0
    capsys.readouterr()
    clean_data = tmp_path / "clean.csv"
    clean_data.write_text("\n".join(text) + "\n")
    spec = FeatureSpec.from_yaml(tmp_path / "spec.yaml")
    with CsvSource(clean_data, spec) as source:
        dropped = next(encode_record(spec, r.record) for r in source if r.where == f"line {line}")
    for part in ("train", "eval"):
        clean = records_of(tmp_path / "serial" / f"{part}-00000-of-00001.tfrecord")
        skipped = records_of(tmp_path / "skip" / f"{part}-00000-of-00001.tfrecord")
        assert skipped == [r for r in clean if r != dropped]
    assert sum(len(records_of(tmp_path / "skip" / f"{p}-00000-of-00001.tfrecord")) for p in counts) == 1499


# -- Parquet ---------------------------------------------------------------------------------------

PARQUET_SPEC = """
features:
  f: {dtype: float32, shape: [], missing: mean}
  i: {dtype: int64, shape: [], missing: {fill: constant, value: -1}}
  from_int: {dtype: float32, shape: []}
  flag: {dtype: int64, shape: []}
  s: {dtype: string, shape: [], missing: {fill: constant, value: none}}
  cat: {dtype: string, shape: []}
  raw: {dtype: string, shape: []}
  vec: {dtype: float32, shape: [3]}
  grid: {dtype: int64, shape: [2, 2]}
  seq: {dtype: int64, shape: [null]}
  words: {dtype: string, shape: [null]}
labels:
  y: {dtype: int64, shape: [], num_classes: 3}
"""


def parquet_rows(n: int) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for k in range(n):
        rows.append(
            {
                "f": None if k % 5 == 0 else float(np.float32(rng.normal())),
                "i": None if k % 4 == 1 else int(rng.integers(-(2**40), 2**40)),
                "from_int": int(rng.integers(-100, 100)),
                "flag": bool(k % 2),
                "s": None if k % 6 == 2 else f"s{k}",
                "cat": ["red", "green", "blue"][k % 3],
                "raw": f"r{k % 7}".encode(),
                "vec": [float(np.float32(x)) for x in rng.normal(size=3)],
                "grid": [[k, -k], [k * 2, 3]],
                "seq": list(range(k % 4)),
                "words": ["w"] * (k % 3),
                "y": k % 3,
            }
        )
    return rows


def parquet_table(rows: list[dict]) -> pa.Table:
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    types = {
        "f": pa.float32(),
        "i": pa.int64(),
        "from_int": pa.int16(),
        "flag": pa.bool_(),
        "s": pa.string(),
        "cat": pa.dictionary(pa.int8(), pa.string()),
        "raw": pa.binary(),
        "vec": pa.list_(pa.float32(), 3),
        "grid": pa.list_(pa.list_(pa.int64())),
        "seq": pa.large_list(pa.int32()),
        "words": pa.list_(pa.string()),
        "y": pa.int64(),
    }
    arrays = {}
    for name, values in columns.items():
        if name == "cat":
            arrays[name] = pa.array(values, pa.string()).dictionary_encode()
        else:
            arrays[name] = pa.array(values, types[name])
    return pa.table(arrays)


def test_parquet_of_every_type_with_missing_values_writes_what_json_lines_writes(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(PARQUET_SPEC)
    rows = parquet_rows(2500)
    pq.write_table(parquet_table(rows), tmp_path / "in.parquet", row_group_size=600)
    as_json = [{**r, "raw": r["raw"].decode(), "flag": int(r["flag"])} for r in rows]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in as_json))
    base = ["write", "--features", str(spec), "--shards", "2"]
    assert main([*base, "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "json")]) == 0
    for workers in ("1", "2"):
        out = tmp_path / f"parquet{workers}"
        assert main([*base, "--input", str(tmp_path / "in.parquet"), "--output", str(out), "--workers", workers]) == 0
        for shard in range(2):
            name = f"-0000{shard}-of-00002.tfrecord"
            assert (tmp_path / f"parquet{workers}{name}").read_bytes() == (tmp_path / f"json{name}").read_bytes()
    out = capsys.readouterr().out
    assert out.count("wrote 2500 records") == 3
    assert "f  500 of 2500 (20.0%)  missing.fill: mean" in out


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        (
            "f",
            pa.array(["1.5", "x"]),
            "column 'f' holds string, but the feature 'f' is float32 []: numbers expected; cast the column (e.g. df['f'].astype('float')) or change the spec",
        ),
        ("y", pa.array([[1], [2]]), "one value per row expected, not a list"),
        ("vec", pa.array([1.0, 2.0]), "a list per row expected (3 values); store the values as a list"),
    ],
)
def test_a_parquet_column_that_contradicts_the_spec_is_refused_before_writing(
    tmp_path, capsys, column, values, message
):
    spec = tmp_path / "spec.yaml"
    spec.write_text(PARQUET_SPEC)
    table = parquet_table(parquet_rows(2))
    table = table.set_column(table.column_names.index(column), column, values)
    pq.write_table(table, tmp_path / "in.parquet")
    argv = [
        "write",
        "--features",
        str(spec),
        "--input",
        str(tmp_path / "in.parquet"),
        "--output",
        str(tmp_path / "o/x"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'in.parquet'}: column '{column}' holds ")
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_unreadable_inputs_and_bad_options_exit_2_naming_the_fix(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    (tmp_path / "in.parquet").write_text("a,b\n1,2\n")
    data = tmp_path / "in.csv"
    data.write_text(csv_table(3))
    base = ["write", "--features", str(spec), "--output", str(tmp_path / "o/x")]
    assert main([*base, "--input", str(tmp_path / "in.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'in.parquet'}: not a Parquet file (")
    assert err.rstrip().endswith("pass --format csv or jsonl if it is text")
    assert main([*base, "--input", str(data), "--workers", "0"]) == 2
    assert "--workers: expected a positive integer, got '0'" in capsys.readouterr().err
    assert main([*base, "--input", str(data), "--block-size", "10"]) == 2
    assert "--block-size: expected a size of at least 1KB such as 64KB or 8MB, got '10'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as without the extra
    assert main([*base, "--input", str(data), "--engine", "ray"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --engine ray needs Ray, which is not installed: {RAY_EXTRA}"
    assert not (tmp_path / "o").exists()


def test_json_lines_in_blocks_names_a_bad_line_as_row_by_row(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "features:\n  a: {dtype: float32, shape: []}\n  s: {dtype: string, shape: []}\nlabels:\n  y: {dtype: int64, shape: []}\n"
    )
    lines = [json.dumps({"a": i / 3, "s": f"v{i % 11}", "y": i % 2}) for i in range(3000)]
    lines[2400] = '{"a": 1, "s": "x", "y": '
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n")
    argv = [
        "write",
        "--features",
        str(spec),
        "--input",
        str(data),
        "--output",
        str(tmp_path / "o/x"),
        "--block-size",
        "4KB",
    ]
    assert main([*argv, "--workers", "2"]) == 2
    assert f"{data} line 2401: not valid JSON (Expecting value at column 25)" in capsys.readouterr().err
    lines[2400] = json.dumps({"a": 1, "s": "x", "y": 1})
    data.write_text("\n".join(lines) + "\n")
    assert main([*argv, "--workers", "2"]) == 0
    assert main([*argv[:-2], "--block-size", "1MB", "--workers", "1", "--output", str(tmp_path / "p/x")]) == 0
    assert (tmp_path / "o/x-00000-of-00001.tfrecord").read_bytes() == (
        tmp_path / "p/x-00000-of-00001.tfrecord"
    ).read_bytes()


def test_ctrl_c_with_workers_exits_130_leaving_no_file_and_no_process(tmp_path):
    """A worker is stuck on a block (its image path is a named pipe nobody writes) when Ctrl-C comes:
    the command stops its workers, removes its partial files and exits 130."""
    from factory.features.images import encode_png

    (tmp_path / "spec.yaml").write_text(
        "features:\n  image: {dtype: uint8, shape: [2, 2, 1], encoding: png}\n"
        "labels:\n  label: {dtype: int64, shape: [], num_classes: 2}\n"
    )
    (tmp_path / "ok.png").write_bytes(encode_png(np.zeros((2, 2, 1), dtype=np.uint8)))
    os.mkfifo(tmp_path / "stuck.png")
    rows = [f"{'stuck.png' if i == 2500 else 'ok.png'},{i % 2}" for i in range(3000)]
    (tmp_path / "in.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    command = [str(BIN / "factory"), "write", "--features", str(tmp_path / "spec.yaml"), "--input"]
    proc = subprocess.Popen(
        [*command, str(tmp_path / "in.csv"), "--output", str(out / "x"), "--workers", "2", "--block-size", "4KB"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job: Ctrl-C reaches every process
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not any(".partial-" in name for name in files_in(out)):  # the writer is open
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (proc.returncode, stdout, stderr) == (130, "", "interrupted\n")
    assert files_in(out) == []
    assert _session_processes(proc.pid) == []


def _session_processes(session: int) -> list[int]:
    """The processes of a session (its workers, if any were left)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session:  # after ")": state, ppid, pgrp, session
                found.append(int(entry))
    return found
