"""Training and evaluation pipelines generated from the spec, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from factory import FeatureSpec, RecordError
from factory.features.pipeline import explain_errors


def write_digits_like(spec: FeatureSpec, prefix, n: int = 64, shards: int = 2):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(n) % 10
    with spec.writer(prefix, shards=shards) as w:
        w.write_many({"image": images, "label": labels})
    return images, labels


def batches(ds, n):
    return [
        tuple(t.numpy() if not isinstance(t, dict) else {k: v.numpy() for k, v in t.items()} for t in b)
        for b in ds.take(n)
    ]


def test_eval_is_one_deterministic_pass_without_augmentation(tmp_path, digits_like):
    spec = FeatureSpec.from_dict(digits_like)
    images, labels = write_digits_like(spec, tmp_path / "d", n=50, shards=1)
    ds = spec.dataset(str(tmp_path / "d-*"), mode="eval", batch_size=16)
    got = list(ds)
    assert [int(y.shape[0]) for _, y in got] == [16, 16, 16, 2]  # keeps the last partial batch
    x = np.concatenate([f["image"].numpy() for f, _ in got])
    np.testing.assert_allclose(x, images / 255.0, rtol=1e-6)  # preprocessed, not augmented
    assert np.concatenate([y.numpy() for _, y in got]).tolist() == labels.tolist()
    assert got[0][0]["image"].dtype == tf.float32


def test_train_shuffles_repeats_and_augments(tmp_path, digits_like):
    spec = FeatureSpec.from_dict(digits_like)
    images, _ = write_digits_like(spec, tmp_path / "d", n=40)
    ds = spec.dataset(str(tmp_path / "d-*"), mode="train", batch_size=16, seed=3, shuffle_buffer=100)
    seen = batches(ds, 10)  # 160 examples from 40 records: it repeats
    assert all(b[1].shape == (16,) for b in seen)  # drops the remainder
    first_epoch_labels = np.concatenate([b[1] for b in seen])[:40]
    assert sorted(first_epoch_labels.tolist()) != first_epoch_labels.tolist()  # shuffled
    # Augmentation: a training image is rarely identical to any stored image.
    stored = {img.tobytes() for img in images}
    train_images = np.concatenate([b[0]["image"] for b in seen])
    as_stored = np.round(train_images * 255).astype(np.uint8)
    identical = sum(img.tobytes() in stored for img in as_stored)
    assert identical < len(as_stored) * 0.5
    # Without an augment block the training images are exactly the stored ones.
    plain = dict(digits_like)
    plain["features"] = {"image": {k: v for k, v in digits_like["features"]["image"].items() if k != "augment"}}
    plain_spec = FeatureSpec.from_dict(plain)
    x = np.concatenate(
        [b[0]["image"] for b in batches(plain_spec.dataset(str(tmp_path / "d-*"), batch_size=16, seed=3), 3)]
    )
    assert all(img.tobytes() in stored for img in np.round(x * 255).astype(np.uint8))


def test_same_seed_same_batches_other_seed_other_batches(tmp_path, digits_like):
    spec = FeatureSpec.from_dict(digits_like)
    write_digits_like(spec, tmp_path / "d", n=48)

    def run(seed):
        ds = spec.dataset(str(tmp_path / "d-*"), mode="train", batch_size=8, seed=seed, shuffle_buffer=64)
        return batches(ds, 8)

    a, b, c = run(7), run(7), run(8)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa["image"], xb["image"])
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa["image"], xc["image"]) for (xa, _), (xc, _) in zip(a, c, strict=True))


@pytest.mark.parametrize("augment", [True, False])
def test_skip_batches_continues_the_same_sequence_augmentation_included(tmp_path, digits_like, augment):
    raw = dict(digits_like)
    if not augment:
        raw["features"] = {"image": {k: v for k, v in digits_like["features"]["image"].items() if k != "augment"}}
    spec = FeatureSpec.from_dict(raw)
    write_digits_like(spec, tmp_path / "d", n=40, shards=3)

    def run(skip):  # 12 batches of 8 from 40 records: past an epoch, with a reshuffle
        ds = spec.dataset(
            str(tmp_path / "d-*"), mode="train", batch_size=8, seed=5, shuffle_buffer=16, skip_batches=skip
        )
        return batches(ds, 12 - skip)

    whole = run(0)
    for skip in (1, 7):
        rest = run(skip)
        assert len(rest) == 12 - skip
        for (xa, ya), (xb, yb) in zip(whole[skip:], rest, strict=True):
            np.testing.assert_array_equal(xa["image"], xb["image"])
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(whole[0][0]["image"], whole[1][0]["image"])
    with pytest.raises(RecordError, match="skip_batches: expected a non-negative integer, got -1"):
        spec.dataset(str(tmp_path / "d-*"), skip_batches=-1)


@pytest.mark.parametrize("shards", [1, 4], ids=["records", "files"])
def test_shards_are_disjoint_and_cover_every_record(tmp_path, digits_like, shards):
    spec = FeatureSpec.from_dict(digits_like)
    write_digits_like(spec, tmp_path / "d", n=40, shards=shards)  # random images: every row is unique
    files = str(tmp_path / "d-*")

    def rows(shard):  # one epoch, as (label, image bytes)
        ds = spec.dataset(files, mode="eval", batch_size=8, shard=shard)
        return [(int(y), x.tobytes()) for f, ys in ds for x, y in zip(f["image"].numpy(), ys.numpy(), strict=True)]

    parts = [rows((2, i)) for i in range(2)]
    assert all(parts) and sorted(parts[0] + parts[1]) == sorted(rows(None))
    assert not set(parts[0]) & set(parts[1])
    with pytest.raises(RecordError, match=r"shard: expected \(count, index\) with 0 <= index < count, got \(2, 2\)"):
        spec.dataset(files, shard=(2, 2))


@pytest.mark.parametrize(
    ("augment", "check"),
    [
        ({"flip": "horizontal"}, "flip"),
        ({"translate": 2}, "translate"),
        ({"crop": [6, 6]}, "shape"),
        ({"brightness": 0.2}, "brightness"),
        ({"contrast": 0.5}, "shape"),
    ],
)
def test_each_augmentation_changes_images_and_keeps_shape(tmp_path, augment, check):
    spec = FeatureSpec.from_dict(
        {"features": {"image": {"dtype": "uint8", "shape": [8, 8, 1], "encoding": "png", "augment": augment}}}
    )
    image = np.tile(np.arange(8, dtype=np.uint8)[None, :, None] * 30, (8, 1, 1))  # horizontal ramp
    with spec.writer(tmp_path / "r") as w:
        w.write_many({"image": np.stack([image] * 32)})
    out = next(iter(spec.dataset(str(tmp_path / "r-*"), mode="train", batch_size=32, seed=0)))["image"].numpy()
    assert out.shape == (32, 8, 8, 1) and out.dtype == np.uint8
    changed = [not np.array_equal(o, image) for o in out]
    assert sum(changed) > 0, "augmentation did nothing"
    if check == "flip":
        for o, c in zip(out, changed, strict=True):
            np.testing.assert_array_equal(o, image[:, ::-1] if c else image)
        assert sum(changed) < 32  # about half are flipped
    if check == "translate":
        for o in out:  # every row of a shifted ramp is a shifted ramp with zero fill
            assert np.array_equal(o[0], o[-1]) or o.max() <= image.max()
    if check == "brightness":
        deltas = {int(o.astype(int)[2, 2, 0] - image.astype(int)[2, 2, 0]) for o in out}
        assert len(deltas) > 3 and max(abs(d) for d in deltas) <= 0.2 * 255 + 1


def test_weights_and_unlabelled_datasets(tmp_path):
    spec = FeatureSpec.from_dict(
        {
            "features": {"x": {"dtype": "float32", "shape": [2]}},
            "labels": {"y": {"dtype": "float32", "shape": []}, "k": {"dtype": "int64", "shape": [], "num_classes": 3}},
            "weight": {"name": "w", "default": 1.0},
        }
    )
    with spec.writer(tmp_path / "w") as w:
        w.write({"x": [1, 2], "y": 0.5, "k": 2, "w": 3.0})
        w.write({"x": [3, 4], "y": 1.5, "k": 1})
    _, labels, weights = next(iter(spec.dataset(str(tmp_path / "w-*"), mode="eval", batch_size=2)))
    assert set(labels) == {"y", "k"} and labels["k"].dtype == tf.int64 and labels["y"].dtype == tf.float32
    assert weights.numpy().tolist() == [3.0, 1.0]
    only = next(iter(spec.dataset(str(tmp_path / "w-*"), mode="eval", batch_size=2, labels=False)))
    assert set(only) == {"x"}


def test_missing_required_feature_names_feature_file_and_record(tmp_path):
    writer_spec = FeatureSpec.from_dict({"features": {"x": {"dtype": "float32", "shape": [2]}}})
    with writer_spec.writer(tmp_path / "nolabel") as w:
        w.write_many({"x": np.zeros((5, 2), np.float32)})
    spec = FeatureSpec.from_dict(
        {
            "features": {"x": {"dtype": "float32", "shape": [2]}},
            "labels": {"label": {"dtype": "int64", "shape": [], "num_classes": 2}},
        }
    )
    files = str(tmp_path / "nolabel-*")
    ds = spec.dataset(files, mode="eval", batch_size=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Feature: label \(data type: int64\) is required"):
        list(ds)
    with pytest.raises(
        RecordError,
        match=r"nolabel-00000-of-00001.tfrecord, record 0: lacks the required feature 'label' \(int64 \[\]\)",
    ):
        with explain_errors(spec, files):
            list(ds)
    with pytest.raises(RecordError, match=r"record 0: lacks the required feature 'label'"):
        spec.check(files)


def test_wrong_stored_type_names_the_feature(tmp_path):
    path = str(tmp_path / "plain.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for value in ([1.0, 2.0], [1.0, 2.0], [1.0, 2.0, 3.0]):
            ex = tf.train.Example(
                features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=value))})
            )
            writer.write(ex.SerializeToString())
    spec = FeatureSpec.from_dict({"features": {"x": {"dtype": "float32", "shape": [2]}}})
    with pytest.raises(RecordError, match=r"plain.tfrecord, record 2: feature 'x'"):
        spec.check(path)


def test_out_of_vocabulary_in_foreign_records_names_the_feature(tmp_path):
    path = str(tmp_path / "plain.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        ex = tf.train.Example(
            features=tf.train.Features(feature={"c": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"blue"]))})
        )
        writer.write(ex.SerializeToString())
    spec = FeatureSpec.from_dict({"features": {"c": {"dtype": "string", "shape": [], "vocabulary": ["red"]}}})
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"feature \\?'c\\?': a value is not in the vocabulary"):
        list(spec.dataset(path, mode="eval"))
    with pytest.raises(RecordError, match=r"plain.tfrecord, record 0: feature 'c': a value is not in the vocabulary"):
        spec.check(path)


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_file_is_named(tmp_path, damage):
    spec = FeatureSpec.from_dict({"features": {"x": {"dtype": "float32", "shape": [4]}}})
    with spec.writer(tmp_path / "good", shards=2) as w:
        w.write_many({"x": np.ones((20, 4), np.float32)})
    bad = tmp_path / "good-00001-of-00002.tfrecord"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 7] if damage == "truncate" else data[:40] + b"\xff" * 8 + data[48:])
    files = str(tmp_path / "good-*")
    with pytest.raises(
        RecordError, match=r"good-00001-of-00002.tfrecord: corrupt or truncated TFRecord file after \d+ good records"
    ):
        with explain_errors(spec, files):
            list(spec.dataset(files, mode="eval", batch_size=4))


def test_no_matching_files_is_a_clear_error(tmp_path):
    spec = FeatureSpec.from_dict({"features": {"x": {"dtype": "float32", "shape": [4]}}})
    with pytest.raises(RecordError, match=r"no record files match '.*nothing-\*'"):
        spec.dataset(str(tmp_path / "nothing-*"))
    with pytest.raises(RecordError, match="mode: 'test' is not one of train, eval"):
        spec.dataset(str(tmp_path / "nothing-*"), mode="test")
