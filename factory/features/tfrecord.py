"""The TFRecord container, written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian)
    uint32 masked CRC-32C of the length bytes
    bytes  data[length]
    uint32 masked CRC-32C of the data

(``tensorflow/core/lib/io/record_writer.cc``). ``GZIP`` and ``ZLIB`` compression
wrap the whole stream, as ``tf.io.TFRecordOptions`` does, so ``tf.data.TFRecordDataset``
reads these files like its own. CRC-32C comes from ``google-crc32c`` (C code).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Sequence
from itertools import chain
from typing import BinaryIO

import google_crc32c
import numpy as np

from factory.errors import RecordError

# The compression names TFRecordOptions takes, by the suffix a shard gets.
COMPRESSION_SUFFIX = {None: "", "GZIP": ".gz", "ZLIB": ".zz"}


def normalize_compression(compression: str | None) -> str | None:
    """``None``/``""``/``"none"`` -> None; ``"gzip"`` -> ``"GZIP"``; anything else is an error."""
    if compression is None or str(compression).strip().lower() in ("", "none"):
        return None
    value = str(compression).strip().upper()
    if value not in ("GZIP", "ZLIB"):
        raise RecordError(f"compression: {compression!r} is not one of none, GZIP, ZLIB")
    return value


def compression_of(path: str, compression: str | None = None) -> str:
    """The ``TFRecordDataset`` compression of one file: ``compression`` when given, else from
    the file's extension (``.gz`` GZIP, ``.zz`` or ``.zlib`` ZLIB, else none: ``""``)."""
    if compression is not None:
        return normalize_compression(compression) or ""
    if path.endswith(COMPRESSION_SUFFIX["GZIP"]):
        return "GZIP"
    if path.endswith((COMPRESSION_SUFFIX["ZLIB"], ".zlib")):
        return "ZLIB"
    return ""


_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _header(length: int) -> bytes:
    """The 12 bytes before a record of ``length`` bytes (cached: record sizes repeat)."""
    header = _HEADERS.get(length)
    if header is None:
        packed = _LENGTH.pack(length)
        header = _HEADERS[length] = packed + _CRC.pack(masked_crc(packed))
    return header


_HEADERS: dict[int, bytes] = {}


def frame(data: bytes) -> bytes:
    """One record, framed."""
    return _header(len(data)) + data + _CRC.pack(masked_crc(data))


def frames(records: Sequence[bytes]) -> bytes:
    """Many records, framed and joined: Python runs one call per record (its cached header)."""
    if not records:
        return b""
    crcs = np.fromiter(map(google_crc32c.value, records), dtype=np.uint64, count=len(records))
    masked = ((((crcs >> 15) | (crcs << 17)) + _MASK_DELTA) & 0xFFFFFFFF).tolist()
    headers = map(_header, map(len, records))
    return b"".join(chain.from_iterable(zip(headers, records, map(_CRC.pack, masked), strict=True)))


class _ZlibFile:
    """A write-only file that deflates into a zlib stream (TFRecord's ``ZLIB``)."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._deflate = zlib.compressobj()

    def write(self, data: bytes) -> None:
        self._raw.write(self._deflate.compress(data))

    def close(self) -> None:
        self._raw.write(self._deflate.flush())


class TFRecordFile:
    """Writes framed records to ``path``; ``compression`` is None, ``"GZIP"`` or ``"ZLIB"``.

    ``close()`` flushes the file to the disk (``fsync``): a file closed without error
    is complete, which is what ``RecordWriter``'s journal relies on. It may be called twice.
    """

    def __init__(self, path: str | os.PathLike, compression: str | None = None):
        compression = normalize_compression(compression)
        self._raw: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        if compression == "GZIP":
            self._file: BinaryIO | _ZlibFile = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0)
        elif compression == "ZLIB":
            self._file = _ZlibFile(self._raw)
        else:
            self._file = self._raw
        self._closed = False

    def write(self, record: bytes) -> None:
        self._file.write(frame(record))

    def write_many(self, records: Sequence[bytes]) -> None:
        self._file.write(frames(records))

    def write_framed(self, data: bytes) -> None:
        """Records framed already (``frames``)."""
        self._file.write(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._file is not self._raw:  # the compressor's trailer; GzipFile leaves the file it wraps open
                self._file.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
        finally:
            self._raw.close()
