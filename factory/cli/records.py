"""``factory write``: records from CSV, JSON Lines or NPZ files."""

from __future__ import annotations

import argparse
import re
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


def _write_rows(source: CsvSource | JsonlSource, writer: RecordWriter, bad: BadRows, batch: int = 4096) -> None:
    """Rows of a CSV or JSON Lines source, written in batches (per-record encoding costs ~4x more)."""
    pending: list[Row] = []
    for row in source:
        if row.record:
            pending.append(row)
            if len(pending) < batch:
                continue
        # Rows before this one go first, so that bad rows are met in file order.
        if pending:
            _write_batch(pending, writer, bad)
            pending = []
        if row.error is not None:
            bad.add(row.where, row.error)
        elif not row.record:  # no declared value at all: the writer names the first required feature
            try:
                writer.write(row.record)
            except RecordError as err:
                bad.add(row.where, _without_index(str(err)))
    if pending:
        _write_batch(pending, writer, bad)


def _write_columns(source: NpzSource, writer: RecordWriter, bad: BadRows, chunk: int = 65536) -> None:
    """Whole columns through the writer's fast path; a chunk with a bad record is redone row by row.

    The column path validates a chunk before writing any of it; the row-by-row
    pass then writes the good records, and names (or skips) each bad one by its
    index in the archive.
    """
    for lo in range(0, source.rows, chunk):
        hi = min(lo + chunk, source.rows)
        before = writer.count
        try:
            writer.write_many({name: arr[lo:hi] for name, arr in source.columns.items()})
            continue
        except RecordError:
            pass  # the records themselves are the reference: redo them one by one
        for i in range(lo + writer.count - before, hi):
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
    bad = BadRows(args.input, args.skip_bad_rows)
    with open_source(args.input, spec, format=args.format, ignore_unknown=args.ignore_unknown) as source:
        # The source checked its columns first: a wrong file fails before TensorFlow loads.
        try:
            with spec.writer(
                args.output, shards=args.shards, compression=compression, overwrite=args.overwrite
            ) as writer:
                if source.format == "npz":
                    _write_columns(source, writer, bad)
                else:
                    _write_rows(source, writer, bad)
                if writer.count == 0:
                    why = f"all {bad.count} rows were skipped as bad" if bad.count else "the input has no rows"
                    raise RecordError(
                        f"{args.input}: no records to write ({why}); existing files are left as they were"
                    )
        finally:
            bad.report()
    rows = "row" if bad.count == 1 else "rows"
    records = "record" if writer.count == 1 else "records"
    print(f"wrote {writer.count} {records} ({bad.count} bad {rows} skipped) to {_shard_summary(writer.paths)}")
    return 0


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

A bad row stops the command and nothing is written, unless --skip-bad-rows.
"""
