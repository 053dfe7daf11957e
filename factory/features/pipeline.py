"""Training and evaluation ``tf.data`` pipelines generated from the feature spec.

The shape of the pipeline follows what is fastest on CPU: interleave the
files, (train: shuffle and repeat), batch, then parse the whole batch with one
vectorised ``parse_example`` and decode/augment/preprocess in the same parallel
map, then prefetch. Every map is ``deterministic=True`` so a seeded run repeats
itself exactly, and augmentation draws from stateless random ops seeded with
``(seed, batch index)``, so there is no random state to checkpoint.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec

from factory.errors import RecordError
from factory.features import parsing, wire
from factory.features.reading import (
    count_records,
    first_line,
    lacks,
    record_batches,
    resolve_files,
    tf_free,
)
from factory.features.tfrecord import compression_of
from factory.features.transform import FeatureTransform

AUTOTUNE = tf.data.AUTOTUNE
MODES = ("train", "eval")


def _read_files(files: list[str], compression: str | None, shuffle: bool, seed: int | None, cycle_length: int | None):
    names = tf.data.Dataset.from_tensor_slices((files, [compression_of(f, compression) for f in files]))
    if shuffle and len(files) > 1:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if len(files) == 1:
        return tf.data.TFRecordDataset(files[0], compression_type=compression_of(files[0], compression))
    # Local files are read in turn: reading is cheap, and parallel readers handing every record between
    # threads cost more than they save on a few cores (measured: a train pipeline at 0.6x a sequential
    # reader). Remote files (gs://, s3://...) are read in parallel to hide their latency. The order of the
    # records is the same either way.
    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": True} if any("://" in f for f in files) else {}
    return names.interleave(
        lambda f, c: tf.data.TFRecordDataset(f, compression_type=c),
        cycle_length=cycle_length or min(len(files), 16),
        block_length=1,
        **parallel,
    )


def dataset(
    spec: FeatureSpec,
    files: str | Sequence[str],
    mode: str = "train",
    batch_size: int = 32,
    seed: int | None = None,
    shuffle_buffer: int = 10_000,
    compression: str | None = None,
    labels: bool = True,
    repeat: bool | None = None,
    drop_remainder: bool | None = None,
    cycle_length: int | None = None,
    transform: FeatureTransform | None = None,
    skip_batches: int = 0,
    shard: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """Batches of ``(features, labels)``, or ``(features, labels, weights)`` when the spec declares a weight.

    ``features`` is a dict keyed by feature name, already preprocessed (what
    the network sees). ``labels`` is the label tensor when the spec has one
    label, a dict by name when it has several; with ``labels=False`` (or a spec
    without labels) the elements are the features dict alone.

    - ``mode="train"``: shuffles the file order and the records (buffer
      ``shuffle_buffer``), repeats forever, drops the last partial batch and
      applies the spec's augmentation. Defaults ``repeat=True``, ``drop_remainder=True``.
    - ``mode="eval"``: one pass, file after file, keeps the last partial batch,
      no augmentation. Defaults ``repeat=False``, ``drop_remainder=False``.
    - ``seed`` fixes the shuffling and the augmentation (None: a fresh random seed).
    - ``compression``: None infers each file's from its extension.
    - ``skip_batches``: start after that many batches, skipped before they are parsed (cheap:
      the records are read but not decoded). With the same ``seed`` the rest of the sequence,
      augmentation included, is the same as without skipping: this is how training resumes.
    - ``shard=(count, index)``: read only part ``index`` of ``count`` disjoint parts (one per
      input pipeline of a multi-worker run): whole files when there are at least ``count``
      files, else every ``count``-th record.
    """
    if mode not in MODES:
        raise RecordError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RecordError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not isinstance(skip_batches, int) or skip_batches < 0:
        raise RecordError(f"skip_batches: expected a non-negative integer, got {skip_batches!r}")
    train = mode == "train"
    repeat = train if repeat is None else repeat
    drop_remainder = train if drop_remainder is None else drop_remainder
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    with_labels = labels and bool(spec.labels)
    file_list = resolve_files(files)
    record_shard = None
    if shard is not None:
        count, index = shard
        if not (isinstance(count, int) and isinstance(index, int) and 0 <= index < count):
            raise RecordError(f"shard: expected (count, index) with 0 <= index < count, got {shard!r}")
        if count > 1 and len(file_list) >= count:
            file_list = file_list[index::count]
        elif count > 1:
            record_shard = (count, index)
    transform = transform or FeatureTransform(spec)
    features_spec = parsing.parse_spec(spec, labels=with_labels)
    augment = train and any(f.augment is not None for f in spec.features)

    compressions = {compression_of(f, compression) for f in file_list}
    if not train and len(compressions) == 1:
        # One pass in file order through a single reader: no per-record hand-off between
        # interleave threads, which halves throughput on a small machine.
        ds = tf.data.TFRecordDataset(file_list, compression_type=compressions.pop())
    else:
        ds = _read_files(file_list, compression, shuffle=train, seed=seed, cycle_length=cycle_length)
    if record_shard:
        ds = ds.shard(*record_shard)
    if train:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def parse(index, serialized):
        # The plain parse spec: a record that lacks a required feature fails with TensorFlow's
        # "Feature: x ... is required but could not be found", which names the feature;
        # `explain_errors` / `check_files` then name the file and the record too.
        parsed = tf.io.parse_example(serialized, features_spec)
        raw = transform.decode(parsed, labels=with_labels)
        if augment:
            raw = transform.augment(raw, tf.stack([tf.constant(seed, tf.int64), index]))
        return _split(spec, transform.preprocess(raw, labels=with_labels), with_labels)

    if augment:  # the batch index seeds the augmentation
        ds = ds.enumerate()
    if skip_batches:
        ds = ds.skip(skip_batches)
    if augment:
        ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda s: parse(tf.constant(0, tf.int64), s), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def _split(spec: FeatureSpec, values: dict, with_labels: bool):
    features = {name: values[name] for name in spec.input_names}
    if not with_labels:
        return features
    labels = values[spec.labels[0].name] if len(spec.labels) == 1 else {f.name: values[f.name] for f in spec.labels}
    if spec.weight is not None:
        return features, labels, values[spec.weight.name]
    return features, labels


# -- checking files and explaining failures ---------------------------------------------------

_PARSE_ERROR = re.compile(r"Key: (\w+), Index: (\d+)\.\s+(.*?)(?:\n|\t|$)")
_ASSERT_ERROR = re.compile(r"assertion failed: \[(.*?)\]")


def check_files(
    spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None, labels: bool = True
) -> dict[str, int]:
    """Read every record of every file; return ``{file: record count}``.

    Raises ``RecordError`` naming the file, the record index and the feature
    for the first corrupt file or record that does not match the spec; a record
    that lacks a required feature also lists the features it holds.
    """
    with_labels = labels and bool(spec.labels)
    checked_spec = parsing.parse_spec(spec, labels=with_labels, checked=True)
    required = [f for f in spec.all(with_labels) if f.required]
    transform = FeatureTransform(spec)

    @tf.function
    def parse_batch(serialized):
        parsed = tf.io.parse_example(serialized, checked_spec)
        return parsed, {f.name: parsing.missing_mask(f, parsed[f.name]) for f in required}

    # Decoding runs only on records that hold every required feature: the stand-in value of a
    # missing image is no image, and decoding it would hide the real problem.
    @tf.function
    def decode_batch(parsed):
        transform.preprocess(transform.decode(parsed, labels=with_labels), labels=with_labels)

    def check_batch(serialized):
        decode_batch(parse_batch(serialized)[0])

    paths = resolve_files(files)
    counts = dict.fromkeys(paths, 0)
    for path, count, batch in record_batches(paths, compression, 256, hint="pass `compression`"):
        try:
            parsed, missing = parse_batch(batch)
            first = min(
                ((int(hits[0][0]), name) for name, mask in missing.items() if len(hits := tf.where(mask).numpy())),
                default=None,
            )
            if first is not None:
                index, name = first
                held = sorted(set(wire.feature_keys(batch[index].numpy())))
                raise lacks(path, count + index, name, spec[name].describe(), held)
            decode_batch(parsed)
        except tf.errors.OpError as err:
            index = _locate(batch, check_batch)
            raise RecordError(f"{path}, record {count + index}: {explain_error(err)}") from None
        counts[path] = count + int(batch.shape[0])
    return counts


def _locate(batch, fn) -> int:
    """Index of the first record in ``batch`` that makes ``fn`` fail."""
    for i in range(int(batch.shape[0])):
        try:
            fn(batch[i : i + 1])
        except tf.errors.OpError:
            return i
    return 0


def explain_error(err: Exception) -> str:
    """Turn TensorFlow's message about a bad record into one that names the feature."""
    message = getattr(err, "message", str(err))
    match = _ASSERT_ERROR.search(message)
    if match:
        return tf_free(match.group(1).replace("\\'", "'")).rstrip(".").strip()
    match = re.search(r"Feature: (\w+) \(data type: (\w+)\) is required but could not be found", message)
    if match:
        return (
            f"records lack the required feature '{match.group(1)}' ({match.group(2)}); write it, or say what a "
            "missing value becomes in the feature spec (`missing: {fill: ...}`, or a `default`)"
        )
    match = _PARSE_ERROR.search(message)
    if match:
        name, detail = match.group(1), match.group(3).strip()
        types = re.search(r"Data type: (\w+) but expected type: (\w+)", detail)
        if types:
            return f"feature '{name}' is stored as {types.group(1)} but the spec reads it as {types.group(2)}"
        return f"feature '{name}' does not match the spec: {tf_free(detail)}"
    return first_line(err)


@contextlib.contextmanager
def explain_errors(
    spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None, key: str | None = None
) -> Iterator[None]:
    """Turn a TensorFlow error raised while reading ``files`` into a one-line ``RecordError``.

    A bad record: the message names the file, the record and the feature. Input
    that ends (``OutOfRangeError``) because the files hold no records: the files
    and ``key``, the config key that names them (e.g. ``data.train``; default
    None: not named). TensorFlow's internal names never reach the message.
    """
    where = f"{key}: " if key else ""
    try:
        yield
    except tf.errors.OutOfRangeError as err:
        paths = resolve_files(files)
        if any(count_records(p, compression) for p in paths):
            raise RecordError(
                f"{where}the input ended early ({first_line(err)}); the records hold too few examples for "
                "the pipeline (each worker of a multi-worker run reads only its part of them)"
            ) from None
        them = paths[0] if len(paths) == 1 else f"{', '.join(paths)} ({len(paths)} files)"
        fix = f"point {key} at files that hold records" if key else "read other files"
        raise RecordError(
            f"{where}the records in {them} hold no examples; write records into "
            f"{'it' if len(paths) == 1 else 'them'} (`factory write`), or {fix}"
        ) from None
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        check_files(spec, files, compression=compression)  # raises with the file and record
        raise RecordError(where + explain_error(err)) from None
