"""Encoding, the atomic sharded writer, and interoperability with plain TensorFlow."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from factory import FeatureSpec, RecordError
from factory.features.images import encode_png

ALL_KINDS = {
    "features": {
        "vec": {"dtype": "float32", "shape": [3]},
        "matrix": {"dtype": "float32", "shape": [2, 2]},
        "count": {"dtype": "int64", "shape": []},
        "pixels": {"dtype": "uint8", "shape": [2, 2, 1]},
        "word": {"dtype": "string", "shape": []},
        "color": {"dtype": "string", "shape": [], "vocabulary": ["red", "green"], "oov_buckets": 2},
        "tokens": {"dtype": "int64", "shape": [None], "max_length": 4, "pad_value": -1},
        "ragged_words": {"dtype": "string", "shape": [None], "ragged": True},
        "seq": {"dtype": "float32", "shape": [None, 2]},
        "opt": {"dtype": "float32", "shape": [2], "default": [7, 8]},
        "png": {"dtype": "uint8", "shape": [4, 5, 3], "encoding": "png"},
        "jpeg": {"dtype": "uint8", "shape": [8, 8, 1], "encoding": "jpeg"},
    },
    "labels": {"y": {"dtype": "float32", "shape": []}},
}


def record(i: int, rng: np.random.Generator) -> dict:
    return {
        "vec": rng.normal(size=3).astype(np.float32),
        "matrix": rng.normal(size=(2, 2)).astype(np.float32),
        "count": int(i * 1000 - 3),
        "pixels": rng.integers(0, 256, size=(2, 2, 1), dtype=np.uint8),
        "word": f"wörd{i}",
        "color": ["red", "green", "blue"][i % 3],
        "tokens": list(range(i % 6)),
        "ragged_words": ["a", "bc"][: i % 3],
        "seq": rng.normal(size=(i % 3, 2)).astype(np.float32),
        "png": rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8),
        "jpeg": np.full((8, 8, 1), 40 * (i % 5), dtype=np.uint8),
        "opt": [float(i), 0.0],
        "y": float(i) / 2,
    }


def test_encode_parse_round_trip_every_kind(tmp_path):
    spec = FeatureSpec.from_dict(ALL_KINDS)
    rng = np.random.default_rng(0)
    records = [record(i, rng) for i in range(7)]
    del records[3]["opt"]  # absent: the default applies
    serialized = [spec.encode(r) for r in records]

    parsed = tf.io.parse_example(tf.constant(serialized), spec.parse_spec())
    for i, r in enumerate(records):
        np.testing.assert_allclose(parsed["vec"][i], r["vec"])
        np.testing.assert_allclose(parsed["matrix"][i], r["matrix"])
        assert parsed["count"][i] == r["count"]
        np.testing.assert_array_equal(parsed["pixels"][i], r["pixels"].astype(np.int64))
        assert parsed["word"][i].numpy().decode() == r["word"]
        assert parsed["ragged_words"][i].numpy().tolist() == [w.encode() for w in r["ragged_words"]]
        np.testing.assert_allclose(parsed["opt"][i], [7, 8] if i == 3 else [i, 0])
        png = tf.io.decode_png(parsed["png"][i]).numpy()
        np.testing.assert_array_equal(png, r["png"])  # PNG is lossless
        jpeg = tf.io.decode_jpeg(parsed["jpeg"][i]).numpy()
        assert np.abs(jpeg.astype(int) - r["jpeg"]).max() <= 2  # JPEG is not
    # Padded variable length: padded to the longest in the batch with the pad value.
    assert parsed["tokens"].shape == (7, 5)
    assert parsed["tokens"][2].numpy().tolist() == [0, 1, -1, -1, -1]


def test_every_kind_survives_the_pipeline(tmp_path):
    spec = FeatureSpec.from_dict(ALL_KINDS)
    rng = np.random.default_rng(1)
    records = [record(i, rng) for i in range(6)]
    with spec.writer(tmp_path / "all", shards=2) as w:
        w.write_many(records)
    features, labels = next(iter(spec.dataset(str(tmp_path / "all-*"), mode="eval", batch_size=6)))
    # Shard 0 holds records 0, 2, 4 and shard 1 holds 1, 3, 5; eval reads file after file.
    order = [0, 2, 4, 1, 3, 5]
    np.testing.assert_allclose(labels.numpy(), [records[i]["y"] for i in order])
    assert features["pixels"].dtype == tf.uint8 and features["png"].dtype == tf.uint8
    np.testing.assert_array_equal(features["png"][1].numpy(), records[2]["png"])
    colors = features["color"].numpy()  # records 0, 2, 4, 1, 3, 5: red, blue, green, green, red, blue
    assert colors[[0, 2, 3, 4]].tolist() == [0, 1, 1, 0]
    assert colors[1] >= 2 and colors[5] >= 2  # 'blue' lands in an OOV bucket
    assert features["tokens"].shape == (6, 4)  # max_length pads and truncates
    assert features["tokens"][5].numpy().tolist() == [0, 1, 2, 3]
    assert isinstance(features["ragged_words"], tf.RaggedTensor)
    assert features["seq"].shape[0] == 6 and features["seq"].shape[2:] == (2,)


BAD_RECORDS = [
    ({"x": [1.0, 2.0]}, "record 0: feature 'y': missing, and it has no default"),
    ({"x": [1.0, 2.0, 3.0], "y": 1}, "record 0: feature 'x': expected float32 [2], got shape [3]"),
    ({"x": ["a", "b"], "y": 1}, "record 0: feature 'x': expected float32 [2], got string array of shape [2]"),
    ({"x": [1.0, 2.0], "y": 1.5}, "record 0: feature 'y': 1.5 is not a whole number (int64 holds whole numbers)"),
    ({"x": [1.0, 2.0], "y": 1, "c": "purple"}, "record 0: feature 'c': 'purple' is not in the vocabulary"),
    ({"x": [1.0, 2.0], "y": 1, "z": 3}, "record 0: unknown feature 'z'"),
    (
        {"x": [1.0, 2.0], "y": 1, "img": np.zeros((3, 3, 1), np.uint8)},
        "record 0: feature 'img': expected uint8 [4, 4, 1] (png)",
    ),
    (
        {"x": [1.0, 2.0], "y": 1, "img": encode_png(np.zeros((3, 3, 1), np.uint8))},
        "record 0: feature 'img': expected an image of 4x4 pixels, got a PNG image of 3x3",
    ),
    (
        {"x": [1.0, 2.0], "y": 1, "img": b"GIF89a..."},
        "record 0: feature 'img': expected a PNG image of 4x4 pixels, got 9 bytes that are neither PNG nor JPEG (or pass a uint8 array",
    ),
    (
        {"x": [1.0, 2.0], "y": 1, "px": [[300]]},
        "record 0: feature 'px': 300 at [0, 0] is outside the uint8 range 0..255",
    ),
]
BAD_RECORD_SPEC = {
    "features": {
        "x": {"dtype": "float32", "shape": [2]},
        "c": {"dtype": "string", "shape": [], "vocabulary": ["red"], "default": "red"},
        "img": {"dtype": "uint8", "shape": [4, 4, 1], "encoding": "png"},
        "px": {"dtype": "uint8", "shape": [1, 1], "default": 0},
    },
    "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
}


@pytest.mark.parametrize(("bad", "expected"), BAD_RECORDS, ids=[e[10:40] for _, e in BAD_RECORDS])
def test_writer_rejects_bad_records_naming_index_and_feature(tmp_path, bad, expected):
    spec = FeatureSpec.from_dict(BAD_RECORD_SPEC)
    good = {"x": [0.5, 0.5], "y": 0, "img": np.zeros((4, 4, 1), np.uint8)}
    bad = {**{"img": np.zeros((4, 4, 1), np.uint8)}, **bad}
    with pytest.raises(RecordError) as info, spec.writer(tmp_path / "out") as w:
        w.write(good)
        w.write(bad)
    assert expected.replace("record 0", "record 1") in str(info.value)
    assert not glob.glob(str(tmp_path / "*")), "a failed write must leave nothing behind"


def test_column_writer_reports_the_bad_row(tmp_path):
    spec = FeatureSpec.from_dict({"features": {"px": {"dtype": "uint8", "shape": [2]}}})
    columns = {"px": np.array([[1, 2], [3, 4], [5, 999]])}
    with pytest.raises(RecordError, match=r"record 2: feature 'px': 999 at \[1\] is outside the uint8 range 0\.\.255"):
        with spec.writer(tmp_path / "out") as w:
            w.write_many(columns)
    pair = FeatureSpec.from_dict(
        {"features": {"a": {"dtype": "int64", "shape": []}, "b": {"dtype": "int64", "shape": []}}}
    )
    with pytest.raises(RecordError, match=r"columns have different lengths \('a': 2, 'b': 1\)"):
        with pair.writer(tmp_path / "out2") as w:
            w.write_many({"a": [1, 2], "b": [1]})


def test_shard_names_compression_and_round_robin(tmp_path):
    spec = FeatureSpec.from_dict({"features": {"i": {"dtype": "int64", "shape": []}}})
    for compression, suffix in ((None, ".tfrecord"), ("GZIP", ".tfrecord.gz"), ("zlib", ".tfrecord.zz")):
        prefix = tmp_path / f"c{compression}" / "train"
        with spec.writer(prefix, shards=3, compression=compression) as w:
            w.write_many({"i": np.arange(10)})
        names = sorted(os.listdir(prefix.parent))
        assert names == [f"train-0000{k}-of-00003{suffix}" for k in range(3)]
        ds = spec.dataset(str(prefix) + "-*", mode="eval", batch_size=100)
        values = next(iter(ds))["i"].numpy().tolist()
        assert sorted(values) == list(range(10))
    with pytest.raises(RecordError, match="compression: 'LZ4' is not one of none, GZIP, ZLIB"):
        spec.writer(tmp_path / "x", compression="LZ4")
    with pytest.raises(RecordError, match="shards: expected a positive integer"):
        spec.writer(tmp_path / "x", shards=0)


def test_existing_shards_are_protected_and_replaced_only_on_success(tmp_path):
    spec = FeatureSpec.from_dict({"features": {"i": {"dtype": "int64", "shape": []}}})
    with spec.writer(tmp_path / "d", shards=4) as w:
        w.write_many({"i": np.arange(8)})
    before = {p: open(p, "rb").read() for p in glob.glob(str(tmp_path / "d-*"))}
    with pytest.raises(RecordError, match="already exists.*overwrite=True"):
        spec.writer(tmp_path / "d", shards=2)
    with pytest.raises(RecordError), spec.writer(tmp_path / "d", shards=2, overwrite=True) as w:
        w.write({"i": 1})
        w.write({"i": "oops"})
    assert {p: open(p, "rb").read() for p in glob.glob(str(tmp_path / "d-*"))} == before
    with spec.writer(tmp_path / "d", shards=2, overwrite=True) as w:
        w.write_many({"i": np.arange(3)})
    assert sorted(os.listdir(tmp_path)) == ["d-00000-of-00002.tfrecord", "d-00001-of-00002.tfrecord"]


def test_a_killed_writer_leaves_no_partial_shard(tmp_path):
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from factory import FeatureSpec
        spec = FeatureSpec.from_dict({{"features": {{"x": {{"dtype": "float32", "shape": [64]}}}}}})
        w = spec.writer({str(tmp_path / "big")!r}, shards=2)
        w.write_many({{"x": np.zeros((5000, 64), np.float32)}})
        print("written", flush=True)
        sys.stdin.read()  # wait to be killed
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert glob.glob(str(tmp_path / "big-*")) == []  # no visible shard
    leftovers = glob.glob(str(tmp_path / ".big-*"))
    assert leftovers and all(".partial-" in p for p in leftovers)
    # The next writer to the same prefix removes the dead writer's partial files.
    spec = FeatureSpec.from_dict({"features": {"x": {"dtype": "float32", "shape": [64]}}})
    with spec.writer(tmp_path / "big", shards=2) as w:
        w.write({"x": np.ones(64, np.float32)})
    assert sorted(os.listdir(tmp_path)) == ["big-00000-of-00002.tfrecord", "big-00001-of-00002.tfrecord"]


def test_spec_records_are_readable_by_plain_tensorflow(tmp_path):
    spec = FeatureSpec.from_yaml("conf/features/digits.yaml")
    images = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 1), dtype=np.uint8)
    with spec.writer(tmp_path / "d") as w:
        w.write_many({"image": images, "label": np.arange(5)})
    hand_written = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    ds = tf.data.TFRecordDataset(str(tmp_path / "d-00000-of-00001.tfrecord")).batch(5)
    parsed = tf.io.parse_example(next(iter(ds)), hand_written)
    decoded = np.stack([tf.io.decode_png(b).numpy() for b in parsed["image"]])
    np.testing.assert_array_equal(decoded, images)
    assert parsed["label"].numpy().tolist() == [0, 1, 2, 3, 4]
    # And record by record through the protobuf API.
    raw = next(iter(tf.data.TFRecordDataset(str(tmp_path / "d-00000-of-00001.tfrecord"))))
    example = tf.train.Example.FromString(raw.numpy())
    assert example.features.feature["label"].int64_list.value == [0]


def test_plain_tensorflow_records_are_readable_by_the_spec(tmp_path):
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "x": {"dtype": "float32", "shape": [2], "preprocess": {"normalize": {"mean": [1, 2], "std": [2, 4]}}},
                "kind": {"dtype": "string", "shape": [], "vocabulary": ["a", "b"]},
                "image": {"dtype": "uint8", "shape": [2, 2, 3], "encoding": "png"},
            },
            "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 3}},
        }
    )
    path = str(tmp_path / "plain.tfrecord")
    pixels = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(3):
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[3.0, 6.0 + i])),
                        "kind": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"ab"[i % 2 : i % 2 + 1]])),
                        "image": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[tf.io.encode_png(pixels).numpy()])
                        ),
                        "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                    }
                )
            )
            writer.write(example.SerializeToString())
    features, labels = next(iter(spec.dataset(path, mode="eval", batch_size=8)))
    np.testing.assert_allclose(features["x"].numpy(), [[1.0, 1.0], [1.0, 1.25], [1.0, 1.5]])
    assert features["kind"].numpy().tolist() == [0, 1, 0]
    np.testing.assert_array_equal(features["image"][1].numpy(), pixels)
    assert labels.numpy().tolist() == [0, 1, 2]
