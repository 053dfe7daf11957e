"""tf.train.Example wire format, encoded straight from numpy.

Building ``tf.train.Example`` protos in Python costs ~13 us a record; the wire
format of an Example is simple enough to emit directly, and for numeric
columns most of it can be produced for a whole column at once. The bytes parse
with ``tf.io.parse_example`` and ``tf.train.Example.FromString`` like any
other Example.

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }        # entries: key = 1, value = 2
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    *List    { repeated value = 1 [packed for float and int64]; }
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Field tags (field number << 3 | wire type 2 = length-delimited).
_TAG1, _TAG2, _TAG3 = b"\x0a", b"\x12", b"\x1a"
_KIND_TAG = {"bytes": _TAG1, "float": _TAG2, "int64": _TAG3}


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [varint(i) for i in range(1 << 14)]


def _len(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else varint(n)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _len(len(payload)) + payload


class EntryHeader:
    """The bytes in front of a feature's list payload, as a function of the payload's length.

    A map entry is ``0a len(key) key 12 len(feature) feature`` where
    ``feature = kind_tag len(list) list`` and, for packed lists,
    ``list = 0a len(values) values``. Everything but the values depends only on
    their byte length, so it is computed once per distinct length.
    """

    def __init__(self, name: str, kind: str):
        key = name.encode()
        self._key = _TAG1 + _len(len(key)) + key
        self._kind_tag = _KIND_TAG[kind]
        self._packed = kind != "bytes"
        self._cache: dict[int, bytes] = {}

    def __call__(self, payload_len: int) -> bytes:
        header = self._cache.get(payload_len)
        if header is None:
            if self._packed and payload_len:
                list_len = 1 + len(_len(payload_len)) + payload_len
                list_head = _TAG1 + _len(payload_len)
            else:
                list_len, list_head = payload_len, b""
            feature_len = 1 + len(_len(list_len)) + list_len
            header = self._key + _TAG2 + _len(feature_len) + self._kind_tag + _len(list_len) + list_head
            self._cache[payload_len] = header
        return header


def bytes_payload(values: Sequence[bytes]) -> bytes:
    """The repeated-bytes payload of a BytesList."""
    return b"".join(_TAG1 + _len(len(v)) + v for v in values)


def int64_varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint-encode an int64 matrix ``[rows, k]`` row by row, vectorised.

    Returns ``(flat, offsets)``: the concatenated bytes of all rows and the
    ``rows + 1`` offsets into it. Negative values take ten bytes (two's
    complement), as protobuf does.
    """
    rows = values.shape[0]
    u = np.ascontiguousarray(values, dtype=np.int64).reshape(rows, -1).view(np.uint64)
    shifts = np.arange(10, dtype=np.uint64) * np.uint64(7)
    groups = (u[..., None] >> shifts) & np.uint64(0x7F)  # [rows, k, 10]
    nbytes = 1 + ((u[..., None] >> shifts[1:]) != 0).sum(-1)  # [rows, k]
    pos = np.arange(10)
    cont = pos < (nbytes[..., None] - 1)
    data = (groups | (cont.astype(np.uint64) << np.uint64(7))).astype(np.uint8)
    keep = pos < nbytes[..., None]
    flat = data[keep]  # row-major: row by row, value by value
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(nbytes.sum(-1), out=offsets[1:])
    return flat, offsets


def column_entries(name: str, kind: str, values: np.ndarray) -> list[bytes]:
    """Map-entry bytes for every row of a fixed-size numeric column ``[rows, ...]``."""
    rows = values.shape[0]
    header = EntryHeader(name, kind)
    if kind == "float":
        flat = np.ascontiguousarray(values, dtype="<f4").reshape(rows, -1)
        width = flat.shape[1] * 4
        head = header(width)
        block = np.empty((rows, len(head) + width), dtype=np.uint8)
        block[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
        block[:, len(head) :] = flat.view(np.uint8)
        return _split_rows(block)
    flat, offsets = int64_varints(values)
    buf = flat.tobytes()
    starts, ends = offsets[:-1].tolist(), offsets[1:].tolist()
    return [header(e - s) + buf[s:e] for s, e in zip(starts, ends, strict=True)]


def _split_rows(block: np.ndarray) -> list[bytes]:
    buf, width = block.tobytes(), block.shape[1]
    return [buf[i : i + width] for i in range(0, len(buf), width)]


def entry(name: str, kind: str, values) -> bytes:
    """Map-entry bytes of one feature of one record. ``values``: flat numpy array or list of bytes."""
    header = EntryHeader(name, kind)
    if kind == "bytes":
        payload = bytes_payload(values)
    elif kind == "float":
        payload = np.ascontiguousarray(values, dtype="<f4").tobytes()
    else:
        flat, _ = int64_varints(np.asarray(values, dtype=np.int64).reshape(1, -1))
        payload = flat.tobytes()
    return header(len(payload)) + payload


def example(entries: Sequence[bytes]) -> bytes:
    """Serialized Example from its map entries."""
    return _delimited(_TAG1, b"".join(_TAG1 + _len(len(e)) + e for e in entries))


def examples_from_columns(columns: Sequence[list[bytes]]) -> list[bytes]:
    """Serialized Examples, row by row, from per-column map-entry bytes."""
    out = []
    for row in zip(*columns, strict=True):
        body = b"".join([_TAG1 + _len(len(e)) + e for e in row])
        out.append(_TAG1 + _len(len(body)) + body)
    return out
