"""``factory write`` benchmark: the command on CSV and Parquet against pyarrow + ``write_many``, its workers, its memory.

A mixed table (8 float32 columns, a string column of 5,000 distinct values, an int64
label 0..9; the table of ``records_benchmark.py``'s mixed row) is written once as CSV
and as Parquet (cached in ``--dir``), then, every path in its own process, timed from
start to exit (best of ``--repeats``, interleaved so that machine noise hits all alike):

- ``baseline``: a hand-written script that reads the whole file with pyarrow
  (``pyarrow.csv.read_csv`` / ``pyarrow.parquet.read_table``) and passes its columns
  to ``spec.writer(...).write_many``: the limit of this design (target: the command
  >= 0.9x of it, workers 1);
- ``factory write --workers 1`` and ``--workers 2`` (target: 2 workers >= 1.6x 1 worker).

Peak memory: ``factory write --workers 1`` of ``--rows`` and of ``--memory-rows`` rows
(default 10x) of the same table, as CSV, the maximum resident set size of the process
(``wait4``); target within 10% of each other. All runs write 4 shards into a temporary
directory. The exit status is 0 whether or not a target is met: this is a measurement.

Run with ``make bench`` or ``python benchmarks/write_benchmark.py [--rows N] [--memory-rows M] [--repeats K]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPEC = """\
features:
  f0: {dtype: float32, shape: []}
  f1: {dtype: float32, shape: []}
  f2: {dtype: float32, shape: []}
  f3: {dtype: float32, shape: []}
  f4: {dtype: float32, shape: []}
  f5: {dtype: float32, shape: []}
  f6: {dtype: float32, shape: []}
  f7: {dtype: float32, shape: []}
  city: {dtype: string, shape: []}
labels:
  label: {dtype: int64, shape: [], num_classes: 10}
"""
SHARDS = 4
CHUNK = 500_000
FACTORY = Path(sys.executable).parent / "factory"

BASELINE = """
import sys
import pyarrow.csv, pyarrow.parquet
from factory import FeatureSpec

spec_path, data, out, shards = sys.argv[1:5]
table = pyarrow.parquet.read_table(data) if data.endswith(".parquet") else pyarrow.csv.read_csv(data)
columns = {name: table.column(name).to_numpy() for name in table.column_names}
spec = FeatureSpec.from_yaml(spec_path)
with spec.writer(out, shards=int(shards), overwrite=True) as writer:
    writer.write_many(columns)
"""


def make_table(directory: Path, rows: int) -> tuple[Path, Path]:
    """``rows`` rows as CSV and Parquet under ``directory`` (written once, in chunks: bounded memory)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    csv_path, parquet_path = directory / f"table-{rows}.csv", directory / f"table-{rows}.parquet"
    if csv_path.exists() and parquet_path.exists():
        return csv_path, parquet_path
    rng = np.random.default_rng(20261201)
    csv_writer = parquet_writer = None
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            columns = {f"f{i}": pa.array(rng.standard_normal(n, dtype=np.float32)) for i in range(8)}
            columns["city"] = pa.array(np.char.add("city_", rng.integers(0, 5000, n).astype(str)).astype(object))
            columns["label"] = pa.array(rng.integers(0, 10, n))
            table = pa.table(columns)
            if csv_writer is None:
                csv_writer = pcsv.CSVWriter(str(csv_path) + ".tmp", table.schema)
                parquet_writer = pq.ParquetWriter(str(parquet_path) + ".tmp", table.schema)
            csv_writer.write_table(table)
            parquet_writer.write_table(table, row_group_size=CHUNK)
    finally:
        if csv_writer is not None:
            csv_writer.close()
            parquet_writer.close()
    os.replace(str(csv_path) + ".tmp", csv_path)
    os.replace(str(parquet_path) + ".tmp", parquet_path)
    return csv_path, parquet_path


def run(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident set size (bytes) of ``command`` in a process of its own."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    proc.stderr.close()
    return seconds, usage.ru_maxrss * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=None, help="the larger file of the memory check (10x)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "factory-write-benchmark"))
    args = parser.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    big_rows = args.memory_rows or 10 * args.rows
    print(f"tables: {args.rows:,} and {big_rows:,} rows (8 float32, a string of 5,000 values, an int64 label)")
    csv_path, parquet_path = make_table(directory, args.rows)
    spec = directory / "spec.yaml"
    spec.write_text(SPEC)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        write = [str(FACTORY), "write", "--features", str(spec), "--shards", str(SHARDS), "--overwrite"]
        paths = {}
        for name, data in (("csv", csv_path), ("parquet", parquet_path)):
            paths[f"{name} baseline"] = [sys.executable, "-c", BASELINE, str(spec), str(data), str(out), str(SHARDS)]
            for workers in (1, 2):
                paths[f"{name} workers {workers}"] = [
                    *write,
                    "--input",
                    str(data),
                    "--output",
                    str(out),
                    "--workers",
                    str(workers),
                ]
        best = {name: float("inf") for name in paths}
        for _ in range(args.repeats):
            for name, command in paths.items():
                best[name] = min(best[name], run(command)[0])
        print(f"\n| path | {args.rows:,} rows, seconds (best of {args.repeats}) | records/s |")
        print("|---|---|---|")
        for name, seconds in best.items():
            print(f"| {name} | {seconds:.2f} | {args.rows / seconds:,.0f} |")
        print("\n| ratio | measured | target |")
        print("|---|---|---|")
        for name in ("csv", "parquet"):
            versus = best[f"{name} baseline"] / best[f"{name} workers 1"]
            scaling = best[f"{name} workers 1"] / best[f"{name} workers 2"]
            print(f"| {name}: factory write / pyarrow + write_many | {versus:.2f}x | >= 0.9x |")
            print(f"| {name}: --workers 2 / --workers 1 | {scaling:.2f}x | >= 1.6x |")

        big_csv, _ = make_table(directory, big_rows)
        peaks = {}
        for rows, data in ((args.rows, csv_path), (big_rows, big_csv)):
            peaks[rows] = run([*write, "--input", str(data), "--output", str(out), "--workers", "1"])
        (small_s, small_m), (big_s, big_m) = peaks[args.rows], peaks[big_rows]
        print("\n| rows (CSV, --workers 1) | seconds | peak RSS |\n|---|---|---|")
        print(f"| {args.rows:,} | {small_s:.1f} | {small_m / 2**20:.0f} MB |")
        print(f"| {big_rows:,} | {big_s:.1f} | {big_m / 2**20:.0f} MB |")
        print(f"peak memory, {big_rows:,} / {args.rows:,} rows: {big_m / small_m:.3f} (target: within 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
