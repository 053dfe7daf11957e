"""Records to write, read from CSV, JSON Lines and NPZ files: ``open_source``.

Each reader turns its input into records (dicts of feature name -> value) that
``RecordWriter`` then validates and encodes. CSV and JSON Lines values are
converted feature by feature as ``factory.features.conversion`` describes;
NPZ archives hold one array per feature, keyed by feature name, whose first
axis counts the records; they are written as whole columns.

Where a problem is, messages say it the same way for each format:

- CSV: ``line N``, the line of the file where the row starts, counted from 1
  as an editor numbers them: the header is line 1, and blank lines count.
- JSON Lines: ``line N``, the physical line, counted from 1.
- NPZ: ``record N``, the index along the first axis, counted from 0.

A value that cannot be converted makes a bad row (``Row.error``), which the
caller may report or skip. Problems with the file as a whole (unreadable, an
unknown column, a missing required column, arrays of unequal length) raise
``RecordError`` at once. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TextIO

import numpy as np

from factory.errors import RecordError
from factory.features.conversion import BadValue, FieldConverter
from factory.features.spec import FeatureSpec
from factory.validation import did_you_mean

FORMATS = ("csv", "jsonl", "parquet", "npz")
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
}


def input_format(path: str | Path, format: str | None = None) -> str:
    """``format`` if given, else the format named by the file extension (.csv, .jsonl/.ndjson/.json, .npz)."""
    if format is not None:
        if format not in FORMATS:
            raise RecordError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise RecordError(
            f"{path}: cannot tell the input format from the extension {suffix or '(none)'!r}; "
            f"name the file .csv, .jsonl, .parquet or .npz, or pass --format {'|'.join(FORMATS)}"
        )
    return _EXTENSIONS[suffix]


def open_source(
    path: str | Path, spec: FeatureSpec, format: str | None = None, ignore_unknown: bool = False
) -> CsvSource | JsonlSource | NpzSource:
    """The reader for ``path``; use it as a context manager.

    ``format`` defaults to the one named by the extension. ``ignore_unknown``
    (default False) drops columns/keys the spec does not declare; otherwise the
    first one is an error naming it.
    """
    kind = input_format(path, format)
    if kind == "parquet":
        raise RecordError(
            f"{path}: Parquet input is read by `factory write`; give this command CSV, JSON Lines or NPZ, "
            "or the records `factory write` wrote"
        )
    cls = {"csv": CsvSource, "jsonl": JsonlSource, "npz": NpzSource}[kind]
    return cls(path, spec, ignore_unknown=ignore_unknown)


@dataclass(frozen=True)
class Row:
    """One row of the input: a record to write, or the reason it cannot be one.

    ``where`` locates the row in the input (``row 3``, ``line 7``, ``record 0``).
    ``error`` is None for a good row; otherwise it names the feature at fault
    (``feature 'label': 'abc' is not a number ...``) and ``record`` is None.
    """

    where: str
    record: dict[str, Any] | None
    error: str | None = None


def sources_of(spec: FeatureSpec) -> dict[str, str]:
    """``{column, key or array name: feature name}``: a feature reads its ``column`` (default: its name)."""
    return {f.source: f.name for f in spec.all()}


def _unknown_names(path: Path, names: Sequence[str], spec: FeatureSpec, what: str, where: str = "") -> RecordError:
    declared = list(sources_of(spec))
    name = names[0]
    more = f" (and {len(names) - 1} more: {', '.join(names[1:])})" if len(names) > 1 else ""
    mapped = next((f for f in spec.all() if f.name == name and f.column), None)
    if mapped is not None:  # the feature's name, but the spec maps it to another column
        more += f" (the feature '{name}' reads the {what} '{mapped.column}', its `column:`)"
    return RecordError(
        f"{path}{' ' + where if where else ''}: unknown {what} '{name}'{did_you_mean(name, declared)}{more}; "
        f"the spec declares {', '.join(declared)}. Rename it to a declared feature, "
        f"or pass --ignore-unknown to drop {what}s the spec does not declare"
    )


def check_columns(path: Path, names: Sequence[str], spec: FeatureSpec, ignore_unknown: bool, what: str) -> list[str]:
    """The declared names among ``names`` (columns a feature reads: its ``column``, default its name);
    unknown ones are an error unless ignored, as are absent required features."""
    declared = sources_of(spec)
    unknown = [n for n in names if n not in declared]
    if unknown and not ignore_unknown:
        raise _unknown_names(path, unknown, spec, what)
    for f in spec.all():
        if f.column and f.column not in names:  # named explicitly: a typo must not read as "all missing"
            key = f"{'labels' if f.role == 'label' else 'features'}.{f.name}.column"
            raise RecordError(
                f"{path}: {key}: the file has no {what} '{f.column}'{did_you_mean(f.column, names)}; "
                f"its {what}s are {', '.join(names)}"
            )
        if f.required and f.source not in names:
            raise RecordError(
                f"{path}: no {what} for the required feature '{f.name}' ({f.describe()}); "
                f"add it, map another {what} to it with `column:`, or give the feature `missing: {{fill: ...}}` "
                "in the feature spec"
            )
    return [n for n in names if n in declared]


class _Source:
    format = ""

    def __init__(self, path: str | Path, spec: FeatureSpec, ignore_unknown: bool = False):
        self.path = Path(path)
        self.spec = spec
        self.ignore_unknown = ignore_unknown


class _TextSource(_Source):
    """Shared by the CSV and JSON Lines readers: the open file and one converter per feature."""

    def __init__(self, path: str | Path, spec: FeatureSpec, ignore_unknown: bool = False):
        super().__init__(path, spec, ignore_unknown)
        base_dir = self.path.resolve().parent
        self.fields = {f.name: FieldConverter(f, base_dir) for f in spec.all()}
        self.sources = sources_of(spec)
        self._file: TextIO | None = None

    def _open(self) -> TextIO:
        try:
            # utf-8-sig: spreadsheet programs start their CSV files with a byte-order mark.
            return open(self.path, newline="" if self.format == "csv" else None, encoding="utf-8-sig")
        except FileNotFoundError:
            raise RecordError(f"input file not found: {self.path}") from None
        except OSError as err:
            raise RecordError(f"cannot read {self.path}: {err.strerror or err}") from None

    def __enter__(self) -> Self:
        self._file = self._open()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _lines(self) -> Iterator[str]:
        if self._file is None:
            raise RuntimeError("use the source as a context manager: `with open_source(...) as source:`")
        try:
            yield from self._file
        except UnicodeDecodeError as err:
            raise RecordError(f"{self.path}: not UTF-8 text ({err.reason}); save it with UTF-8 encoding") from None


class CsvSource(_TextSource):
    """Rows of a CSV file with a header row naming the features; iterate for ``Row``s."""

    format = "csv"

    def __enter__(self) -> CsvSource:
        super().__enter__()
        try:
            self._reader = csv.reader(self._lines())
            header = next(self._reader, None)
            if header is None:
                raise RecordError(f"{self.path}: the file is empty; the first row must name the columns")
            header = [h.strip() for h in header]
            for i, name in enumerate(header):
                if not name:
                    raise RecordError(f"{self.path}: column {i + 1} of the header has no name")
                if name in header[:i]:
                    raise RecordError(f"{self.path}: the header names column '{name}' twice")
            kept = set(check_columns(self.path, header, self.spec, self.ignore_unknown, "column"))
            self.header = header
            self.header_lines = self._reader.line_num  # lines the header takes (a quoted name may span lines)
            sources = sources_of(self.spec)
            self.columns = [(i, self.fields[sources[name]]) for i, name in enumerate(header) if name in kept]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __iter__(self) -> Iterator[Row]:
        yield from csv_rows(self._reader, self.columns, len(self.header), self.path)


def csv_rows(
    reader: Any, columns: Sequence[tuple[int, FieldConverter]], width: int, path: Path, skipped: int = 0
) -> Iterator[Row]:
    """The ``Row``s of a ``csv.reader`` past the header; ``columns``: (cell index, converter) of the
    declared columns, ``width`` the header's; ``skipped``: lines of the file before the reader's text."""
    while True:
        # A row may span lines (a quoted cell with line breaks): it is named by its first line.
        first = reader.line_num + 1 + skipped
        try:
            cells = next(reader, None)
        except csv.Error as err:
            raise RecordError(f"{path} line {reader.line_num + skipped}: not valid CSV ({err})") from None
        if cells is None:
            return
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        where = f"line {first}"
        if len(cells) != width:
            yield Row(where, None, f"has {len(cells)} cells but the header has {width} columns")
            continue
        record: dict[str, Any] = {}
        try:
            for i, field in columns:
                if not field.is_missing(cells[i]):  # missing: the writer applies the default or reports it
                    record[field.name] = field.from_text(cells[i])
        except BadValue as bad:
            yield Row(where, None, str(bad))
            continue
        yield Row(where, record)


class JsonlSource(_TextSource):
    """One JSON object per line, keyed by feature name; iterate for ``Row``s. Blank lines are skipped."""

    format = "jsonl"

    def __iter__(self) -> Iterator[Row]:
        yield from self.rows(self._lines())

    def rows(self, lines: Iterable[str], first: int = 1) -> Iterator[Row]:
        """The ``Row``s of ``lines``, the first of them line ``first`` of the file."""
        for number, line in enumerate(lines, first):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                obj = json.loads(line.rstrip("\r\n"))  # so that an error's column is on this line
            except json.JSONDecodeError as err:
                yield Row(
                    where,
                    None,
                    f"not valid JSON ({err.msg} at column {err.colno}); each line must hold one JSON object",
                )
                continue
            if not isinstance(obj, Mapping):
                yield Row(where, None, f"expected a JSON object of feature name to value, got {type(obj).__name__}")
                continue
            unknown = [k for k in obj if k not in self.sources]
            if unknown and not self.ignore_unknown:
                raise _unknown_names(self.path, unknown, self.spec, "key", where)
            record: dict[str, Any] = {}
            try:
                for key, value in obj.items():
                    field = self.fields.get(self.sources.get(key, ""))
                    if field is not None and value is not None:
                        record[field.name] = field.from_json(value)
            except BadValue as bad:
                yield Row(where, None, str(bad))
                continue
            yield Row(where, record)


class NpzSource(_Source):
    """Arrays of a NumPy ``.npz`` archive keyed by feature name, the first axis counting records.

    After entering, ``columns`` holds the declared arrays (all loaded) and
    ``rows`` the record count; ``record(i)`` is one record for row-by-row writing.
    """

    format = "npz"

    def __init__(self, path: str | Path, spec: FeatureSpec, ignore_unknown: bool = False):
        super().__init__(path, spec, ignore_unknown)
        self.columns: dict[str, np.ndarray] = {}
        self.rows = 0

    def __enter__(self) -> NpzSource:
        try:
            archive = np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise RecordError(f"input file not found: {self.path}") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise RecordError(f"{self.path}: not a NumPy .npz archive ({err})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise RecordError(
                f"{self.path}: holds a single array, not an .npz archive of arrays keyed by feature name; save it with np.savez(path, name=array, ...)"
            )
        with archive:
            keep = check_columns(self.path, list(archive.files), self.spec, self.ignore_unknown, "array")
            sources = sources_of(self.spec)
            for source in keep:
                name = sources[source]
                try:
                    arr = archive[source]
                except ValueError as err:
                    raise RecordError(
                        f"{self.path}: array '{source}' cannot be read ({err}); store strings as fixed-width "
                        "str or bytes arrays (np.array([...], dtype=str)), not object arrays"
                    ) from None
                if arr.ndim == 0:
                    raise RecordError(
                        f"{self.path}: array '{source}' is a scalar; its first axis must count the records"
                    )
                self.columns[name] = arr
        lengths = {name: len(arr) for name, arr in self.columns.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"'{k}': {n}" for k, n in lengths.items())
            raise RecordError(
                f"{self.path}: the arrays have different numbers of records ({detail}); the first axis must count the records"
            )
        self.rows = next(iter(lengths.values()), 0)
        return self

    def __exit__(self, *exc) -> None:
        self.columns = {}

    @staticmethod
    def where(index: int) -> str:
        return f"record {index}"

    def record(self, index: int) -> dict[str, Any]:
        return {name: arr[index] for name, arr in self.columns.items()}
