"""Tables read in blocks: CSV, JSON Lines and Parquet files cut into pieces that are read on their own.

``plan`` checks a file as a whole (its header or schema against the spec: an unknown
column, a missing required one, a Parquet column whose type contradicts its feature)
and cuts it into ``Block``s; ``BlockReader.columns`` reads one block with pyarrow into
the columns the record encoder takes, and ``BlockReader.rows`` reads the same block
row by row in Python (``factory.features.sources``), the reference that names a bad row
by its place in the file. A block carries its place in the file, so any process can
read it, in any order, with nothing but the plan:

- CSV and JSON Lines: a byte range that starts and ends at a line boundary (outside
  quotes: a quoted CSV cell may hold line breaks) and the number of its first line.
  Rows are named ``line N`` as an editor numbers them, as the row-by-row readers do.
- Parquet: ``BATCH_ROWS`` rows read already (``Plan.batches``: the process that plans
  reads them and hands them over), or a row group that a process reads itself
  (``Plan.blocks``: a Ray task on another machine); rows are named ``row N``, counted
  from 0 over the file.

Why pyarrow: it reads CSV, JSON Lines and Parquet column-wise in C++ into buffers numpy
uses without a copy, streams a file piece by piece, and is the reader of the Arrow
ecosystem (pandas, Spark, DuckDB, Ray Data) that a data lake's files are written for.
The row-by-row reader remains the reference: whatever pyarrow reads differently from it
(a cell it cannot convert, a row of the wrong width, a number with spaces around it)
sends the block to ``rows`` instead, so every check and message stays the same.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import RecordError
from factory.features.conversion import BadValue, FieldConverter
from factory.features.feature import Feature
from factory.features.sources import CsvSource, JsonlSource, Row, check_columns, csv_rows, input_format, sources_of
from factory.features.spec import FeatureSpec

# CSV and JSON Lines blocks hold about this many bytes of the file (the last one fewer).
BLOCK_BYTES = 8 << 20
# A Parquet row group is read this many rows at a time.
BATCH_ROWS = 65536
TABLE_FORMATS = ("csv", "jsonl", "parquet")


@dataclass(frozen=True)
class Block:
    """One piece of a file: ``offset``/``length`` bytes starting at line ``first`` (CSV, JSON Lines),
    or row group ``group`` whose first row is row ``first`` of the file (Parquet), or ``rows`` read
    from it already, row ``first`` the first of them."""

    index: int
    first: int
    offset: int = 0
    length: int = 0
    group: int = -1
    rows: Any = None  # Parquet rows read already (a pyarrow RecordBatch), for a worker to encode


@dataclass(frozen=True)
class Plan:
    """A checked file and how to cut it into blocks: what a process needs to read any of them.

    ``stream``: the input is no regular file (a named pipe, standard input), read once from
    start to end by the row-by-row reader (``stream_rows``) instead of in blocks.
    """

    path: Path
    format: str
    spec: FeatureSpec
    ignore_unknown: bool
    header: tuple[str, ...] = ()  # CSV: every column, in file order
    columns: dict[str, str] = field(default_factory=dict)  # the declared ones: column -> feature name
    skip_lines: int = 0  # CSV: the lines of the header
    block_bytes: int = BLOCK_BYTES
    groups: tuple[int, ...] = ()  # Parquet: the rows of each row group
    stream: bool = False

    def blocks(self) -> Iterator[Block]:
        """The blocks, in file order (a text file is cut as it is read: the first block is ready at once)."""
        if self.stream:
            raise RecordError(f"{self.path}: not a regular file; it is read row by row (stream_rows)")
        if self.format == "parquet":
            first = 0
            for group, rows in enumerate(self.groups):
                yield Block(group, first, group=group)
                first += rows
            return
        yield from _text_blocks(self.path, self.skip_lines, self.block_bytes, quotes=self.format == "csv")

    def batches(self) -> Iterator[Block]:
        """Parquet's rows as blocks of ``BATCH_ROWS``, read here (finer than row groups: work for every worker)."""
        first = 0
        for index, batch in enumerate(open_parquet(self.path).iter_batches(BATCH_ROWS, columns=list(self.columns))):
            yield Block(index, first, rows=batch)
            first += batch.num_rows

    def single_block(self) -> bool:
        """Whether the input is read as one block (not worth starting processes for)."""
        if self.format == "parquet":
            return sum(self.groups) <= BATCH_ROWS
        return self.stream or self.path.stat().st_size <= self.block_bytes

    def stream_rows(self) -> Iterator[Row]:
        """Every ``Row`` of a CSV or JSON Lines input, read once from start to end (a stream)."""
        source = CsvSource if self.format == "csv" else JsonlSource
        with source(self.path, self.spec, ignore_unknown=self.ignore_unknown) as rows:
            yield from rows


def plan(
    path: str | Path, spec: FeatureSpec, format: str | None = None, ignore_unknown: bool = False, block_bytes: int = 0
) -> Plan:
    """Check ``path`` against ``spec`` as a whole and cut it into blocks (``RecordError`` if it cannot be read)."""
    path = Path(path)
    kind = input_format(path, format)
    if kind not in TABLE_FORMATS:
        raise RecordError(f"{path}: {kind} files are not read in blocks")
    if kind == "parquet":
        return _parquet_plan(path, spec, ignore_unknown)
    block_bytes = block_bytes or BLOCK_BYTES
    if path.exists() and not path.is_file():  # a named pipe: its rows can be read only once, in order
        return Plan(path, kind, spec, ignore_unknown, block_bytes=block_bytes, stream=True)
    if kind == "csv":
        with CsvSource(path, spec, ignore_unknown=ignore_unknown) as source:  # checks the header
            header, skip_lines = tuple(source.header), source.header_lines
            columns = {header[i]: converter.name for i, converter in source.columns}
        return Plan(path, kind, spec, ignore_unknown, header, columns, skip_lines, block_bytes)
    with JsonlSource(path, spec, ignore_unknown=ignore_unknown):  # can it be opened?
        pass
    return Plan(path, kind, spec, ignore_unknown, block_bytes=block_bytes)


def _text_blocks(path: Path, skip_lines: int, block_bytes: int, quotes: bool) -> Iterator[Block]:
    """Byte ranges of about ``block_bytes`` after the first ``skip_lines`` lines, each ending with a line
    break outside quotes (CSV's quotes come in pairs, a doubled one included, so a line break outside
    them follows an even number of them since the start of a block)."""
    with open(path, "rb") as f:
        head = f.read(3)
        offset = 3 if head == b"\xef\xbb\xbf" else 0  # the byte-order mark spreadsheet programs write
        f.seek(offset)
        for _ in range(skip_lines):
            offset += len(f.readline())
        line = skip_lines + 1
        index = 0
        size = block_bytes
        while True:
            f.seek(offset)
            data = f.read(size)
            if not data:
                return
            end = len(data) if len(data) < size else _cut(data, quotes)
            if end is None:  # no line break outside quotes in the whole block: take a larger one
                size *= 2
                continue
            yield Block(index, line, offset, end)
            line += data.count(b"\n", 0, end)
            offset += end
            index += 1
            size = block_bytes


def _cut(data: bytes, quotes: bool) -> int | None:
    """Where a block of ``data`` may end: just after its last line break outside quotes (None if none)."""
    end = data.rfind(b"\n")
    if not quotes or b'"' not in data:
        return end + 1 if end >= 0 else None
    for _ in range(64):
        if end < 0:
            return None
        if data.count(b'"', 0, end) % 2 == 0:
            return end + 1
        end = data.rfind(b"\n", 0, end)
    return None


# -- Parquet -----------------------------------------------------------------------------------


def open_parquet(path: Path) -> Any:
    import pyarrow.parquet as pq  # deferred: pyarrow costs 0.2 s to import

    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise RecordError(f"input file not found: {path}") from None
    except OSError as err:
        raise RecordError(f"cannot read {path}: {err.strerror or err}") from None
    except Exception as err:  # pyarrow's ArrowInvalid and kin: not a Parquet file
        raise RecordError(
            f"{path}: not a Parquet file ({_first_line(err)}); pass --format csv or jsonl if it is text"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _parquet_plan(path: Path, spec: FeatureSpec, ignore_unknown: bool) -> Plan:
    if path.exists() and not path.is_file():
        raise RecordError(f"{path}: not a regular file; Parquet is read from a file (its footer comes last)")
    pf = open_parquet(path)
    schema = pf.schema_arrow
    names = list(schema.names)
    keep = check_columns(path, names, spec, ignore_unknown, "column")
    sources = sources_of(spec)
    features = {f.name: f for f in spec.all()}
    for column in keep:
        problem = _type_problem(features[sources[column]], schema.field(column).type)
        if problem:
            raise RecordError(f"{path}: column '{column}' {problem}")
    groups = tuple(pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups))
    return Plan(path, "parquet", spec, ignore_unknown, columns={c: sources[c] for c in keep}, groups=groups)


def _type_problem(f: Feature, arrow_type: Any) -> str | None:
    """Why a Parquet column of ``arrow_type`` cannot hold ``f``'s values (None if it can)."""
    import pyarrow.types as pt  # deferred: pyarrow costs 0.2 s to import

    inner, depth = arrow_type, 0
    while pt.is_list(inner) or pt.is_large_list(inner) or pt.is_fixed_size_list(inner):
        inner, depth = inner.value_type, depth + 1
    if pt.is_dictionary(inner):
        inner = inner.value_type
    if pt.is_null(inner):
        return None  # every value missing
    if f.encoding:
        ok = pt.is_binary(inner) or pt.is_large_binary(inner) or pt.is_string(inner) or pt.is_large_string(inner)
        want = "encoded image bytes (binary) or image file paths (string)"
    elif f.dtype == "string":
        ok = pt.is_string(inner) or pt.is_large_string(inner) or pt.is_binary(inner) or pt.is_large_binary(inner)
        want = "strings"
    elif f.dtype == "int64":
        ok = pt.is_integer(inner) or pt.is_boolean(inner) or pt.is_floating(inner)
        want = "integers"
    else:
        ok = pt.is_integer(inner) or pt.is_floating(inner) or pt.is_boolean(inner) or pt.is_decimal(inner)
        want = "numbers"
    what = f"holds {arrow_type}, but the feature '{f.name}' is {f.describe()}"
    if not ok:
        cast = {"float32": "float", "int64": "int64", "string": "string"}[f.dtype]
        return f"{what}: {want} expected; cast the column (e.g. df['{f.source}'].astype('{cast}')) or change the spec"
    scalar = f.shape == () or (not f.variable and math.prod(f.shape) == 1)
    if depth and f.shape == ():
        return f"{what}: one value per row expected, not a list; declare its shape or store one value per row"
    if not depth and not scalar and not f.encoding:
        return f"{what}: a list per row expected ({f.size or 'any number of'} values); store the values as a list"
    return None


# -- reading a block ---------------------------------------------------------------------------


class BlockReader:
    """Reads the blocks of one plan: ``columns`` (pyarrow, column-wise) or ``rows`` (Python, row by row)."""

    def __init__(self, plan: Plan, threads: bool = True):
        self.plan = plan
        self.threads = threads
        self.features = {f.name: f for f in plan.spec.all()}
        base_dir = plan.path.resolve().parent
        self.converters = {f.name: FieldConverter(f, base_dir) for f in plan.spec.all()}
        self._parquet = None

    # -- row by row: the reference ------------------------------------------------------------

    def rows(self, block: Block) -> Iterator[Row]:
        """The block's ``Row``s, read as ``factory write`` reads a file row by row."""
        plan = self.plan
        if plan.format == "parquet":
            for columns, first in self._parquet_batches(block):
                yield from self._table_rows(columns, first)
            return
        text = self._text(block)
        if plan.format == "csv":
            reader = csv.reader(io.StringIO(text, newline=""))
            columns = [
                (i, self.converters[plan.columns[name]]) for i, name in enumerate(plan.header) if name in plan.columns
            ]
            yield from csv_rows(reader, columns, len(plan.header), plan.path, skipped=block.first - 1)
        else:
            source = JsonlSource(plan.path, plan.spec, ignore_unknown=plan.ignore_unknown)
            yield from source.rows(io.StringIO(text), first=block.first)

    def _text(self, block: Block) -> str:
        with open(self.plan.path, "rb") as f:
            data = os.pread(f.fileno(), block.length, block.offset)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = block.first + data.count(b"\n", 0, err.start)
            raise RecordError(
                f"{self.plan.path} line {line}: not UTF-8 text ({err.reason}); save it with UTF-8 encoding"
            ) from None

    def _table_rows(self, table: Any, first: int) -> Iterator[Row]:
        """Rows of a Parquet batch: each value converted as a JSON Lines value is."""
        names = [(column, self.plan.columns[column]) for column in table.column_names]
        values = [table.column(column).to_pylist() for column, _ in names]
        for i in range(table.num_rows):
            record: dict[str, Any] = {}
            try:
                for (_, name), column in zip(names, values, strict=True):
                    value = column[i]
                    if value is not None and not _nan(value):
                        record[name] = self.converters[name].from_json(value)
            except BadValue as bad:
                yield Row(f"row {first + i}", None, str(bad))
                continue
            yield Row(f"row {first + i}", record)

    # -- column-wise -------------------------------------------------------------------------------

    def columns(self, block: Block) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        """The block as ``(columns, positions)`` pieces: the columns the encoder takes (feature name ->
        values) and each row's place in the file (its line, or its row). Raises (pyarrow's errors,
        ``BadValue``, ``RecordError``) where the row-by-row reader may see it otherwise."""
        if self.plan.format == "parquet":
            for table, first in self._parquet_batches(block):
                yield self._convert(table), np.arange(first, first + table.num_rows, dtype=np.int64)
            return
        with open(self.plan.path, "rb") as f:
            data = os.pread(f.fileno(), block.length, block.offset)
        table = self._csv(data) if self.plan.format == "csv" else self._jsonl(data)
        lines = data.count(b"\n") + (not data.endswith(b"\n"))
        if table.num_rows != lines:  # blank lines or cells with line breaks: lines and rows differ
            raise _Misaligned
        yield self._convert(table), np.arange(block.first, block.first + lines, dtype=np.int64)

    def _parquet_batches(self, block: Block) -> Iterator[tuple[Any, int]]:
        if block.rows is not None:
            yield block.rows, block.first
            return
        if self._parquet is None:
            self._parquet = open_parquet(self.plan.path)
        first = block.first
        batches = self._parquet.iter_batches(
            batch_size=BATCH_ROWS, row_groups=[block.group], columns=list(self.plan.columns), use_threads=self.threads
        )
        for batch in batches:
            yield batch, first
            first += batch.num_rows

    def _csv(self, data: bytes) -> Any:
        import pyarrow as pa  # deferred: pyarrow costs 0.2 s to import
        import pyarrow.csv as pcsv  # deferred: as above

        types = {}
        for column, name in self.plan.columns.items():
            f = self.features[name]
            fast = f.shape == () and not f.encoding
            types[column] = (
                pa.float64()
                if fast and f.dtype == "float32"
                else pa.int64()
                if fast and f.dtype == "int64"
                else pa.string()
            )
        return pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(column_names=list(self.plan.header), use_threads=self.threads),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                include_columns=list(self.plan.columns),
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    def _jsonl(self, data: bytes) -> Any:
        import pyarrow as pa  # deferred: pyarrow costs 0.2 s to import
        import pyarrow.json as pjson  # deferred: as above

        fields = []
        for f in self.plan.spec.all():
            if f.shape != () or f.encoding:
                raise _Misaligned  # lists and image paths: the row-by-row reader converts them
            fields.append(
                pa.field(
                    f.source,
                    pa.string() if f.dtype == "string" else pa.float64() if f.dtype == "float32" else pa.int64(),
                )
            )
        return pjson.read_json(
            pa.py_buffer(data),
            read_options=pjson.ReadOptions(use_threads=self.threads),
            parse_options=pjson.ParseOptions(
                explicit_schema=pa.schema(fields),
                unexpected_field_behavior="ignore" if self.plan.ignore_unknown else "error",
            ),
        )

    def _convert(self, table: Any) -> dict[str, Any]:
        out = {}
        for column in table.column_names:
            name = self.plan.columns.get(column)
            if name is None:
                continue
            out[name] = self._values(self.features[name], table.column(column))
        return out

    def _values(self, f: Feature, column: Any) -> Any:
        """One column as the encoder takes it: numbers as a numpy array (missing: NaN), strings as an object
        array (missing: None); lists and images converted value by value."""
        import pyarrow as pa  # deferred: pyarrow costs 0.2 s to import
        import pyarrow.types as pt  # deferred: as above

        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        kind = column.type
        if pt.is_dictionary(kind):
            column = column.dictionary_decode()
            kind = column.type
        if f.encoding or (kind != pa.null() and not _flat(kind) and not _list(kind)):
            return self._each(f, column)
        if f.shape == () or (not f.variable and not _list(kind)):
            if f.dtype == "string":
                if f.shape == () and not pt.is_null(kind):
                    return column  # string and binary arrays: the encoder reads their buffers
                return self._each(f, column)
            if pt.is_string(kind) or pt.is_large_string(kind):
                return self._each(f, column)
            if pt.is_boolean(kind) or pt.is_decimal(kind) or pt.is_null(kind):
                column = column.cast(pa.float64())
            return column.to_numpy(zero_copy_only=False)
        if f.variable or f.dtype == "string" or column.null_count:
            return self._each(f, column)
        flat = column.flatten()
        while _list(flat.type):
            flat = flat.flatten()
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        if flat.null_count or (lengths != f.size).any():
            return self._each(f, column)
        return flat.to_numpy(zero_copy_only=False).reshape(len(column), *f.shape)

    def _each(self, f: Feature, column: Any) -> np.ndarray:
        """Value by value, as a JSON Lines reader converts them (CSV: as its text cells are)."""
        convert = self.converters[f.name]
        text = self.plan.format == "csv"
        out = np.empty(len(column), dtype=object)
        for i, value in enumerate(column.to_pylist()):
            if value is None or _nan(value) or (text and convert.is_missing(value)):
                continue
            out[i] = convert.from_text(value) if text else convert.from_json(value)
        return out


class _Misaligned(Exception):
    """The block's rows are not its lines one for one (or it holds what only the row reader converts)."""


def _nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _flat(kind: Any) -> bool:
    import pyarrow.types as pt  # deferred: pyarrow costs 0.2 s to import

    return (
        pt.is_integer(kind)
        or pt.is_floating(kind)
        or pt.is_boolean(kind)
        or pt.is_decimal(kind)
        or pt.is_string(kind)
        or pt.is_large_string(kind)
        or pt.is_binary(kind)
        or pt.is_large_binary(kind)
        or pt.is_null(kind)
    )


def _list(kind: Any) -> bool:
    import pyarrow.types as pt  # deferred: pyarrow costs 0.2 s to import

    return pt.is_list(kind) or pt.is_large_list(kind) or pt.is_fixed_size_list(kind)


# What a block read column-wise may raise where the row reader would name a row instead.
def column_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa  # deferred: pyarrow costs 0.2 s to import

    return (pa.ArrowException, BadValue, RecordError, _Misaligned, ValueError, TypeError, OverflowError)
