"""``factory write``: records from CSV, JSON Lines or NPZ files."""

from __future__ import annotations

import argparse
import contextlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from factory.cli.args import add_compression, byte_size, positive_int
from factory.cli.bad_rows import BadRows
from factory.cluster.preflight import RAY_EXTRA, ray_installed
from factory.cluster.ray_write import run_blocks_on_ray
from factory.errors import RecordError
from factory.features.sources import NpzSource, input_format, open_source
from factory.features.spec import FeatureSpec
from factory.features.table_blocks import BLOCK_BYTES
from factory.features.table_blocks import plan as blocks_plan
from factory.features.table_write import BlockResult, Job, SplitRule, default_workers, run_blocks, without_index
from factory.features.tfrecord import normalize_compression

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.writer import RecordWriter

# Shard paths listed one by one in the summary; more are shown as a glob.
LISTED_SHARDS = 3


# -- factory write -------------------------------------------------------------------------------


def write_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, metavar="SPEC", help="feature spec YAML file")
    parser.add_argument("--input", required=True, metavar="FILE", help="one .csv, .jsonl, .parquet or .npz file")
    parser.add_argument(
        "--format", choices=("csv", "jsonl", "parquet", "npz"), help="input format (default: from the extension)"
    )
    parser.add_argument(
        "--output", required=True, metavar="PREFIX", help="shards are written as PREFIX-00000-of-0000N.tfrecord"
    )
    parser.add_argument(
        "--shards", type=positive_int, default=1, metavar="N", help="number of shard files (default: 1)"
    )
    add_compression(parser, "none")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing shards under PREFIX (default: refuse)"
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip and count rows that do not match the spec (default: stop at the first)",
    )
    parser.add_argument(
        "--ignore-unknown", action="store_true", help="drop columns the spec does not declare (default: an error)"
    )
    parser.add_argument(
        "--split",
        metavar="PART=FRACTION,...",
        help="write the rows into parts, e.g. train=0.8,eval=0.1,test=0.1: each row goes to one part at random "
        "(see --seed), written as OUTPUT/PART-*.tfrecord (default: one set of shards under OUTPUT)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds --split (default: 0)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="processes that read and encode blocks of the input at once; the shards are the same for any N "
        f"(default: the cores, {default_workers()} here)",
    )
    parser.add_argument(
        "--block-size",
        type=byte_size,
        default=BLOCK_BYTES,
        metavar="SIZE",
        help="bytes of a CSV or JSON Lines file read as one block, e.g. 8MB (default); a worker holds one block "
        "at a time (Parquet: 65,536 rows)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: processes on this machine (default); ray: Ray Data tasks on a Ray cluster (factory[ray])",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="--engine ray: the Ray cluster's address (default: a local Ray instance of --workers CPUs)",
    )


def parse_split(text: str, seed: int) -> SplitRule:
    """``--split train=0.8,eval=0.1,test=0.1``: each row goes to one part, drawn with these
    probabilities from ``seed`` and the row's place in the file (``SplitRule``); the parts are
    written as ``OUTPUT/<part>-*``."""
    parts: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        try:
            fraction = float(value) if sep else math.nan
        except ValueError:
            fraction = math.nan
        if not _PART.fullmatch(name) or not 0 < fraction <= 1:
            raise RecordError(
                f"--split: {item.strip()!r} is not NAME=FRACTION with a fraction in (0, 1]; "
                "e.g. --split train=0.8,eval=0.1,test=0.1"
            )
        if name in parts:
            raise RecordError(f"--split: the part '{name}' is named twice")
        parts[name] = fraction
    if abs(sum(parts.values()) - 1) > 1e-6:
        raise RecordError(f"--split: the fractions add up to {sum(parts.values()):g}; they must add up to 1")
    return SplitRule(tuple(parts), tuple(parts.values()), seed)


_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _write_blocks(results: Iterable[BlockResult], writers: list[RecordWriter], bad: BadRows) -> Counter:
    """Each block's records appended to its parts' shards, in file order; its bad rows reported (the first
    one stops the command unless skipped). Returns the values left out as missing."""
    missing: Counter = Counter()
    for result in results:
        for where, why in result.reasons:
            bad.add(where, why)
        bad.count += result.bad - len(result.reasons)
        for writer, part in zip(writers, result.parts, strict=True):
            writer.write_framed(part.groups, part.count)
        missing.update(result.missing)
    return missing


def _write_columns(
    source: NpzSource, writers: list[RecordWriter], bad: BadRows, split: SplitRule | None, chunk: int = 65536
) -> None:
    """Whole columns through the writer's fast path; a chunk with a bad record is redone row by row.

    The column path validates a chunk before writing any of it; the row-by-row
    pass then writes the good records, and names (or skips) each bad one by its
    index in the archive. With ``split`` each part's rows go to its writer.
    """
    parts = split.parts(np.arange(source.rows)) if split is not None else np.zeros(source.rows, dtype=np.int64)
    for part, writer in enumerate(writers):
        index = np.flatnonzero(parts == part)
        for lo in range(0, len(index), chunk):
            rows = index[lo : lo + chunk]
            before = writer.count
            try:
                writer.write_many({name: arr[rows] for name, arr in source.columns.items()})
                continue
            except RecordError:
                pass  # the records themselves are the reference: redo them one by one
            for i in rows[writer.count - before :].tolist():
                try:
                    writer.write(source.record(i))
                except RecordError as err:
                    bad.add(source.where(i), without_index(str(err)))


def _shard_summary(paths: Sequence[Path]) -> str:
    if len(paths) <= LISTED_SHARDS:
        return ", ".join(str(p) for p in paths)
    head, _, tail = str(paths[0]).rpartition("-00000-of-")
    return f"{head}-*-of-{tail} ({len(paths)} shards)"


def run_write(args: argparse.Namespace) -> int:
    """Validate the spec, check the input as a whole, then write; nothing is written unless every kept row is good."""
    spec = FeatureSpec.from_yaml(args.features)
    compression = normalize_compression(args.compression)
    split = parse_split(args.split, args.seed) if args.split else None
    kind = input_format(args.input, args.format)
    workers = args.workers or default_workers()
    if args.engine == "ray":
        check_ray_write(args, kind)
    elif args.address is not None:
        raise RecordError("--address: only with --engine ray")
    bad = BadRows(args.input, args.skip_bad_rows)
    prefixes = [Path(args.output) / name for name in split.names] if split else [Path(args.output)]
    with contextlib.ExitStack() as inputs:
        # The input is checked as a whole first (its columns): a wrong file fails before anything is written.
        if kind == "npz":
            source = inputs.enter_context(
                open_source(args.input, spec, format=kind, ignore_unknown=args.ignore_unknown)
            )
        else:
            plan = blocks_plan(args.input, spec, kind, args.ignore_unknown, args.block_size)
        try:
            with contextlib.ExitStack() as stack:
                writers = [
                    stack.enter_context(
                        spec.writer(prefix, shards=args.shards, compression=compression, overwrite=args.overwrite)
                    )
                    for prefix in prefixes
                ]
                if kind == "npz":
                    _write_columns(source, writers, bad, split)
                    missing: Counter = Counter()
                else:
                    job = Job(plan, tuple(args.shards for _ in prefixes), split, args.skip_bad_rows)
                    if args.engine == "ray":
                        results = run_blocks_on_ray(job, workers, args.address)
                    else:
                        results = run_blocks(job, workers)
                    missing = _write_blocks(results, writers, bad)
                total = sum(w.count for w in writers)
                if total == 0:
                    why = f"all {bad.count} rows were skipped as bad" if bad.count else "the input has no rows"
                    raise RecordError(
                        f"{args.input}: no records to write ({why}); existing files are left as they were"
                    )
                empty = [name for name, w in zip(split.names, writers, strict=True) if w.count == 0] if split else []
                if empty:
                    raise RecordError(
                        f"--split: no row fell into {', '.join(empty)} ({total} rows in all); give "
                        f"{'it' if len(empty) == 1 else 'them'} a larger fraction, or write more rows; "
                        "existing files are left as they were"
                    )
        finally:
            bad.report()
    rows = "row" if bad.count == 1 else "rows"
    for name, writer in zip(split.names if split else [None], writers, strict=True):
        records = "record" if writer.count == 1 else "records"
        part = f" of {name}" if name else ""
        skipped = "" if split else f" ({bad.count} bad {rows} skipped)"
        print(f"wrote {writer.count} {records}{part}{skipped} to {_shard_summary(writer.paths)}")
    if split:
        print(f"{bad.count} bad {rows} skipped")
    _report_missing(spec, sum((w.missing for w in writers), missing), total)
    return 0


def check_ray_write(args: argparse.Namespace, kind: str) -> None:
    """``--engine ray``: Ray installed, and an input it reads in blocks (before anything loads)."""
    if kind == "npz":
        raise RecordError(
            f"--engine ray reads CSV, JSON Lines and Parquet files; {args.input} is an NPZ archive, which is "
            "read whole: leave --engine out"
        )
    if not ray_installed():
        raise RecordError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}")


def _report_missing(spec: FeatureSpec, missing: Counter, total: int) -> None:
    """How many values of each feature were missing (left out of the records), and what reads them."""
    lines = []
    for f in spec.all():
        n = missing.get(f.name, 0)
        if n:
            how = f"missing.fill: {f.missing.fill}" if f.missing else "default" if f.default is not None else "empty"
            lines.append((f.name, f"{n} of {total} ({n / total:.1%})", how))
    if lines:
        print("missing values, left out of the records:")
        widths = [max(len(line[i]) for line in lines) for i in range(2)]
        for name, count, how in lines:
            print(f"  {name:<{widths[0]}}  {count:<{widths[1]}}  {how}")


WRITE_EPILOG = """\
inputs:
  CSV         a header row names the features; a vector cell holds values separated by
              spaces or commas ("0.1 0.2 0.3") or a JSON list; an empty cell is missing
              (the spec's default applies). A row is named by its line in the file,
              counted from 1 as an editor numbers them (the header is line 1).
  JSON Lines  one object per line keyed by feature name; null is missing. Lines are
              counted from 1.
  Parquet     one column per feature: numbers, strings, binary, or lists for features
              with a shape; null is missing. A column whose type contradicts its
              feature is refused before anything is written. Rows are counted from 0.
  NPZ         one array per feature (np.savez), the first axis counting records,
              counted from 0.
  For png/jpeg features a CSV or JSON Lines field is an image file path, relative to
  the input file's directory; the file's bytes are stored.

A missing value (an empty cell, null, NaN) is left out of the record when the spec
says what it becomes (`missing:` or `default:`); the command counts them per feature.
A bad row stops the command and nothing is written, unless --skip-bad-rows.

Large files: CSV, JSON Lines and Parquet files are read in blocks (--block-size;
Parquet 65,536 rows at a time), validated and encoded column-wise by --workers processes
at once, and appended to the shards in file order: memory stays bounded by the block
size, and the shards are the same for any --workers. --engine ray runs the blocks as
Ray Data tasks on a Ray cluster (the input path must be readable by its nodes).

example: one CSV into train, eval and test records for factory-train
  factory write --features conf/features/x.yaml --input x.csv --output data/x \\
      --split train=0.8,eval=0.1,test=0.1
"""
