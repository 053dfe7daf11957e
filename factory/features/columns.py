"""Whole columns checked and encoded at once, for ``encode_columns``. No TensorFlow.

Each column becomes a ``wire.Part``: its payload bytes per row and the rows that
hold the feature. The checks are whole-column: numbers with numpy
(``numbers_problem``), strings by the set of their types and one set operation
against a vocabulary, missing values (None, rows all NaN, ``""`` or the smallest
int64 of a ``missing:`` feature) as a mask. They accept exactly the values the
record encoder accepts, so a form they do not cover (images, nested lists,
values of mixed types) or a column they find a problem in goes value by value
through the record encoder's own checks (``by_values``), its payloads still
assembled whole.

A column that fails raises ``BadRow`` with its first bad row; ``encode_columns``
then encodes that row as a record, so the message is the record encoder's own.
Columns are numpy arrays, lists, or pyarrow arrays (string and binary arrays are
read from their buffers; pyarrow is imported only when one is given).
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import numpy as np

from factory.errors import RecordError
from factory.features import wire
from factory.features.checks import numbers_problem, shape_matches
from factory.features.feature import MISSING_VALUE

_NONE = type(None)
_TEXT = frozenset({str, np.str_})
_BYTES = frozenset({bytes, np.bytes_})
_LISTS = frozenset({list, tuple})


class BadRow(Exception):
    """The first row of a column that the record encoder rejects."""

    def __init__(self, row: int):
        super().__init__(row)
        self.row = row


def is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")


def sequence(values: Any) -> Any:
    """A column as rows can be taken from it: arrays, lists and pyarrow arrays as given, other sequences
    (a pandas Series, a tuple) as an array or a list."""
    if values is None or isinstance(values, np.ndarray | list) or is_arrow(values):
        return values
    return np.asarray(values) if hasattr(values, "__array__") else list(values)


def row_value(values: Any, row: int) -> Any:
    """The value of one row, as the record encoder takes it."""
    value = values[row]
    return value.as_py() if is_arrow(values) else value


def column_part(enc, values: Any, rows: int) -> wire.Part:
    """The checked and encoded column of feature encoder ``enc`` (None: every row lacks the feature)."""
    f = enc.f
    if values is None:
        if not enc.optional and rows:
            raise BadRow(0)
        return wire.Part(f.name, enc.kind, np.zeros((rows, 0), np.uint8), None, np.zeros(rows, bool))
    if is_arrow(values):
        values = _from_arrow(enc, values)
        if is_arrow(values):
            return _arrow_strings(enc, values, rows)
    part = None
    if not f.encoding:
        encode = _strings if enc.kind == "bytes" else _variable if f.variable else _fixed
        part = encode(enc, values, rows)
    return part if part is not None else by_values(enc, values, rows)


def by_values(enc, values: Any, rows: int) -> wire.Part:
    """The record encoder's checks, value by value (the reference); the payloads assembled whole."""
    present = np.ones(rows, dtype=bool)
    payloads: list = []
    for i, value in enumerate(values):
        try:
            payload = None if value is None else enc.payload(value, i)
        except RecordError:
            raise BadRow(i) from None
        if payload is None:
            if not enc.optional:
                raise BadRow(i)
            present[i] = False
            payload = []
        payloads.append(payload)
    if enc.kind == "bytes":
        data = [wire.bytes_payload(p) for p in payloads]
        sizes = np.fromiter(map(len, data), dtype=np.int64, count=rows)
        return wire.Part(enc.f.name, "bytes", np.frombuffer(b"".join(data), np.uint8), _offsets(sizes), present)
    # Each value cast on its own, as the record encoder does (one array of all would promote them together).
    dtype = "<f4" if enc.kind == "float" else np.int64
    flat = [np.asarray(p, dtype=dtype).reshape(-1) for p in payloads]
    counts = np.fromiter(map(len, flat), dtype=np.int64, count=rows)
    return _ragged_numbers(enc, np.concatenate(flat) if flat else np.zeros(0, dtype), counts, present)


# -- numbers ----------------------------------------------------------------------------------


def _fixed(enc, values: Any, rows: int) -> wire.Part | None:
    """A fixed-size numeric column; rows all NaN (or all the int64 marker) of an optional feature are missing."""
    f = enc.f
    found = _numbers(enc, values)
    if found is None:
        return None
    arr, index = found  # index: the rows of arr's rows (None: all rows)
    n = len(arr)
    absent = None
    if enc.optional and n and arr[0].size:
        flat = arr.reshape(n, -1)
        if arr.dtype.kind == "f":
            absent = np.isnan(flat).all(axis=1)
        elif arr.dtype.kind == "i" and f.missing is not None:
            absent = (flat == MISSING_VALUE["int64"]).all(axis=1)
    if absent is not None and absent.any():
        keep = np.flatnonzero(~absent)
        arr, index = arr[keep], keep if index is None else index[keep]
    if len(arr):
        bad = None if shape_matches(f.shape, arr.shape[1:]) else 0
        if bad is None:
            problem = numbers_problem(arr, f.dtype)
            bad = None if problem is None else problem.position[0]
        if bad is not None:
            raise BadRow(bad if index is None else int(index[bad]))
    if index is None:
        return wire.Part.numbers(f.name, enc.kind, arr.reshape(rows, f.size))
    matrix = np.zeros((rows, f.size), dtype=np.float32 if enc.kind == "float" else np.int64)
    matrix[index] = arr.reshape(len(index), f.size)
    present = np.zeros(rows, dtype=bool)
    present[index] = True
    return wire.Part.numbers(f.name, enc.kind, matrix, present)


def _numbers(enc, values: Any) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A numeric column's present rows as one numeric array, and their rows (None: all); None when the
    values are not in a form whose array holds exactly what the record encoder would make of each."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iuf":
            return values, None
        if values.dtype != object or values.ndim != 1:
            return None
        values = values.tolist()
    types = set(map(type, values))
    index = None
    if _NONE in types:
        if not enc.optional:
            return None
        index = np.flatnonzero(np.fromiter((v is not None for v in values), dtype=bool, count=len(values)))
        values = [v for v in values if v is not None]
        types.discard(_NONE)
        if not values:
            return np.zeros((0, *enc.f.shape)), index
    if len(types) != 1:
        return None  # mixed types: numpy would promote them together
    kind = types.pop()
    if kind in _LISTS:  # rows of numbers (one level, equally long)
        inner = set(map(type, chain.from_iterable(values)))
        if len(inner) != 1 or not inner <= {float, int} or len(set(map(len, values))) != 1:
            return None
        kind = inner.pop()
    elif kind is np.ndarray:
        if len({(v.dtype, v.shape) for v in values}) != 1:
            return None
        arr = np.stack(values)
        return (arr, index) if arr.dtype.kind in "iuf" else None
    elif kind is not float and kind is not int and not issubclass(kind, np.integer | np.floating):
        return None
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf" or (kind is int and arr.dtype.kind == "f"):
        return None  # Python ints beyond int64 (or mixed with those beyond): each on its own
    return arr, index


def _variable(enc, values: Any, rows: int) -> wire.Part | None:
    """A variable-length numeric column: a matrix (every row as long), or arrays or lists of numbers."""
    f = enc.f
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf" and values.ndim >= 2:
        if not shape_matches(f.shape, values.shape[1:]):
            raise BadRow(0)
        problem = numbers_problem(values, f.dtype)
        if problem is not None:
            raise BadRow(problem.position[0])
        return wire.Part.numbers(f.name, enc.kind, values.reshape(rows, math.prod(values.shape[1:])))
    if isinstance(values, np.ndarray):
        if values.dtype != object or values.ndim != 1:
            return None
        values = values.tolist()
    values, types, present = _present(values, rows)
    if types <= _LISTS and len(f.shape) == 1:
        inner = set(map(type, chain.from_iterable(values)))
        if len(inner) > 1 or not inner <= {float, int}:
            return None
        arr = np.asarray(list(chain.from_iterable(values)))
        if inner == {int} and arr.dtype.kind not in "iu":
            return None
        counts = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    elif types == {np.ndarray}:
        filled = [v for v in values if v.size]  # an empty row's dtype makes no value
        dtypes, tails = {v.dtype for v in filled}, {v.shape[1:] for v in values}
        ndims = {v.ndim for v in values}
        if len(dtypes) > 1 or len(tails) > 1 or ndims != {len(f.shape)} or not shape_matches(f.shape[1:], tails.pop()):
            return None
        arr = np.concatenate(filled).reshape(-1) if filled else np.zeros(0)
        counts = np.fromiter(map(np.size, values), dtype=np.int64, count=len(values))
    else:
        return None
    if arr.dtype.kind not in "iuf":
        return None
    problem = numbers_problem(arr, f.dtype)
    if problem is not None:
        row = int(np.searchsorted(_offsets(counts), problem.position[0], side="right")) - 1
        raise BadRow(row if present is None else int(np.flatnonzero(present)[row]))
    return _ragged_numbers(enc, arr, _scatter(counts, present), present)


def _present(values: list, rows: int) -> tuple[list, set, np.ndarray | None]:
    """The values that are not None, their types, and which rows they are (None: all)."""
    types = set(map(type, values))
    if _NONE not in types:
        return values, types, None
    types.discard(_NONE)
    present = np.fromiter((v is not None for v in values), dtype=bool, count=rows)
    return [v for v in values if v is not None], types, present


def _scatter(sizes: np.ndarray, present: np.ndarray | None) -> np.ndarray:
    """Sizes of the present rows -> sizes of all rows (0 where absent)."""
    if present is None:
        return sizes
    out = np.zeros(len(present), dtype=np.int64)
    out[present] = sizes
    return out


def _ragged_numbers(enc, flat: np.ndarray, counts: np.ndarray, present: np.ndarray | None) -> wire.Part:
    """The part of checked numbers ``flat``, ``counts[r]`` of them in row r."""
    offsets = _offsets(counts)
    if enc.kind == "float":
        data = np.ascontiguousarray(flat, dtype="<f4").view(np.uint8)
        return wire.Part(enc.f.name, "float", data, offsets * 4, present)
    data, value_offsets = wire.int64_varints(np.asarray(flat).astype(np.int64).reshape(-1, 1))
    return wire.Part(enc.f.name, "int64", data, value_offsets[offsets], present)


# -- strings ----------------------------------------------------------------------------------


def _strings(enc, values: Any, rows: int) -> wire.Part | None:
    """A string column: scalars (str or bytes), or rows of them (a matrix, lists or arrays)."""
    f = enc.f
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "USO":
            return None
        if values.ndim >= 2:
            if not shape_matches(f.shape, values.shape[1:]):
                return None
            counts = np.full(rows, values[0].size, dtype=np.int64)
            return _string_lists(enc, values.reshape(-1).tolist(), counts, None)
        values = values.tolist()
    values, types, present = _present(values, rows)
    if present is not None and not enc.optional:
        return None
    if f.shape == ():
        if not types <= _TEXT | _BYTES:
            return None
        return _scalar_strings(enc, values, types, present)
    if len(f.shape) != 1:
        return None
    if types == {np.ndarray}:
        if {v.ndim for v in values} != {1} or not {v.dtype.kind for v in values if v.size} <= set("USO"):
            return None
    elif not types <= _LISTS:
        return None
    counts = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if f.shape[0] is not None and (counts != f.shape[0]).any():
        return None
    return _string_lists(enc, list(chain.from_iterable(values)), _scatter(counts, present), present)


def _scalar_strings(enc, values: list, types: set, present: np.ndarray | None) -> wire.Part | None:
    """One string a row (``values``: those of the ``present`` rows). ``""`` is missing with ``missing:``."""
    f = enc.f
    if not _known(enc, values, types, empty_missing=f.missing is not None):
        return None
    encoded = _encode(values, types)
    if encoded is None:
        return None
    data, sizes = encoded
    sizes = _scatter(sizes, present)
    if f.missing is not None and (sizes == 0).any():
        present = (sizes > 0) if present is None else present & (sizes > 0)
    return wire.Part(f.name, "bytes", data, _offsets(sizes), present, single=True)


def _string_lists(enc, items: list, counts: np.ndarray, present: np.ndarray | None) -> wire.Part | None:
    """``counts[r]`` strings of ``items`` in row r, framed as a BytesList holds them."""
    types = set(map(type, items))
    if not types <= _TEXT | _BYTES or not _known(enc, items, types):
        return None
    encoded = _encode(items, types)
    if encoded is None:
        return None
    data, sizes = encoded
    framed, framed_offsets = wire.framed_values(data, _offsets(sizes))
    return wire.Part(enc.f.name, "bytes", framed, framed_offsets[_offsets(counts)], present)


def _known(enc, values, types: set, empty_missing: bool = False) -> bool:
    """Whether the strings are in the vocabulary of a feature without ``oov_buckets`` (if it has one);
    ``empty_missing``: but for ``""``, a missing value."""
    if enc.known is None:
        return True
    distinct = set(values) - ({"", b""} if empty_missing else set())
    if not types <= _TEXT:
        distinct = {v.decode(errors="replace") if isinstance(v, bytes) else v for v in distinct}
    return enc.known.issuperset(distinct)


def _encode(values: list, types: set) -> tuple[np.ndarray, np.ndarray] | None:
    """The UTF-8 bytes of strings (bytes as they are), one after another, and each one's size."""
    try:
        if types <= _TEXT:
            joined = "".join(values)
            data = joined.encode()
            if len(data) == len(joined):  # ASCII: a byte a character
                return np.frombuffer(data, np.uint8), np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            encoded = [v.encode() for v in values]
        else:
            encoded = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
    except UnicodeEncodeError:
        return None  # a lone surrogate: the record encoder raises it for its row
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    return np.frombuffer(b"".join(encoded), np.uint8), sizes


# -- pyarrow -----------------------------------------------------------------------------------


def _from_arrow(enc, values: Any) -> Any:
    """A pyarrow column as the encoder takes it: string and binary arrays of a scalar string feature as
    they are, numbers without nulls as a numpy array, anything else as Python values."""
    import pyarrow as pa  # deferred: optional, and only needed for a pyarrow column

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.dictionary_decode()
        kind = values.type
    if enc.kind == "bytes" and not enc.f.encoding and enc.f.shape == ():
        if str(kind) in ("string_view", "binary_view"):
            values = values.cast(pa.large_string() if str(kind) == "string_view" else pa.large_binary())
            kind = values.type
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        if text or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            return values
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and values.null_count == 0:
        return values.to_numpy(zero_copy_only=False)
    return values.to_pylist()


def _arrow_strings(enc, values: Any, rows: int) -> wire.Part:
    """A pyarrow string or binary array: its data buffer is the payload, its offsets the rows'."""
    import pyarrow as pa  # deferred: optional, and only needed for a pyarrow column

    f = enc.f
    present = None
    if values.null_count:
        if not enc.optional:
            return by_values(enc, values.to_pylist(), rows)
        present = values.is_valid().to_numpy(zero_copy_only=False)
    if enc.known is not None:
        distinct = set(values.unique().to_pylist()) - {None}
        if not _known(enc, distinct, _BYTES, empty_missing=f.missing is not None):
            return by_values(enc, values.to_pylist(), rows)
    large = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if large else np.int32)
    offsets = offsets[values.offset : values.offset + rows + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    data, offsets = data[offsets[0] : offsets[-1]], offsets - offsets[0]
    if f.missing is not None:
        sizes = np.diff(offsets)
        if (sizes == 0).any():
            present = (sizes > 0) if present is None else present & (sizes > 0)
    return wire.Part(f.name, "bytes", data, offsets, present, single=True)


def _offsets(sizes: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets
