"""TFRecord framing without TensorFlow: lengths, masked CRC-32C, compression names."""

from __future__ import annotations

import struct

import google_crc32c
import pytest

from factory.errors import RecordError
from factory.features.tfrecord import compression_of, frame, frames, masked_crc, normalize_compression


def test_crc32c_is_castagnoli_and_masked_as_tensorflow_masks_it():
    assert google_crc32c.value(b"123456789") == 0xE3069283  # the CRC-32C check value
    crc = 0xE3069283
    assert masked_crc(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_a_frame_is_length_crc_data_crc():
    data = b"hello"
    framed = frame(data)
    length = framed[:8]
    assert struct.unpack("<Q", length)[0] == 5
    assert struct.unpack("<I", framed[8:12])[0] == masked_crc(length)
    assert framed[12:17] == data
    assert struct.unpack("<I", framed[17:])[0] == masked_crc(data)
    assert frames([data, b"", data]) == frame(data) + frame(b"") + frame(data)
    assert frames([]) == b""


@pytest.mark.parametrize(
    ("path", "given", "want"),
    [
        ("a.tfrecord", None, ""),
        ("a.tfrecord.gz", None, "GZIP"),
        ("a.zz", None, "ZLIB"),
        ("a.zlib", None, "ZLIB"),
        ("a.gz", "none", ""),
        ("a.tfrecord", "gzip", "GZIP"),
    ],
)
def test_compression_of_a_file(path, given, want):
    assert compression_of(path, given) == want


def test_an_unknown_compression_is_refused():
    with pytest.raises(RecordError, match="compression: 'lz4' is not one of none, GZIP, ZLIB"):
        normalize_compression("lz4")
