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
    VocabularyCheck,
    describe,
    image_problem,
    numbers_problem,
    shape_problem,
    string_problem,
)
from factory.features.columns import BadRow, column_part, row_value, sequence
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
        self.known = frozenset(self.vocab.entries) if self.vocab is not None else None
        # A record may lack the feature: the reader supplies the default, the fill or an empty list.
        self.optional = feature.default is not None or feature.missing is not None or feature.variable
        if feature.default is not None:  # checked like any value, once
            default = np.asarray(feature.default, dtype=object if feature.dtype == "string" else None)
            self.payload(default.reshape(feature.shape), -1)

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
        payload = self.payload(value, index)
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

    def payload(self, value: Any, index: int):
        """The checked values of ``value`` (record ``index``): a flat array, a list of bytes, or None when missing."""
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
        self._check_numeric(arr, index)
        return arr.reshape(-1)

    def _nan_missing(self, arr: np.ndarray) -> bool:
        """A value all NaN of a numeric feature that may be missing is missing (pandas' missing number);
        so is a value all ``MISSING_VALUE`` (the smallest int64) of an int64 feature with ``missing:``."""
        if not self.optional or self.f.variable or not arr.size:
            return False
        if arr.dtype.kind == "f":
            return bool(np.isnan(arr).all())
        return self.f.missing is not None and arr.dtype.kind == "i" and bool((arr == MISSING_VALUE["int64"]).all())

    def _check_numeric(self, arr: np.ndarray, index: int) -> None:
        """Kind, shape and values of one numeric value (``columns.py`` checks whole columns alike)."""
        f = self.f
        if arr.dtype.kind not in "iuf":
            raise self.fail(index, f"{self.expected()}, got {describe(arr)}")
        problem = shape_problem(f.shape, arr.shape, f.describe())
        if problem:
            raise self.fail(index, problem)
        # Floats are accepted for integer features when they hold whole numbers (CSV, pandas);
        # the scan runs only for integer features, not over every float32 column.
        found = numbers_problem(arr, f.dtype)
        if found is not None:
            raise self.fail(index, str(found))

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
    """Validate and encode a dict of equally long columns, column by column (``factory.features.columns``).

    Every record is the one ``encode_record`` makes of its row, and a bad value
    raises the error ``encode_record`` raises for the first bad row (counted from
    ``start``). ``missing``: counts, per feature name, the values left out as
    missing (only when every record is good).
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
    if rows == 0:
        return []
    columns = {name: sequence(v) for name, v in columns.items()}
    parts, bad = [], []
    for name, enc in encoders.items():
        try:
            parts.append(column_part(enc, columns.get(name), rows))
        except BadRow as err:
            bad.append(err.row)
    if bad:
        return _by_records(spec, columns, min(bad), start, encoders, missing)
    if missing is not None:
        for name, part in zip(encoders, parts, strict=True):
            if part.present is not None:
                missing[name] += rows - int(np.count_nonzero(part.present))
    return wire.examples_from_parts(parts)


def _by_records(spec: FeatureSpec, columns: Mapping[str, Any], bad: int, start: int, encoders, missing) -> list[bytes]:
    """Raise the record encoder's error for row ``bad``, the first one a column check rejected.

    Should the record pass (a column check stricter than the record's), the rows are
    encoded one by one: the records decide.
    """
    rows = len(next(v for v in columns.values() if v is not None))

    def record(i: int) -> dict[str, Any]:
        return {name: row_value(v, i) for name, v in columns.items() if v is not None}

    encode_record(spec, record(bad), start + bad, encoders)
    counted: Counter = Counter()
    out = [encode_record(spec, record(i), start + i, encoders, counted) for i in range(rows)]
    if missing is not None:
        missing.update(counted)
    return out
