"""tf.train.Example wire format, encoded straight from numpy.

Building ``tf.train.Example`` protos in Python costs ~13 us a record; the wire
format of an Example is simple enough to emit directly, and when every column
is fixed-size numeric whole records are assembled in numpy
(``examples_from_matrices``). The bytes parse
with ``tf.io.parse_example`` and ``tf.train.Example.FromString`` like any
other Example.

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }        # entries: key = 1, value = 2
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    *List    { repeated value = 1 [packed for float and int64]; }
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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
    if u.size and u.max() < 0x80:
        # All in 0..127 (negatives are huge as uint64): one byte each, the common case of labels.
        return u.astype(np.uint8).reshape(-1), np.arange(rows + 1, dtype=np.int64) * u.shape[1]
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


def examples_from_matrices(columns: Sequence[tuple[str, str, np.ndarray]]) -> list[bytes]:
    """Serialized Examples, one per row, of fixed-size numeric columns, assembled in numpy.

    ``columns``: ``(name, kind, values)`` in map-entry order, ``kind`` ``"float"``
    or ``"int64"``, ``values`` a ``[rows, size]`` matrix (float32 or int64).

    Every header byte of an Example depends only on the byte lengths of its
    payloads, which are fixed for floats and vary with the varint widths for
    int64. Rows that share a tuple of payload lengths share one layout, so each
    such group is built as a single ``uint8`` matrix (headers broadcast, payloads
    copied in by column), and the only per-row Python left is one slice of the
    result. Typical data (floats, small labels) is a single group.
    """
    if not columns:
        raise ValueError("examples_from_matrices needs at least one column")
    rows = columns[0][2].shape[0]
    if rows == 0:
        return []
    parts = []  # per column: (header, uint8 bytes, row offsets or None, fixed length or per-row lengths)
    for name, kind, values in columns:
        header = EntryHeader(name, kind)
        if kind == "float":
            data = np.ascontiguousarray(values, dtype="<f4").reshape(rows, -1).view(np.uint8)
            parts.append((header, data, None, data.shape[1]))
        elif kind == "int64":
            flat, offsets = int64_varints(values)
            parts.append((header, flat, offsets, np.diff(offsets)))
        else:
            raise ValueError(f"examples_from_matrices: {name!r} has kind {kind!r}; only float and int64 columns")

    varying = [i for i, p in enumerate(parts) if p[2] is not None]
    lengths = np.stack([parts[i][3] for i in varying], axis=1) if varying else np.zeros((rows, 0), np.int64)
    if not varying or (lengths == lengths[0]).all():
        signatures, group_of = lengths[:1], None
    else:
        signatures, group_of = _groups(lengths)
        if len(signatures) > max(16, rows // 64):
            # Varint widths all over the place: a layout per group would cost more than row by row.
            return examples_from_columns([column_entries(name, kind, values) for name, kind, values in columns])

    blocks, record_lengths = [], []
    if group_of is not None:
        # A stable sort of small ints is a radix sort in numpy.
        order = np.argsort(group_of.astype(np.uint16) if len(signatures) < 1 << 16 else group_of, kind="stable")
        counts = np.bincount(group_of, minlength=len(signatures)).tolist()
    start = 0
    for g, signature in enumerate(signatures):
        if group_of is None:
            members, count = None, rows
        else:
            count = counts[g]
            members = order[start : start + count]
            start += count
        payload_len = [p[3] for p in parts]
        for j, i in enumerate(varying):
            payload_len[i] = int(signature[j])
        blocks.append(_group_block(parts, payload_len, members, count))
        record_lengths.append(blocks[-1].shape[1])

    if group_of is None:
        return _split_rows(blocks[0])
    # Blocks are in group order; each row's record sits at its group-sorted offset.
    buf = b"".join(block.tobytes() for block in blocks)
    sizes = np.asarray(record_lengths, dtype=np.int64)[group_of]
    starts = np.empty(rows, dtype=np.int64)
    sorted_sizes = sizes[order]
    starts[order] = np.cumsum(sorted_sizes) - sorted_sizes
    return [buf[s : s + n] for s, n in zip(starts.tolist(), sizes.tolist(), strict=True)]


def _groups(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a small int matrix ``[rows, k]`` and each row's index among them.

    Rows are packed into one integer key and grouped by counting rather than
    sorting (``np.unique(axis=0)`` sorts, and costs more than the encoding).
    """
    low = lengths.min(axis=0)
    radix = lengths.max(axis=0) - low + 1
    if float(np.prod(radix.astype(np.float64))) > 1 << 20:
        signatures, group_of = np.unique(lengths, axis=0, return_inverse=True)
        return signatures, group_of.reshape(-1)
    weights = np.cumprod(np.concatenate([[1], radix[:-1]])).astype(np.int64)
    key = (lengths - low) @ weights
    present = np.flatnonzero(np.bincount(key))
    index = np.empty(present[-1] + 1, dtype=np.int64)
    index[present] = np.arange(len(present))
    signatures = (present[:, None] // weights) % radix + low
    return signatures, index[key]


def _group_block(parts: list, payload_len: list[int], members: np.ndarray | None, count: int) -> np.ndarray:
    """``uint8 [count, record length]``: the whole Examples of rows sharing these payload lengths."""
    segments = []  # bytes constants and (part index) payload slots, in record order
    body_len = 0
    for i, (header, _data, _offsets, _fixed) in enumerate(parts):
        head = header(payload_len[i])
        entry_len = len(head) + payload_len[i]
        prefix = _TAG1 + _len(entry_len) + head
        segments += [prefix, i]
        body_len += len(prefix) + payload_len[i]
    segments.insert(0, _TAG1 + _len(body_len))
    # Adjacent constants (the record head and the first entry's head) become one run.
    merged: list = []
    for seg in segments:
        if isinstance(seg, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += seg
        else:
            merged.append(seg)
    block = np.empty((count, 1 + len(_len(body_len)) + body_len), dtype=np.uint8)
    pos = 0
    for seg in merged:
        if isinstance(seg, bytes):
            block[:, pos : pos + len(seg)] = np.frombuffer(seg, dtype=np.uint8)
            pos += len(seg)
            continue
        _header, data, offsets, _fixed = parts[seg]
        width = payload_len[seg]
        if offsets is None:  # fixed width: a column slice of the data matrix
            block[:, pos : pos + width] = data if members is None else data[members]
        elif members is None:  # every row has this width: the varint bytes are a matrix already
            block[:, pos : pos + width] = data.reshape(count, width)
        else:
            block[:, pos : pos + width] = data[offsets[members][:, None] + np.arange(width)]
        pos += width
    return block


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
    """Serialized Examples, row by row, from per-column map-entry bytes (None: the row lacks the feature)."""
    out = []
    for row in zip(*columns, strict=True):
        body = b"".join([_TAG1 + _len(len(e)) + e for e in row if e is not None])
        out.append(_TAG1 + _len(len(body)) + body)
    return out


# -- reading ---------------------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or malformed varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _length_delimited(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(field number, payload)`` of the length-delimited fields of a message; others are skipped."""
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        kind = tag & 7
        if kind == 0:
            _, pos = _read_varint(data, pos)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield tag >> 3, data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {kind}")


def feature_keys(serialized: bytes) -> list[str]:
    """The feature names a serialized ``tf.train.Example`` holds, in stored order.

    ``ValueError`` when the bytes are not an Example.
    """
    keys = []
    for number, features in _length_delimited(serialized):
        if number != 1:
            continue
        for entry_number, entry in _length_delimited(features):
            if entry_number != 1:
                continue
            for field, value in _length_delimited(entry):
                if field == 1:
                    keys.append(value.decode("utf-8", errors="replace"))
    return keys
