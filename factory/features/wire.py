"""tf.train.Example wire format, encoded straight from numpy.

Building ``tf.train.Example`` protos in Python costs ~13 us a record; the wire
format of an Example is simple enough to emit directly, and whole columns are
assembled into records in numpy (``examples_from_parts``; each column a
``Part``: its payload bytes per row, fixed-width or ragged, and which rows hold
it). The bytes parse with ``tf.io.parse_example`` and
``tf.train.Example.FromString`` like any other Example.

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }        # entries: key = 1, value = 2
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    *List    { repeated value = 1 [packed for float and int64]; }
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import groupby, pairwise

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
# Values varint-encoded at once by ``int64_varints``, which needs 80 bytes of scratch memory for each.
VARINT_VALUES = 1 << 20


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
    if not values.size:
        return np.zeros(0, dtype=np.uint8), np.zeros(rows + 1, dtype=np.int64)
    u = np.ascontiguousarray(values, dtype=np.int64).reshape(rows, -1).view(np.uint64)
    if u.max() < 0x80:
        # All in 0..127 (negatives are huge as uint64): one byte each, the common case of labels.
        return u.astype(np.uint8).reshape(-1), np.arange(rows + 1, dtype=np.int64) * u.shape[1]
    step = max(1, VARINT_VALUES // u.shape[1])
    if rows > step:  # 80 bytes of scratch a value: a block of rows at a time
        blocks = [int64_varints(u[i : i + step].view(np.int64)) for i in range(0, rows, step)]
        sizes = np.concatenate([np.diff(offsets) for _, offsets in blocks])
        offsets = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return np.concatenate([flat for flat, _ in blocks]), offsets
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


class Part:
    """One feature's values in every row of a table, encoded: what ``examples_from_parts`` assembles.

    ``data`` holds the rows' payload bytes: a ``uint8 [rows, width]`` matrix when
    every row's payload has one length, else a flat buffer with ``offsets``
    (``rows + 1``) into it, as ``int64_varints`` returns them. ``present`` (bool
    per row; None: every row) marks the rows that hold the feature; the others
    lack it, and whatever bytes they have are ignored. ``single``: each payload
    is one bytes value (a scalar string) whose ``0a len`` framing goes into the
    entry's header, so a string column's bytes are used as they are.
    """

    def __init__(self, name: str, kind: str, data: np.ndarray, offsets=None, present=None, single: bool = False):
        self.header = EntryHeader(name, kind)
        self.single = single
        self.rows = len(offsets) - 1 if offsets is not None else data.shape[0]
        if present is not None and present.all():
            present = None
        if offsets is not None and present is None and self.rows:
            sizes = np.diff(offsets)
            if (sizes == sizes[0]).all():  # one length after all: a matrix
                width = int(sizes[0])
                data, offsets = data[offsets[0] : offsets[0] + self.rows * width].reshape(self.rows, width), None
        self.data, self.offsets, self.present = data, offsets, present
        self._prefixes: dict[int, bytes] = {}

    @classmethod
    def numbers(cls, name: str, kind: str, values: np.ndarray, present=None) -> Part:
        """A fixed-size numeric column ``[rows, ...]`` (float32 or int64 values)."""
        if kind == "int64":
            return cls(name, kind, *int64_varints(values), present)
        matrix = np.ascontiguousarray(values, dtype="<f4").reshape(values.shape[0], math.prod(values.shape[1:]))
        return cls(name, kind, matrix.view(np.uint8), None, present)

    def lengths(self) -> np.ndarray | int:
        """Each row's payload length (-1: the row lacks the feature); an int when all rows share it."""
        if self.offsets is None and self.present is None:
            return self.data.shape[1]
        lengths = np.diff(self.offsets) if self.offsets is not None else np.full(self.rows, self.data.shape[1])
        return lengths if self.present is None else np.where(self.present, lengths, -1)

    def starts(self) -> np.ndarray:
        """Where each row's payload starts in ``data`` (flattened)."""
        if self.offsets is not None:
            return self.offsets[:-1]
        return np.arange(self.rows, dtype=np.int64) * self.data.shape[1]

    def prefix(self, length: int) -> bytes:
        """The bytes in front of a payload of ``length`` bytes: ``0a len(entry)`` and the entry's header."""
        prefix = self._prefixes.get(length)
        if prefix is None:
            if self.single:
                payload_len = 1 + len(_len(length)) + length
                head = self.header(payload_len) + _TAG1 + _len(length)
            else:
                head = self.header(length)
            prefix = self._prefixes[length] = _TAG1 + _len(len(head) + length) + head
        return prefix


def examples_from_matrices(columns: Sequence[tuple[str, str, np.ndarray]]) -> list[bytes]:
    """Serialized Examples, one per row, of fixed-size numeric columns, assembled in numpy.

    ``columns``: ``(name, kind, values)`` in map-entry order, ``kind`` ``"float"``
    or ``"int64"``, ``values`` a ``[rows, size]`` matrix (float32 or int64).
    """
    for name, kind, _ in columns:
        if kind not in ("float", "int64"):
            raise ValueError(f"examples_from_matrices: {name!r} has kind {kind!r}; only float and int64 columns")
    return examples_from_parts([Part.numbers(name, kind, values) for name, kind, values in columns])


def examples_from_parts(parts: Sequence[Part]) -> list[bytes]:
    """Serialized Examples, one per row, of encoded columns (``Part``, in map-entry order), assembled in numpy.

    Every header byte of an Example depends only on the byte lengths of its
    payloads (and on which features the row holds). Rows that share a tuple of
    payload lengths share one layout, so each such group is built as a single
    ``uint8`` matrix (headers broadcast, payloads copied in by column), and the
    only per-row Python left is one slice of the result. Typical data (floats,
    small labels, categories of a few lengths) makes a few groups; consecutive
    columns of one length in every row are laid out once and copied into each
    group whole (``_runs``). When the lengths vary too much for groups (free
    text), the records are laid out one after another in one buffer instead,
    every piece scattered to its place (``_scattered``).
    """
    if not parts:
        raise ValueError("examples_from_parts needs at least one column")
    rows = parts[0].rows
    if rows == 0:
        return []
    lengths = [p.lengths() for p in parts]
    varying = [i for i, n in enumerate(lengths) if not isinstance(n, int)]
    if not varying:
        return _split_rows(_group_block(parts, lengths, None, rows))
    signatures, group_of = _groups(np.stack([lengths[i] for i in varying], axis=1))
    if len(signatures) == 1:
        return _split_rows(
            _group_block(parts, [int(n) if isinstance(n, int) else int(n[0]) for n in lengths], None, rows)
        )
    parts, lengths = _runs(parts, lengths)
    varying = [i for i, n in enumerate(lengths) if not isinstance(n, int)]
    if len(signatures) > max(GROUPS_MIN, rows // ROWS_PER_GROUP):
        return _scattered(parts, lengths)
    # A stable sort of small ints is a radix sort in numpy.
    order = np.argsort(group_of.astype(np.uint16) if len(signatures) < 1 << 16 else group_of, kind="stable")
    counts = np.bincount(group_of, minlength=len(signatures)).tolist()
    blocks, record_lengths, start = [], [], 0
    for signature, count in zip(signatures.tolist(), counts, strict=True):
        members = order[start : start + count]
        start += count
        payload_len = list(lengths)
        for j, i in enumerate(varying):
            payload_len[i] = signature[j]
        blocks.append(_group_block(parts, payload_len, members, count))
        record_lengths.append(blocks[-1].shape[1])
    # Blocks are in group order; each row's record sits at its group-sorted offset.
    buf = b"".join(block.tobytes() for block in blocks)
    sizes = np.asarray(record_lengths, dtype=np.int64)[group_of]
    starts = np.empty(rows, dtype=np.int64)
    sorted_sizes = sizes[order]
    starts[order] = np.cumsum(sorted_sizes) - sorted_sizes
    return [buf[s : s + n] for s, n in zip(starts.tolist(), sizes.tolist(), strict=True)]


class _Run(Part):
    """Consecutive parts of one payload length in every row, laid out once: their map entries as one payload."""

    def __init__(self, block: np.ndarray):
        self.data, self.offsets, self.present, self.rows, self.single = block, None, None, block.shape[0], False

    def prefix(self, length: int) -> bytes:
        return b""


def _runs(parts: Sequence[Part], lengths: list) -> tuple[list[Part], list]:
    """The parts with each run of consecutive ones of one length in every row laid out together (``_Run``),
    so that rows split into groups copy each run at once."""
    out: list[Part] = []
    out_lengths: list = []
    for fixed, run in groupby(range(len(parts)), key=lambda i: isinstance(lengths[i], int)):
        run = list(run)
        if fixed and len(run) > 1:
            block = _group_block([parts[i] for i in run], [lengths[i] for i in run], None, parts[0].rows, head=False)
            out.append(_Run(block))
            out_lengths.append(block.shape[1])
        else:
            out += [parts[i] for i in run]
            out_lengths += [lengths[i] for i in run]
    return out, out_lengths


# Layouts (groups of rows sharing their payload lengths) worth building one by one: at least this many,
# and up to one per this many rows; beyond, a layout costs more than scattering its rows' bytes.
GROUPS_MIN = 16
ROWS_PER_GROUP = 128


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


def _group_block(
    parts: Sequence[Part], payload_len: list[int], members: np.ndarray | None, count: int, head: bool = True
) -> np.ndarray:
    """``uint8 [count, record length]``: the whole Examples of rows sharing these payload lengths (-1: absent);
    without ``head``, only their map entries."""
    segments: list = [b""]  # bytes constants and (part index) payload slots, in record order
    body_len = 0
    for i, part in enumerate(parts):
        if payload_len[i] < 0:
            continue
        prefix = part.prefix(payload_len[i])
        if isinstance(segments[-1], bytes):  # adjacent constants become one run
            segments[-1] += prefix
        else:
            segments.append(prefix)
        segments.append(i)
        body_len += len(prefix) + payload_len[i]
    if head:
        segments[0] = _TAG1 + _len(body_len) + segments[0]
    block = np.empty((count, sum(len(s) if isinstance(s, bytes) else payload_len[s] for s in segments)), np.uint8)
    pos = 0
    for seg in segments:
        if isinstance(seg, bytes):
            block[:, pos : pos + len(seg)] = np.frombuffer(seg, dtype=np.uint8)
            pos += len(seg)
            continue
        part, width = parts[seg], payload_len[seg]
        if width and part.offsets is None:  # a column slice of the data matrix
            block[:, pos : pos + width] = part.data if members is None else part.data[members]
        elif width:
            starts = part.offsets[:-1] if members is None else part.offsets[members]
            block[:, pos : pos + width] = _gather(part.data, starts, width)
        pos += width
    return block


def _scattered(parts: Sequence[Part], lengths: list) -> list[bytes]:
    """The Examples of rows of (too) many layouts: each record's pieces scattered into one buffer.

    Parts of one payload length in every row are whole map entries of a fixed
    width; a part whose length varies has its prefixes built once per distinct
    length and gathered from that table. The record's own ``0a len``
    comes from ``int64_varints``.
    """
    rows = parts[0].rows
    pieces: list = [(np.full((rows, 1), _TAG1[0], dtype=np.uint8), None, 1)]  # (source, row starts, row sizes)
    body = np.zeros(rows, dtype=np.int64)
    for part, n in zip(parts, lengths, strict=True):
        if isinstance(n, int):  # one length in every row: a matrix of whole map entries
            block = part.data if isinstance(part, _Run) else _group_block([part], [n], None, rows, head=False)
            pieces.append((block, None, block.shape[1]))
            body += block.shape[1]
            continue
        distinct, which = _distinct(n)
        prefixes = [part.prefix(d) if d >= 0 else b"" for d in distinct.tolist()]
        sizes = np.fromiter(map(len, prefixes), dtype=np.int64, count=len(prefixes))
        table = np.frombuffer(b"".join(prefixes), dtype=np.uint8)
        prefix_sizes, payload_sizes = sizes[which], np.maximum(n, 0)
        pieces.append((table, (np.cumsum(sizes) - sizes)[which], prefix_sizes))
        pieces.append((part.data.reshape(-1), part.starts(), payload_sizes))
        body += prefix_sizes + payload_sizes
    varints, offsets = int64_varints(body[:, None])
    head = np.diff(offsets)
    pieces.insert(1, (varints, offsets[:-1], head))
    buf, record_offsets = _interleave(pieces, 1 + head + body)
    data = buf.tobytes()
    return [data[s:e] for s, e in pairwise(record_offsets.tolist())]


def _distinct(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of small ints ``n`` (>= -1), ascending, and each one's index among them."""
    if n.max() >= 1 << 20:
        distinct, which = np.unique(n, return_inverse=True)
        return distinct, which.reshape(-1)
    index = np.bincount(n + 1)
    distinct = np.flatnonzero(index)
    index[distinct] = np.arange(len(distinct))
    return distinct - 1, index[n + 1]


def _interleave(pieces: list, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items of ``sizes`` bytes made of pieces: item r is piece r of each of ``pieces`` in turn.

    ``pieces``: ``(source, starts, sizes)``, piece r being ``source[starts[r] : starts[r] + sizes[r]]``;
    or ``(matrix, None, width)``, piece r being row r of the matrix. Returns the
    items' bytes, one after another, and their ``len(sizes) + 1`` offsets.
    """
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    pos = offsets[:-1].copy()
    for source, starts, n in pieces:
        if starts is None and n > LONG:  # wide rows of a matrix: a slice each
            target, origin = memoryview(out), memoryview(np.ascontiguousarray(source).reshape(-1))
            for r, p in enumerate(pos.tolist()):
                target[p : p + n] = origin[r * n : (r + 1) * n]
        elif starts is None and n:
            out[pos[:, None] + np.arange(n)] = source
        if starts is None:
            pos += n
            continue
        total = int(n.sum())
        if total > LONG * len(n):  # long pieces (text): a slice each costs less than an index per byte
            target, origin = memoryview(out), memoryview(source)
            for p, s, k in zip(pos.tolist(), starts.tolist(), n.tolist(), strict=True):
                target[p : p + k] = origin[s : s + k]
        elif total:
            # Byte k of the run copied: its item's first byte in the run, shifted to the destination or source.
            first = np.cumsum(n) - n
            within = np.arange(total, dtype=np.int64)
            out[within + np.repeat(pos - first, n)] = source[within + np.repeat(starts - first, n)]
        pos += n
    return out, offsets


# Pieces longer than this on average are copied a slice at a time: an index per byte (8 bytes of
# memory each) costs more than the Python loop over the rows.
LONG = 32


def _gather(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``[len(starts), width]``: ``width`` bytes of ``data`` from each of ``starts``."""
    if width <= LONG:
        return data[starts[:, None] + np.arange(width)]
    out = np.empty((len(starts), width), dtype=np.uint8)
    target, origin = memoryview(out.reshape(-1)), memoryview(data)
    for i, s in enumerate(starts.tolist()):
        target[i * width : (i + 1) * width] = origin[s : s + width]
    return out


def framed_values(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bytes values (``data`` with ``offsets``, one more than values) framed as a BytesList holds them,
    ``0a len value`` each, one after another: the framed bytes and their offsets."""
    sizes = np.diff(offsets)
    varints, varint_offsets = int64_varints(sizes[:, None])
    widths = np.diff(varint_offsets)
    tags = (np.full((len(sizes), 1), _TAG1[0], dtype=np.uint8), None, 1)
    return _interleave([tags, (varints, varint_offsets[:-1], widths), (data, offsets[:-1], sizes)], 1 + widths + sizes)


def _split_rows(block: np.ndarray) -> list[bytes]:
    buf, width = block.tobytes(), block.shape[1]
    return [buf[i : i + width] for i in range(0, len(buf), width)]


def example(entries: Sequence[bytes]) -> bytes:
    """Serialized Example from its map entries."""
    return _delimited(_TAG1, b"".join(_TAG1 + _len(len(e)) + e for e in entries))


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
