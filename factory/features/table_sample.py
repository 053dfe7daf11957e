"""A data file read for ``factory init``: per column a uniform sample of its present values and
its blank count (``read_table``), from CSV, JSON Lines, Parquet, NPZ or TFRecord files.

The file is read once: every row (up to ``SCAN_ROWS``) counts towards the row count, the blanks
of each column and the label's values; a uniform sample of ``SAMPLE_ROWS`` rows is what
``factory.features.infer`` decides from. No TensorFlow, except to read TFRecord files
(``_read_records`` imports it).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import re
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import RecordError
from factory.features import sources
from factory.features.images import image_size
from factory.features.table_blocks import open_parquet
from factory.validation import did_you_mean

# Rows sampled (uniformly, over every row read) to decide types, cardinalities and lengths.
SAMPLE_ROWS = 10_000
# Rows read at most; the row count, the blanks and the label's values come from all of them.
SCAN_ROWS = 1_000_000
# Record files are named by these suffixes (or given as several files or globs).
RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz", ".tfrecord.zz", ".tfrecord.zlib")
FORMATS = (*sources.FORMATS, "tfrecord")


@dataclass
class Table:
    """What was read: per column its sampled present values and its blank count over all rows read.

    ``rows`` counts the rows read, ``complete`` says whether that is all of them, ``labels``
    counts the label's values over all rows read, ``dtypes`` holds NPZ arrays' numpy dtypes.
    """

    path: str
    format: str
    headers: list[str]
    sample: dict[str, list] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    complete: bool = True
    labels: Counter = field(default_factory=Counter)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)


def input_format(inputs: Sequence[str], format: str | None = None) -> str:
    """``format`` if given, else the one the extension names (record files: ``.tfrecord[.gz]`` or a glob of them)."""
    if format is not None:
        return format
    if len(inputs) > 1 or str(inputs[0]).lower().endswith(RECORD_SUFFIXES):
        return "tfrecord"
    try:
        return sources.input_format(inputs[0])
    except RecordError as err:
        raise RecordError(f"{err} (record files: .tfrecord or .tfrecord.gz, or --format tfrecord)") from None


def read_table(inputs: Sequence[str], format: str, label: str | None, sample_rows: int = SAMPLE_ROWS) -> Table:
    """Read ``inputs`` (one CSV, JSON Lines, Parquet or NPZ file, or record files) into a ``Table``.

    ``RecordError`` (exit 2) for what makes a file unusable: missing, empty, a header only,
    duplicate headers, a row of the wrong width, bad JSON, not UTF-8; and for a ``label``
    that is not a column (did-you-mean) or is blank in some row. Without ``label``, the
    error lists the columns to choose from.
    """
    if format != "tfrecord" and len(inputs) != 1:
        raise RecordError(f"give one {format} file, got {len(inputs)}: {', '.join(inputs)}")
    readers = {
        "csv": _read_csv,
        "jsonl": _read_jsonl,
        "parquet": _read_parquet,
        "npz": _read_npz,
        "tfrecord": _read_records,
    }
    table = readers[format](inputs, label, random.Random(0), sample_rows)
    if table.rows == 0:
        what = {"csv": "a header and no rows", "jsonl": "no objects", "npz": "arrays of length 0"}
        raise RecordError(f"{table.path}: {what.get(format, 'no records')}; there is nothing to learn from")
    blank = table.missing.get(label or "", 0)
    if blank:
        raise RecordError(
            f"{table.path}: the label column '{label}' is blank in {blank} of {table.rows} rows; every row needs "
            "a label: fill them in or drop those rows"
        )
    return table


def _check_label(path: str, headers: Sequence[str], label: str | None, what: str = "column") -> None:
    if label is None:
        raise RecordError(f"{path}: name the label with --label COLUMN; the {what}s are: {', '.join(headers)}")
    if label not in headers:
        raise RecordError(
            f"{path}: no {what} '{label}'{did_you_mean(label, headers)} for --label; the {what}s are: "
            f"{', '.join(headers)}"
        )


class _Reservoir:
    """A uniform sample of ``size`` items from a stream of unknown length (algorithm R)."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.items, self.seen = size, rng, [], 0

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        elif (j := self.rng.randrange(self.seen)) < self.size:
            self.items[j] = item


@contextlib.contextmanager
def _text_lines(path: Path, newline: str | None) -> Iterator[Iterator[str]]:
    try:
        f = open(path, newline=newline, encoding="utf-8-sig")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise RecordError(f"input file not found: {path}") from None
    except OSError as err:
        raise RecordError(f"cannot read {path}: {err.strerror or err}") from None

    def lines() -> Iterator[str]:
        try:
            yield from f
        except UnicodeDecodeError as err:
            raise RecordError(f"{path}: not UTF-8 text ({err.reason}); save it with UTF-8 encoding") from None

    with f:
        yield lines()


def _is_blank(cell: str) -> bool:
    text = cell.strip()
    return not text or text.lower() == "nan"  # pandas writes NaN for a missing number


def _read_csv(inputs: Sequence[str], label: str | None, rng: random.Random, sample_rows: int) -> Table:
    path = Path(inputs[0])
    with _text_lines(path, "") as lines:
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
        except csv.Error as err:
            raise RecordError(f"{path} line 1: not valid CSV ({err})") from None
        if not header:
            raise RecordError(f"{path}: the file is empty; the first row must name the columns")
        header = [h.strip() for h in header]
        for i, name in enumerate(header):
            if not name:
                raise RecordError(f"{path}: column {i + 1} of the header has no name; name it")
            if name in header[:i]:
                raise RecordError(f"{path}: the header names column '{name}' twice; rename one of them")
        _check_label(str(path), header, label)
        table, reservoir, at = Table(str(path), "csv", header), _Reservoir(sample_rows, rng), header.index(label)
        blanks = [0] * len(header)
        while table.rows < SCAN_ROWS:
            first = reader.line_num + 1
            try:
                cells = next(reader, None)
            except csv.Error as err:
                raise RecordError(f"{path} line {reader.line_num}: not valid CSV ({err})") from None
            if cells is None:
                break
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) != len(header):
                raise RecordError(
                    f"{path} line {first}: {len(cells)} cells, but the header names {len(header)} columns; "
                    "fix that row (a cell holding a comma needs quotes)"
                )
            table.rows += 1
            for i, cell in enumerate(cells):
                if _is_blank(cell):
                    blanks[i] += 1
            table.labels[cells[at]] += 1
            reservoir.add(cells)
        table.complete = next(reader, None) is None
    table.missing = dict(zip(header, blanks, strict=True))
    for i, name in enumerate(header):
        table.sample[name] = [row[i] for row in reservoir.items if not _is_blank(row[i])]  # text: typed later
    table.labels = Counter({k: n for k, n in table.labels.items() if not _is_blank(k)})
    return table


_NUMBER_SEPARATORS = re.compile(r"[\s,]+")


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def from_cell(cell: str) -> Any:
    """A CSV cell as ``factory write`` reads it: a number, a list of numbers (JSON, or separated by
    spaces or commas), or the text itself."""
    text = cell.strip()
    if (value := _number(text)) is not None:
        return value
    if text.startswith("["):
        with contextlib.suppress(ValueError):
            return json.loads(text)
    tokens = _NUMBER_SEPARATORS.split(text)
    numbers = [_number(t) for t in tokens] if len(tokens) > 1 else []
    return numbers if numbers and None not in numbers else cell


def _read_jsonl(inputs: Sequence[str], label: str | None, rng: random.Random, sample_rows: int) -> Table:
    path = Path(inputs[0])
    keys: dict[str, int] = {}  # key -> rows holding a value, in first-seen order
    reservoir = _Reservoir(sample_rows, rng)
    table = Table(str(path), "jsonl", [])
    with _text_lines(path, None) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if table.rows >= SCAN_ROWS:
                table.complete = False
                break
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path} line {number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise RecordError(f"{path} line {number}: expected a JSON object, got {type(obj).__name__}")
            table.rows += 1
            for key, value in obj.items():
                keys.setdefault(key, 0)
                if value is not None:
                    keys[key] += 1
            if label in obj and obj[label] is not None:
                value = obj[label]
                table.labels[json.dumps(value) if isinstance(value, list | dict) else value] += 1
            reservoir.add(obj)
    table.headers = list(keys)
    if table.rows:
        _check_label(str(path), table.headers, label, "key")
    table.missing = {key: table.rows - present for key, present in keys.items()}
    for key in keys:
        table.sample[key] = [row[key] for row in reservoir.items if row.get(key) is not None]
    return table


def _read_parquet(inputs: Sequence[str], label: str | None, rng: random.Random, sample_rows: int) -> Table:
    """Typed values, as JSON Lines gives them (``_parquet_value``); the first ``SCAN_ROWS`` rows, read in batches."""
    path = Path(inputs[0])
    parquet = open_parquet(path)
    headers = list(parquet.schema_arrow.names)
    table = Table(str(path), "parquet", headers)
    _check_label(str(path), headers, label)
    reservoir = _Reservoir(sample_rows, rng)
    nulls = dict.fromkeys(headers, 0)
    for batch in parquet.iter_batches(batch_size=65536):
        if table.rows >= SCAN_ROWS:
            table.complete = False
            break
        batch = batch.slice(0, SCAN_ROWS - table.rows)
        columns = []
        for name in headers:
            values = [_parquet_value(v) for v in batch.column(name).to_pylist()]
            nulls[name] += sum(v is None for v in values)
            columns.append(values)
        for row in zip(*columns, strict=True):
            record = dict(zip(headers, row, strict=True))
            value = record[label]
            if value is not None:
                table.labels[json.dumps(value) if isinstance(value, list | dict) else value] += 1
            reservoir.add(record)
        table.rows += batch.num_rows
    table.missing = nulls
    for name in headers:
        table.sample[name] = [row[name] for row in reservoir.items if row[name] is not None]
    return table


def _parquet_value(value: Any) -> Any:
    """A Parquet value as ``factory write`` reads it: NaN is missing (None), true/false 1/0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value != value:
        return None
    return value


def _read_npz(inputs: Sequence[str], label: str | None, rng: random.Random, sample_rows: int) -> Table:
    path = Path(inputs[0])
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RecordError(f"input file not found: {path}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise RecordError(f"{path}: not a NumPy .npz archive ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise RecordError(f"{path}: holds a single array; save the columns with np.savez(path, name=array, ...)")
    with archive:
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError:  # an object array: left out (``_feature`` says why)
                arrays[name] = np.empty((0,), dtype=object)
    table = Table(str(path), "npz", list(arrays))
    if not arrays:
        raise RecordError(f"{path}: the archive holds no arrays")
    _check_label(str(path), table.headers, label, "array")
    lengths = {name: len(a) for name, a in arrays.items() if a.dtype != object and a.ndim}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"'{k}': {n}" for k, n in lengths.items())
        raise RecordError(f"{path}: the arrays have different lengths ({detail}); the first axis must count the rows")
    table.rows = next(iter(lengths.values()), 0)
    pick = sorted(rng.sample(range(table.rows), sample_rows)) if table.rows > sample_rows else slice(None)
    for name, arr in arrays.items():
        table.dtypes[name] = arr.dtype
        absent = np.zeros(len(arr), dtype=bool)
        if arr.dtype.kind == "f":
            absent = np.isnan(arr.reshape(len(arr), -1)).any(axis=1)
        table.missing[name] = int(absent.sum())
        table.sample[name] = [] if arr.dtype == object else arr[pick][~absent[pick]].tolist()
        if name == label and arr.ndim == 1:
            table.labels = Counter(arr[~absent].tolist())
    return table


def _read_records(inputs: Sequence[str], label: str | None, rng: random.Random, sample_rows: int) -> Table:
    """TFRecord files of ``tf.train.Example``; a feature's values are a list, or one value as a scalar."""
    import tensorflow as tf  # defers TensorFlow: only record files need it
    from google.protobuf.message import DecodeError  # defers protobuf, which comes with TensorFlow

    from factory.features import reading  # defers TensorFlow (it imports it)

    files = reading.resolve_files(list(inputs))
    table, reservoir, present = Table(", ".join(inputs), "tfrecord", []), _Reservoir(sample_rows, rng), Counter()
    for _, _, batch in reading.record_batches(files, None, 1024):
        for serialized in batch.numpy():
            if table.rows >= SCAN_ROWS:
                table.complete = False
                break
            try:
                example = tf.train.Example.FromString(serialized)
            except DecodeError as err:
                raise RecordError(f"{table.path}: record {table.rows} is not a tf.train.Example ({err})") from None
            values = {}
            for key, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                items = list(getattr(feature, kind).value) if kind else []
                if items:
                    items = [_text(v) for v in items]
                    values[key] = items[0] if len(items) == 1 else items
                    present[key] += 1
            table.rows += 1
            if label in values:
                value = values[label]
                table.labels[tuple(value) if isinstance(value, list) else value] += 1
            reservoir.add(values)
        if not table.complete:
            break
    table.headers = list(present)
    _check_label(table.path, table.headers, label, "feature")
    table.missing = {key: table.rows - n for key, n in present.items()}
    for key in present:
        table.sample[key] = [row[key] for row in reservoir.items if key in row]
    return table


def _text(value: Any) -> Any:
    """A record's bytes as text when they are UTF-8 and no image; anything else unchanged."""
    if isinstance(value, bytes) and image_size(value) is None:
        with contextlib.suppress(UnicodeDecodeError):
            return value.decode()
    return value
