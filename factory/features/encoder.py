"""Validating tf.train.Example encoding: records and whole columns to serialized examples."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec

from factory.errors import RecordError
from factory.features import images, wire
from factory.features.checks import (
    Problem,
    VocabularyCheck,
    describe,
    image_problem,
    numbers_problem,
    shape_problem,
    string_problem,
)
from factory.features.feature import MISSING_VALUE, Feature, shape_str
from factory.validation import did_you_mean


class _Encoder:
    """Validates and encodes the values of one feature."""

    def __init__(self, feature: Feature):
        self.f = feature
        self.kind = feature.storage
        self.header = wire.EntryHeader(feature.name, self.kind)
        self.vocab = (
            VocabularyCheck(feature.vocabulary) if feature.vocabulary is not None and feature.oov_buckets == 0 else None
        )
        # A record may lack the feature: the reader supplies the default, the fill or an empty list.
        self.optional = feature.default is not None or feature.missing is not None or feature.variable
        if feature.default is not None:  # checked like any value, once
            default = np.asarray(feature.default, dtype=object if feature.dtype == "string" else None)
            self._payload(default.reshape(feature.shape), -1)

    def fail(self, index: int, message: str) -> RecordError:
        where = f"record {index}: " if index >= 0 else ""
        return RecordError(f"{where}feature '{self.f.name}': {message}")

    def expected(self) -> str:
        return f"expected {self.f.describe()}"

    def entry(self, value: Any, index: int) -> bytes | None:
        """The map entry of ``value``; None for a missing value (the record lacks the feature)."""
        if value is None:
            if not self.optional:
                raise self.fail(
                    index,
                    f"missing, and it has no default ({self.f.describe()}); add it to the record, or give it "
                    "`missing: {fill: ...}` (or a `default`) in the feature spec",
                )
            return None
        payload = self._payload(value, index)
        if payload is None:
            return None
        if self.kind == "bytes":
            data = wire.bytes_payload(payload)
        elif self.kind == "float":
            data = np.ascontiguousarray(payload, dtype="<f4").tobytes()
        else:
            flat, _ = wire.int64_varints(np.asarray(payload, dtype=np.int64).reshape(1, -1))
            data = flat.tobytes()
        return self.header(len(data)) + data

    # -- per-value validation --------------------------------------------------------------

    def _payload(self, value: Any, index: int):
        f = self.f
        if f.encoding:
            return [self._image(value, index)]
        if f.dtype == "string":
            if f.missing is not None and isinstance(value, str | bytes) and not value:
                return None  # "" is a missing string of a `missing:` feature, as serving_default takes it
            return self._strings(value, index)
        arr = value if isinstance(value, np.ndarray) else None
        if arr is None:
            try:
                arr = np.asarray(value)
            except ValueError:
                raise self.fail(index, f"{self.expected()}, got {describe(value)}") from None
        if self._nan_missing(arr):
            return None
        self._check_numeric(arr, index, arr.shape)
        return arr.reshape(-1)

    def _nan_missing(self, arr: np.ndarray) -> bool:
        """A value all NaN of a numeric feature that may be missing is missing (pandas' missing number);
        so is a value all ``MISSING_VALUE`` (the smallest int64) of an int64 feature with ``missing:``."""
        if not self.optional or self.f.variable or not arr.size:
            return False
        if arr.dtype.kind == "f":
            return bool(np.isnan(arr).all())
        return self.f.missing is not None and arr.dtype.kind == "i" and bool((arr == MISSING_VALUE["int64"]).all())

    def _check_numeric(self, arr: np.ndarray, index: int, shape: tuple, rows: bool = False) -> None:
        """Kind, shape and values of a numeric array: one value (``rows=False``) or a column whose first axis counts records."""
        f = self.f
        if arr.dtype.kind not in "iuf":
            raise self.fail(index, f"{self.expected()}, got {str(arr.dtype) + ' values' if rows else describe(arr)}")
        # A column's shape is checked per record: without its first (record) axis.
        problem = shape_problem(f.shape, shape[1:] if rows else shape, f.describe())
        if problem or (rows and not shape):
            raise self.fail(index, problem or f"{self.expected()}, got shape []")
        # Floats are accepted for integer features when they hold whole numbers (CSV, pandas);
        # the scan runs only for integer features, not over every float32 column.
        found = numbers_problem(arr, f.dtype)
        if found is not None:
            raise self._value_error(found, index, rows)

    def _value_error(self, problem: Problem, index: int, rows: bool) -> RecordError:
        """``problem`` in a value (record ``index``), or in a column (its row names the record)."""
        if rows:
            index, problem = problem.in_row()
        return self.fail(index, str(problem))

    def _strings(self, value: Any, index: int) -> list[bytes]:
        f = self.f
        if isinstance(value, str | bytes):
            flat, shape = [value], ()
        else:
            arr = np.asarray(value, dtype=object)
            flat, shape = arr.reshape(-1).tolist(), arr.shape
        problem = shape_problem(f.shape, shape, f.describe())
        if problem:
            raise self.fail(index, problem)
        out = []
        for i, item in enumerate(flat):
            found = string_problem(item) or (self.vocab.problem(item) if self.vocab is not None else None)
            if found is not None:
                position = tuple(int(d) for d in np.unravel_index(i, shape)) if shape else ()
                raise self.fail(index, str(replace(found, position=position)))
            out.append(item.encode() if isinstance(item, str) else bytes(item))
        return out

    def _image(self, value: Any, index: int) -> bytes:
        f = self.f
        height, width, channels = f.shape
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            problem = image_problem(data, height, width, f.encoding)
            if problem is not None:
                raise self.fail(index, f"{problem} (or pass a uint8 array of shape {shape_str(f.shape)})")
            return data
        arr = np.asarray(value)
        if arr.ndim == 2 and channels == 1:
            arr = arr[..., None]
        if arr.shape != f.shape:
            raise self.fail(index, f"{self.expected()}, got {describe(arr)}")
        if arr.dtype != np.uint8:
            if arr.dtype.kind not in "iu":
                raise self.fail(index, f"{self.expected()}, got {describe(arr)}")
            found = numbers_problem(arr, "uint8")
            if found is not None:
                raise self.fail(index, str(found))
            arr = arr.astype(np.uint8)
        return images.encode_png(arr) if f.encoding == "png" else images.encode_jpeg(arr)

    # -- whole columns -----------------------------------------------------------------

    def column(self, values: Any, rows: int) -> np.ndarray | list[bytes | None]:
        """Validate a whole column of ``rows`` values (``None``: the feature is absent from every row).

        Returns, for a fixed-size numeric feature given as a numeric array with every
        value present, the validated ``[rows, size]`` matrix in its storage dtype
        (float32 or int64), so whole records can be encoded at once; otherwise the
        per-row map-entry bytes (None where a row lacks the feature: a missing value).
        """
        f = self.f
        fixed_numeric = self.kind != "bytes" and not f.variable
        if values is None:
            return [self.entry(None, i) for i in range(rows)]
        if fixed_numeric:
            arr = np.asarray(values)
            if arr.dtype == object:
                return [self.entry(v, i) for i, v in enumerate(values)]
            missing = self._nan_rows(arr, rows)
            if missing is not None:  # the present rows as a matrix, then the missing ones left out
                present = np.flatnonzero(~missing)
                entries: list[bytes | None] = [None] * rows
                if len(present):
                    matrix = self._matrix(arr[present], len(present), present)
                    for i, e in zip(present.tolist(), wire.column_entries(f.name, self.kind, matrix), strict=True):
                        entries[i] = e
                return entries
            return self._matrix(arr, rows)
        return [self.entry(v, i) for i, v in enumerate(values)]

    def _matrix(self, arr: np.ndarray, rows: int, index: np.ndarray | None = None) -> np.ndarray:
        """A validated ``[rows, size]`` matrix; ``index`` maps its rows to the column's, for messages."""
        try:
            self._check_numeric(arr, 0, arr.shape, rows=True)
        except RecordError as err:
            if index is None:
                raise
            raise RecordError(_renumber(str(err), index)) from None
        arr = arr.reshape(rows, self.f.size)
        if self.kind == "float":
            return np.ascontiguousarray(arr, dtype="<f4")
        return arr.astype(np.int64, copy=False)

    def _nan_rows(self, arr: np.ndarray, rows: int) -> np.ndarray | None:
        """Which rows of a float column are missing (NaN throughout), when the feature may be missing and some are."""
        if not self.optional or arr.dtype.kind != "f" or arr.ndim == 0 or len(arr) != rows or not arr.size:
            return None
        missing = np.isnan(arr.reshape(rows, -1)).all(axis=1)
        return missing if missing.any() else None


def _renumber(message: str, index: np.ndarray) -> str:
    """``record i: ...`` of a sub-column -> the record's index in the whole column."""
    if message.startswith("record "):
        number, rest = message[7:].split(":", 1)
        return f"record {int(index[int(number)])}:{rest}"
    return message


def encoders_for(spec: FeatureSpec) -> dict[str, _Encoder]:
    return {f.name: _Encoder(f) for f in spec.all()}


def _unknown(record: Mapping[str, Any], encoders: Mapping[str, _Encoder], index: int | None) -> None:
    unknown = [k for k in record if k not in encoders]
    if unknown:
        where = f"record {index}: " if index is not None else ""
        key = unknown[0]
        raise RecordError(
            f"{where}unknown feature '{key}'{did_you_mean(key, encoders)}; the spec declares {', '.join(encoders)}"
        )


def encode_record(
    spec: FeatureSpec, record: Mapping[str, Any], index: int = -1, encoders=None, missing: Counter | None = None
) -> bytes:
    """Validate one record against the spec and return the serialized tf.train.Example.

    ``missing``: counts, per feature name, the values left out as missing (only when the record is good).
    """
    encoders = encoders or encoders_for(spec)
    if not isinstance(record, Mapping):
        raise RecordError(f"record {index}: expected a mapping of feature name to value, got {type(record).__name__}")
    _unknown(record, encoders, index if index >= 0 else None)
    entries = {name: enc.entry(record.get(name), index) for name, enc in encoders.items()}
    if missing is not None:
        missing.update(name for name, e in entries.items() if e is None)
    return wire.example([e for e in entries.values() if e is not None])


def encode_columns(
    spec: FeatureSpec, columns: Mapping[str, Any], start: int = 0, encoders=None, missing: Counter | None = None
) -> list[bytes]:
    """Validate and encode a dict of equally long columns; numeric columns are encoded whole.

    ``missing``: counts, per feature name, the values left out as missing (only when every record is good).
    """
    encoders = encoders or encoders_for(spec)
    _unknown(columns, encoders, None)
    lengths = {name: len(v) for name, v in columns.items() if v is not None}
    if not lengths:
        raise RecordError("no columns to write")
    rows = next(iter(lengths.values()))
    if any(n != rows for n in lengths.values()):
        detail = ", ".join(f"'{k}': {n}" for k, n in lengths.items())
        raise RecordError(f"columns have different lengths ({detail})")
    encoded = []
    for name, enc in encoders.items():
        try:
            encoded.append(enc.column(columns.get(name), rows))
        except RecordError as err:
            # Row numbers inside a column are relative to this batch of columns.
            raise RecordError(_shift_record_index(str(err), start)) from None
    if missing is not None:
        for name, column in zip(encoders, encoded, strict=True):
            if not isinstance(column, np.ndarray):
                missing[name] += sum(e is None for e in column)
    kinds = [enc.kind for enc in encoders.values()]
    if all(isinstance(c, np.ndarray) for c in encoded):
        # Every column is fixed-size numeric: whole records are assembled in numpy.
        return wire.examples_from_matrices(list(zip(encoders, kinds, encoded, strict=True)))
    encoded = [
        wire.column_entries(name, kind, c) if isinstance(c, np.ndarray) else c
        for name, kind, c in zip(encoders, kinds, encoded, strict=True)
    ]
    return wire.examples_from_columns(encoded)


def _shift_record_index(message: str, start: int) -> str:
    if start and message.startswith("record "):
        number, rest = message[7:].split(":", 1)
        return f"record {int(number) + start}:{rest}"
    return message
