"""Which record files to read, reading them, and what TensorFlow says when that fails.

``resolve_files`` expands globs and refuses incomplete shard sets;
``record_batches`` reads files batch by batch with a clear error for a corrupt
one; ``record_keys`` names the features one stored record holds; ``first_line``
and ``tf_free`` keep TensorFlow's internals (function and node names, op names)
out of messages for users.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import tensorflow as tf

from factory.errors import RecordError
from factory.features import wire
from factory.features.shards import check_complete
from factory.features.tfrecord import compression_of

# TensorFlow's internal names in an error message: `{{function_node __inference_f_12}}`,
# `[[{{node IteratorGetNext}}]]`, ` [Op:IteratorGetNext]`, `name: ` suffixes of op errors.
_TF_INTERNALS = re.compile(
    r"\s*\[\[\{\{node [^}]*\}\}\]\]|\{\{function_node [^}]*\}\}\s*|\s*\{\{node [^}]*\}\}|\s*\[Op:[^\]]*\](?: name: \S*)?"
)


def resolve_files(files: str | Sequence[str]) -> list[str]:
    """Expand globs (and lists of globs/paths) to a sorted list of files.

    ``RecordError`` when nothing matches, or when the files hold some but not all shards
    of a ``-of-NNNNN`` set (``factory.features.shards.check_complete``).
    """
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
    check_complete(out, exists=tf.io.gfile.exists)
    return out


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


def count_records(path: str, compression: str | None = None) -> int:
    """How many records ``path`` holds (one pass; ``RecordError`` for a corrupt file)."""
    return sum(int(batch.shape[0]) for _, _, batch in record_batches([path], compression, 4096))


def record_keys(path: str, index: int, compression: str | None = None) -> list[str]:
    """The feature names record ``index`` of ``path`` holds, sorted ([] if it cannot be read)."""
    ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path, compression)).skip(index).take(1)
    try:
        return sorted(set(wire.feature_keys(next(iter(ds)).numpy())))
    except (StopIteration, ValueError, tf.errors.OpError):
        return []


def lacks(path: str, index: int, name: str, described: str, held: Sequence[str]) -> RecordError:
    """The error for record ``index`` of ``path`` lacking the required feature ``name``, naming what it holds."""
    holds = f"it holds: {', '.join(held)}" if held else "it holds no features"
    return RecordError(
        f"{path}, record {index}: lacks the required feature '{name}' ({described}); {holds}. "
        "Write the feature into the records, or say what a missing value becomes in the feature spec "
        "(`missing: {fill: ...}`, or a `default`)"
    )


def tf_free(text: str) -> str:
    """``text`` without TensorFlow's function, node and op names."""
    return _TF_INTERNALS.sub("", text).strip()


def first_line(err: Exception) -> str:
    """The informative line of a TensorFlow error (not "Graph execution error:", a stack frame or node names)."""
    message = getattr(err, "message", None) or str(err)
    lines = [tf_free(line) for line in message.strip().splitlines()]
    lines = [line for line in lines if line]
    noise = ("Graph execution error", "Detected at node", "File ", "[[{{")
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(err).__name__])[0][:300]
