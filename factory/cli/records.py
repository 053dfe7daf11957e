"""``factory write``: records from CSV, JSON Lines or NPZ files."""

from __future__ import annotations

import argparse
import contextlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from factory.cli.args import add_compression, positive_int
from factory.cli.bad_rows import BadRows
from factory.errors import RecordError
from factory.features.sources import CsvSource, JsonlSource, NpzSource, Row, open_source
from factory.features.spec import FeatureSpec
from factory.features.tfrecord import normalize_compression

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.writer import RecordWriter

# Shard paths listed one by one in the summary; more are shown as a glob.
LISTED_SHARDS = 3
_RECORD_INDEX = re.compile(r"record (\d+): (.*)", re.DOTALL)


# -- factory write -------------------------------------------------------------------------------


def write_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, metavar="SPEC", help="feature spec YAML file")
    parser.add_argument("--input", required=True, metavar="FILE", help="one .csv, .jsonl or .npz file")
    parser.add_argument("--format", choices=("csv", "jsonl", "npz"), help="input format (default: from the extension)")
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


def _without_index(message: str) -> str:
    """The writer's ``record N: ...`` message without its own record count (the input's row is named instead)."""
    match = _RECORD_INDEX.fullmatch(message)
    return match.group(2) if match else message


def _column(values: list) -> Any:
    """One feature's values from a batch of records, in the form the writer's column path takes.

    Equally shaped numeric arrays (or plain numbers) become one array, which the
    writer validates and encodes whole; anything else (missing values, nested
    lists, strings, image bytes) an object array that it takes value by value.
    """
    first = values[0]
    if isinstance(first, np.ndarray):
        if all(isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype.kind in "iuf" for v in values):
            return np.stack(values)
    elif all(type(v) in (int, float) for v in values):
        return np.asarray(values)
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # element by element: numpy would merge equal-length lists
        column[i] = value
    return column


class Split:
    """``--split train=0.8,eval=0.1,test=0.1``: each row goes to one part, drawn with these
    probabilities from ``seed``, row after row (so the same file and seed give the same parts,
    whether bad rows are skipped or not). The parts are written as ``OUTPUT/<part>-*``."""

    def __init__(self, text: str, seed: int):
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
        self.names = list(parts)
        self.bounds = np.cumsum(list(parts.values()))
        self.rng = np.random.default_rng(seed)

    def assign(self, rows: int) -> np.ndarray:
        """The part (an index into ``names``) of each of the next ``rows`` rows."""
        return np.minimum(np.searchsorted(self.bounds, self.rng.random(rows), side="right"), len(self.names) - 1)


_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _write_batch(rows: list[Row], writer: RecordWriter, bad: BadRows) -> None:
    """Good rows through the column path; a batch with a bad record is redone row by row to name (or skip) it."""
    names = {name for row in rows for name in row.record}
    columns = {name: _column([row.record.get(name) for row in rows]) for name in names}
    before = writer.count
    try:
        writer.write_many(columns)
        return
    except RecordError:
        pass  # the records themselves are the reference: redo them one by one
    for row in rows[writer.count - before :]:
        try:
            writer.write(row.record)
        except RecordError as err:
            bad.add(row.where, _without_index(str(err)))


def _write_rows(
    source: CsvSource | JsonlSource, writers: list[RecordWriter], bad: BadRows, split: Split | None, batch: int = 4096
) -> None:
    """Rows of a CSV or JSON Lines source, written in batches (per-record encoding costs ~4x more),
    each to its part's writer (one writer without ``split``)."""
    pending: list[list[Row]] = [[] for _ in writers]
    for row in source:
        part = int(split.assign(1)[0]) if split is not None else 0
        writer = writers[part]
        if row.record:
            pending[part].append(row)
            if len(pending[part]) < batch:
                continue
        # Rows before this one go first, so that bad rows are met in file order.
        for rows, w in zip(pending, writers, strict=True):
            if rows:
                _write_batch(rows, w, bad)
                rows.clear()
        if row.error is not None:
            bad.add(row.where, row.error)
        elif not row.record:  # no declared value at all: the writer names the first required feature
            try:
                writer.write(row.record)
            except RecordError as err:
                bad.add(row.where, _without_index(str(err)))
    for rows, w in zip(pending, writers, strict=True):
        if rows:
            _write_batch(rows, w, bad)


def _write_columns(
    source: NpzSource, writers: list[RecordWriter], bad: BadRows, split: Split | None, chunk: int = 65536
) -> None:
    """Whole columns through the writer's fast path; a chunk with a bad record is redone row by row.

    The column path validates a chunk before writing any of it; the row-by-row
    pass then writes the good records, and names (or skips) each bad one by its
    index in the archive. With ``split`` each part's rows go to its writer.
    """
    parts = split.assign(source.rows) if split is not None else np.zeros(source.rows, dtype=np.int64)
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
                    bad.add(source.where(i), _without_index(str(err)))


def _shard_summary(paths: Sequence[Path]) -> str:
    if len(paths) <= LISTED_SHARDS:
        return ", ".join(str(p) for p in paths)
    head, _, tail = str(paths[0]).rpartition("-00000-of-")
    return f"{head}-*-of-{tail} ({len(paths)} shards)"


def run_write(args: argparse.Namespace) -> int:
    """Validate the spec, open the input, then write; nothing is written unless every kept row is good."""
    spec = FeatureSpec.from_yaml(args.features)
    compression = normalize_compression(args.compression)
    split = Split(args.split, args.seed) if args.split else None
    bad = BadRows(args.input, args.skip_bad_rows)
    with open_source(args.input, spec, format=args.format, ignore_unknown=args.ignore_unknown) as source:
        # The source checked its columns first: a wrong file fails before TensorFlow loads.
        prefixes = [Path(args.output) / name for name in split.names] if split else [Path(args.output)]
        try:
            with contextlib.ExitStack() as stack:
                writers = [
                    stack.enter_context(
                        spec.writer(prefix, shards=args.shards, compression=compression, overwrite=args.overwrite)
                    )
                    for prefix in prefixes
                ]
                if source.format == "npz":
                    _write_columns(source, writers, bad, split)
                else:
                    _write_rows(source, writers, bad, split)
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
    _report_missing(spec, writers, total)
    return 0


def _report_missing(spec: FeatureSpec, writers: list[RecordWriter], total: int) -> None:
    """How many values of each feature were missing (left out of the records), and what reads them."""
    missing = sum((w.missing for w in writers), Counter())
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
  NPZ         one array per feature (np.savez), the first axis counting records,
              counted from 0.
  For png/jpeg features a CSV or JSON Lines field is an image file path, relative to
  the input file's directory; the file's bytes are stored.

A missing value (an empty cell, null, NaN) is left out of the record when the spec
says what it becomes (`missing:` or `default:`); the command counts them per feature.
A bad row stops the command and nothing is written, unless --skip-bad-rows.

example: one CSV into train, eval and test records for factory-train
  factory write --features conf/features/x.yaml --input x.csv --output data/x \\
      --split train=0.8,eval=0.1,test=0.1
"""
