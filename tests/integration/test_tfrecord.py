"""The TFRecord container written without TensorFlow reads back in TensorFlow, byte for byte."""

from __future__ import annotations

import pytest
import tensorflow as tf

from factory.features.tfrecord import TFRecordFile

RECORDS = [bytes([i % 251]) * (i % 300) for i in range(700)]  # empty records and many lengths


@pytest.mark.parametrize("compression", [None, "GZIP", "ZLIB"])
def test_tensorflow_reads_what_we_write(tmp_path, compression):
    path = tmp_path / "ours.tfrecord"
    ours = TFRecordFile(path, compression)
    ours.write_many(RECORDS[:400])
    for record in RECORDS[400:]:
        ours.write(record)
    ours.close()
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type=compression or "")]
    assert read == RECORDS


def test_uncompressed_files_equal_tensorflows_own(tmp_path):
    ours = TFRecordFile(tmp_path / "ours.tfrecord")
    ours.write_many(RECORDS)
    ours.close()
    with tf.io.TFRecordWriter(str(tmp_path / "theirs.tfrecord")) as theirs:
        for record in RECORDS:
            theirs.write(record)
    assert (tmp_path / "ours.tfrecord").read_bytes() == (tmp_path / "theirs.tfrecord").read_bytes()
