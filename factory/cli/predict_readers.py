"""The inputs of ``factory predict``, read and predicted batch by batch: ``batches``.

JSON Lines, CSV and NPZ files are read with the feature spec stored in the
export's manifest and go through ``serving_default``; TFRecord files go
through ``tf_example`` as they are. Each batch is checked before TensorFlow
runs it, and a problem names the file, the row or record, and the feature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from factory.cli.bad_rows import BadRows
from factory.cli.predict_images import checked_image, decode_images, image_value
from factory.features.feature import Feature
from factory.features.sources import open_source
from factory.features.spec import FeatureSpec
from factory.serving.predictor import PredictError, Predictor

# (the input positions of the batch's records, from 0, and their outputs)
Batches = Iterator[tuple[list[int], dict[str, np.ndarray]]]


def batches(
    predictor: Predictor,
    path: str,
    kind: str,
    batch_size: int,
    ignore_unknown: bool = False,
    compression: str | None = None,
    bad: BadRows | None = None,
) -> Batches:
    """``(input positions, outputs)`` for each ``batch_size`` records of ``path``.

    ``kind`` is ``jsonl``, ``csv``, ``npz`` or ``tfrecord``. ``ignore_unknown``
    (default False) drops columns/keys the spec does not declare; ``compression``
    (TFRecord only; default None) infers it from each file's extension. ``bad``
    decides what a bad row does (default: it stops the command); with
    ``--skip-bad-rows`` it is left out, and the positions of the others stay theirs.
    """
    bad = bad or BadRows(path, skip=False)
    if kind == "tfrecord":
        return _tfrecord_batches(predictor, path, batch_size, compression, bad)
    if kind == "npz":
        return _npz_batches(predictor, path, batch_size, ignore_unknown, bad)
    return _text_batches(predictor, path, kind, batch_size, ignore_unknown, bad)


def _reader_spec(spec: FeatureSpec) -> FeatureSpec:
    """The spec the CSV/JSON Lines/NPZ readers get: they only convert values here.

    Every feature is optional to them (an empty default), so a missing one is
    reported by the predictor, which knows what the export takes. Image fields,
    labels and the weight are passed through untouched: an image may be a file,
    base64 data or pixels, and labels are not used.
    """

    def passed(f: Feature) -> Feature:
        return replace(
            f,
            dtype="string",
            shape=(),
            encoding=None,
            vocabulary=None,
            oov_buckets=0,
            default=(),
            preprocess=None,
            augment=None,
        )

    features = tuple(passed(f) if f.encoding else replace(f, default=()) for f in spec.features)
    others = tuple(passed(f) for f in spec.all() if f.role != "feature")
    return FeatureSpec(features=features, labels=others)


# -- JSON Lines and CSV ---------------------------------------------------------------------------


def _text_batches(
    predictor: Predictor, path: str, kind: str, batch_size: int, ignore_unknown: bool, bad: BadRows
) -> Batches:
    base_dir = Path(path).expanduser().resolve().parent
    with open_source(path, _reader_spec(predictor.spec), format=kind, ignore_unknown=ignore_unknown) as source:
        rows: list[tuple[str, dict]] = []
        indexes: list[int] = []
        for index, row in enumerate(source):
            if row.error is not None:
                bad.add(row.where, row.error)
                continue
            rows.append((row.where, row.record))
            indexes.append(index)
            if len(rows) == batch_size:
                yield _predict_rows(predictor, rows, indexes, path, base_dir, bad)
                rows, indexes = [], []
        if rows:
            yield _predict_rows(predictor, rows, indexes, path, base_dir, bad)


def _predict_rows(
    predictor: Predictor, rows: list, indexes: list[int], path: str, base_dir: Path, bad: BadRows
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Predict one batch of rows; skipping bad rows, each is first checked alone."""
    if bad.skip:
        good = []
        for (where, record), index in zip(rows, indexes, strict=True):
            try:
                predictor.check(_columns(predictor, [(where, record)], path, base_dir))
            except PredictError as err:
                bad.add(where, _reason(err, path, where))
                continue
            good.append(((where, record), index))
        rows, indexes = [r for r, _ in good], [i for _, i in good]
        if not rows:
            return [], {}
    return indexes, predictor.predict(_columns(predictor, rows, path, base_dir))


def _reason(err: Exception, path: str, where: str) -> str:
    """The message of ``err`` without the file and row it starts with (``BadRows`` names them)."""
    text = str(err)
    for prefix in (f"{path} {where}: ", f"{path}: "):
        text = text.removeprefix(prefix)
    return text


def _columns(predictor: Predictor, rows: list[tuple[str, dict]], source: str, base_dir: Path) -> dict[str, np.ndarray]:
    """One batch of rows as checked arrays, one per input; an error names the row and the feature."""
    declared = {f.name: f for f in predictor.spec.features}
    columns = {}
    for name, info in predictor.inputs.items():
        feature = declared.get(name)
        is_image = feature is not None and bool(feature.encoding)
        default = predictor.default(name)
        values: list[np.ndarray | None] = []
        encoded: list[tuple[int, bytes]] = []  # decoded together, in one call
        for i, (where, record) in enumerate(rows):
            value = record.get(name)
            try:
                if is_image and value is not None:
                    value = image_value(feature, value, base_dir)
                    if isinstance(value, bytes):
                        encoded.append((i, value))
                        values.append(None)
                        continue
                if value is None:
                    value = default
                    if value is None:
                        also = " (pixels, or an image file path or base64 PNG/JPEG data)" if is_image else ""
                        raise PredictError(
                            f"missing feature '{name}': expected {info.describe(batched=False)}{also}, got nothing; "
                            f"the export takes {predictor.describe_inputs()}"
                        )
                values.append(
                    info.convert(value, batched=False, default=default, missing=predictor.takes_missing(name))
                )
            except PredictError as err:
                raise PredictError(f"{source} {where}: {err}") from None
        if encoded:
            pixels = decode_images(feature, [data for _, data in encoded])
            for (i, _), image in zip(encoded, pixels, strict=True):
                values[i] = image
        columns[name] = _stack(info.shape, values, feature)
    return columns


def _stack(shape: tuple, values: list[np.ndarray], feature: Feature | None) -> np.ndarray:
    """Rows into one batch; variable-length rows are padded to the longest, as parsed records are."""
    if not shape or shape[0] is not None or feature is None:
        return np.stack(values)
    longest = max(len(v) for v in values)
    pad = feature.pad_value.encode() if isinstance(feature.pad_value, str) else feature.pad_value
    out = np.full((len(values), longest, *shape[1:]), pad, dtype=values[0].dtype)
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out


# -- NPZ ------------------------------------------------------------------------------------------


def _npz_batches(predictor: Predictor, path: str, batch_size: int, ignore_unknown: bool, bad: BadRows) -> Batches:
    with open_source(path, _reader_spec(predictor.spec), format="npz", ignore_unknown=ignore_unknown) as source:
        columns = {k: v for k, v in source.columns.items() if k not in predictor.ignored}
        rows = source.rows
    for lo in range(0, rows, batch_size):
        indexes = list(range(lo, min(lo + batch_size, rows)))
        if bad.skip:
            indexes = [i for i in indexes if _npz_row_ok(predictor, columns, i, path, bad)]
            if not indexes:
                continue
        try:
            chunk = _npz_chunk(predictor, {k: v[indexes] for k, v in columns.items()}, indexes)
            yield indexes, predictor.predict(predictor.check(chunk, start=lo))
        except PredictError as err:
            raise PredictError(f"{path}: {err}") from None


def _npz_chunk(predictor: Predictor, chunk: dict[str, np.ndarray], indexes: list[int]) -> dict[str, np.ndarray]:
    """The records ``indexes`` of an NPZ file, encoded images decoded."""
    for name, values in chunk.items():
        feature = predictor.spec[name]
        if feature.encoding and values.dtype.kind in "SO":  # encoded images: bytes per record
            data = []
            for i, item in zip(indexes, values, strict=True):
                try:
                    data.append(checked_image(feature, bytes(item), "the value"))
                except (PredictError, TypeError) as err:
                    raise PredictError(f"record {i}: {err}") from None
            chunk[name] = decode_images(feature, data)
    return chunk


def _npz_row_ok(predictor: Predictor, columns: dict[str, np.ndarray], i: int, path: str, bad: BadRows) -> bool:
    try:
        predictor.check(_npz_chunk(predictor, {k: v[i : i + 1] for k, v in columns.items()}, [i]), start=i)
    except PredictError as err:
        bad.add(f"record {i}", str(err).removeprefix(f"record {i}: "))
        return False
    return True


# -- TFRecord -------------------------------------------------------------------------------------


def _tfrecord_batches(
    predictor: Predictor, pattern: str, batch_size: int, compression: str | None, bad: BadRows
) -> Batches:
    from factory.features.pipeline import record_batches, resolve_files  # defers TensorFlow

    start = 0
    for path, count, batch in record_batches(
        resolve_files(pattern), compression, batch_size, hint="pass --compression"
    ):
        records = batch.numpy().tolist()
        first = start
        indexes = list(range(first, first + len(records)))
        start += len(records)
        while records:
            try:
                yield indexes, predictor.predict_examples(records)
                break
            except PredictError as err:
                if err.index is None:
                    raise
                where = f"{path}, record {count + indexes[err.index] - first}"
                if not bad.skip:
                    raise PredictError(f"{where}: {err.detail}") from None
                bad.add(f"({where})", err.detail)  # left out; the rest of the batch again
                del records[err.index], indexes[err.index]
