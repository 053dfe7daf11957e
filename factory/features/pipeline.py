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
from factory.features import parsing
from factory.features.tfrecord import compression_of
from factory.features.transform import FeatureTransform

AUTOTUNE = tf.data.AUTOTUNE
MODES = ("train", "eval")


def resolve_files(files: str | Sequence[str]) -> list[str]:
    """Expand globs (and lists of globs/paths) to a sorted list of files; none is an error."""
    patterns = [files] if isinstance(files, str) else list(files)
    if not patterns:
        raise RecordError("no record files given")
    out: list[str] = []
    for pattern in patterns:
        pattern = str(pattern)
        matches = (
            sorted(tf.io.gfile.glob(pattern))
            if any(c in pattern for c in "*?[")
            else ([pattern] if tf.io.gfile.exists(pattern) else [])
        )
        matches = [m for m in matches if not tf.io.gfile.isdir(m)]
        if not matches:
            raise RecordError(f"no record files match {pattern!r}; check the path (write records with `factory write`)")
        out += [m for m in matches if m not in out]
    return out


def _read_files(files: list[str], compression: str | None, shuffle: bool, seed: int | None, cycle_length: int | None):
    names = tf.data.Dataset.from_tensor_slices((files, [compression_of(f, compression) for f in files]))
    if shuffle and len(files) > 1:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if len(files) == 1:
        return tf.data.TFRecordDataset(files[0], compression_type=compression_of(files[0], compression))
    return names.interleave(
        lambda f, c: tf.data.TFRecordDataset(f, compression_type=c),
        cycle_length=cycle_length or min(len(files), 16),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
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
    features = {f.name: values[f.name] for f in spec.features}
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
    for the first corrupt file or record that does not match the spec.
    """
    with_labels = labels and bool(spec.labels)
    checked_spec = parsing.parse_spec(spec, labels=with_labels, checked=True)
    required = [f for f in spec.all(with_labels) if f.required]
    transform = FeatureTransform(spec)
    counts: dict[str, int] = {}

    @tf.function
    def check_batch(serialized):
        parsed = tf.io.parse_example(serialized, checked_spec)
        missing = {f.name: parsing.missing_mask(f, parsed[f.name]) for f in required}
        transform.preprocess(transform.decode(parsed, labels=with_labels), labels=with_labels)
        return missing

    paths = resolve_files(files)
    counts = dict.fromkeys(paths, 0)
    for path, count, batch in record_batches(paths, compression, 256, hint="pass `compression`"):
        try:
            missing = check_batch(batch)
        except tf.errors.OpError as err:
            index = _locate(batch, check_batch)
            raise RecordError(f"{path}, record {count + index}: {explain_error(err)}") from None
        for name, mask in missing.items():
            hits = tf.where(mask).numpy()
            if len(hits):
                raise RecordError(
                    f"{path}, record {count + int(hits[0][0])}: lacks the required feature '{name}' "
                    f"({spec[name].describe()}); write it, or give it a `default` in the feature spec"
                )
        counts[path] = count + int(batch.shape[0])
    return counts


def record_batches(
    paths: Sequence[str], compression: str | None, batch_size: int, hint: str = "pass the compression"
) -> Iterator[tuple[str, int, tf.Tensor]]:
    """``(file, index of the batch's first record in it, batch of serialized records)``, file by file.

    A corrupt or truncated file is a ``RecordError`` naming it and how many records were good.
    """
    for path in paths:
        iterator = iter(
            tf.data.TFRecordDataset(path, compression_type=compression_of(path, compression)).batch(batch_size)
        )
        count = 0
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as err:
                raise RecordError(
                    f"{path}: corrupt or truncated TFRecord file after {count} good records ({first_line(err)}); "
                    f"rewrite it, and check that a compressed file has the .gz/.zz extension or {hint}"
                ) from None
            yield path, count, batch
            count += int(batch.shape[0])


def _locate(batch, fn) -> int:
    """Index of the first record in ``batch`` that makes ``fn`` fail."""
    for i in range(int(batch.shape[0])):
        try:
            fn(batch[i : i + 1])
        except tf.errors.OpError:
            return i
    return 0


def first_line(err: Exception) -> str:
    """The informative line of a TensorFlow error (not "Graph execution error:" or a stack frame)."""
    message = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    noise = ("Graph execution error", "Detected at node", "File ", "[[{{")
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(err).__name__])[0].split(" [Op:")[0][:300]


def explain_error(err: Exception) -> str:
    """Turn TensorFlow's message about a bad record into one that names the feature."""
    message = getattr(err, "message", str(err))
    match = _ASSERT_ERROR.search(message)
    if match:
        return match.group(1).replace("\\'", "'").strip().rstrip(".").strip()
    match = re.search(r"Feature: (\w+) \(data type: (\w+)\) is required but could not be found", message)
    if match:
        return f"records lack the required feature '{match.group(1)}' ({match.group(2)}); write it, or give it a `default` in the feature spec"
    match = _PARSE_ERROR.search(message)
    if match:
        name, detail = match.group(1), match.group(3).strip()
        types = re.search(r"Data type: (\w+) but expected type: (\w+)", detail)
        if types:
            return f"feature '{name}' is stored as {types.group(1)} but the spec reads it as {types.group(2)}"
        return f"feature '{name}' does not match the spec: {detail}"
    return first_line(err)


@contextlib.contextmanager
def explain_errors(spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None) -> Iterator[None]:
    """Turn a TensorFlow error raised while reading ``files`` into a ``RecordError`` naming file, record and feature."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        check_files(spec, files, compression=compression)  # raises with the file and record
        raise RecordError(explain_error(err)) from None
