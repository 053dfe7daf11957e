"""``factory predict``: run an export on a JSON Lines, CSV, NPZ or TFRecord file; predictions as JSON Lines.

JSON Lines, CSV and NPZ inputs are read with the feature spec stored in the
export's manifest and go through ``serving_default``; image fields given as
files or base64 PNG/JPEG are decoded by the same op the ``tf_example``
signature uses, so both paths give the same pixels. TFRecord files go through
``tf_example`` as they are. The input is read and checked batch by batch, and
TensorFlow is loaded only for the first batch that passes (or has image bytes
to decode), so a wrong file usually fails in a fraction of a second.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from factory.errors import RecordError
from factory.features import images
from factory.features.spec import Feature, FeatureSpec
from factory.predict import DEFAULT_BATCH_SIZE, PredictError, Predictor

FORMATS = ("jsonl", "csv", "npz", "tfrecord")
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecord.zz", ".tfrecords.gz", ".gz", ".zz")
# A CSV/JSON value longer than this is not tried as a file path (it is base64 data).
_MAX_PATH = 1024


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export", metavar="EXPORT_DIR", help="an export version dir, or its policy, export or run dir (see below)")
    parser.add_argument("--input", required=True, metavar="FILE", help="a .jsonl, .csv, .npz or .tfrecord file (TFRecord: or a quoted glob)")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the extension)")
    parser.add_argument("--output", metavar="FILE", help="write the predictions here (default: standard output)")
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, metavar="N", help=f"examples per model call (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--ignore-unknown", action="store_true", help="drop columns/keys the feature spec does not declare (default: an error)")
    parser.add_argument(
        "--compression", choices=("none", "gzip", "zlib"), type=str.lower, default=None,
        help="TFRecord compression (default: from each file's extension: .gz GZIP, .zz ZLIB)",
    )


def input_format(path: str, format: str | None) -> str:
    """``format`` if given, else the one named by the extension; a glob is TFRecord."""
    if format:
        return format
    lower = path.lower()
    if lower.endswith(_TFRECORD_SUFFIXES) or any(c in path for c in "*?["):
        return "tfrecord"
    from factory.features.sources import input_format as table_format

    try:
        return table_format(path)
    except RecordError:
        suffix = Path(path).suffix or "(none)"
        raise RecordError(
            f"{path}: cannot tell the input format from the extension {suffix!r}; name the file .jsonl, .csv, "
            f".npz or .tfrecord, or pass --format {'|'.join(FORMATS)}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Find the export and read its manifest, then predict batch by batch into ``--output`` (atomically) or stdout."""
    predictor = Predictor(args.export, batch_size=args.batch_size)  # the manifest only: no TensorFlow yet
    kind = input_format(args.input, args.format)
    if kind == "tfrecord":
        batches = _tfrecord_batches(predictor, args)
    elif kind == "npz":
        batches = _npz_batches(predictor, args)
    else:
        batches = _text_batches(predictor, args, kind)
    try:
        with _Output(args.output) as out:
            for start, outputs in batches:
                out.write(start, outputs)
    except BrokenPipeError:
        # The reader of standard output stopped (`| head`): not an error. Point stdout at
        # /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    where = args.output or "standard output"
    records = "record" if out.count == 1 else "records"
    message = f"predicted {out.count} {records} with {predictor.path} ({predictor.policy} v{predictor.version}) to {where}"
    print(message, file=sys.stdout if args.output else sys.stderr)
    return 0


# -- output ---------------------------------------------------------------------------------------


class _Output:
    """JSON Lines to stdout, or to a file that appears only when every prediction is written."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self.count = 0
        self._file: IO[str] | None = None
        self._partial: Path | None = None

    def __enter__(self) -> _Output:
        if self.path is None:
            self._file = sys.stdout
            return self
        if self.path.is_dir():
            raise RecordError(f"--output {self.path} is a directory; give a file name, e.g. {self.path / 'predictions.jsonl'}")
        if not self.path.parent.is_dir():
            raise RecordError(f"--output {self.path}: the directory {self.path.parent} does not exist")
        self._partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        try:
            self._file = open(self._partial, "w", encoding="utf-8")
        except OSError as err:
            raise RecordError(f"cannot write {self.path}: {err.strerror or err}") from None
        return self

    def write(self, start: int, outputs: Mapping[str, np.ndarray]) -> None:
        columns = {name: _json_column(values) for name, values in outputs.items()}
        rows = len(next(iter(columns.values()))) if columns else 0
        lines = (json.dumps({"index": start + i, **{name: col[i] for name, col in columns.items()}}) for i in range(rows))
        self._file.write("".join(line + "\n" for line in lines))
        self.count += rows

    def __exit__(self, kind, error, tb) -> None:
        if self._partial is None:
            if self._file is not None:
                self._file.flush()
            return
        self._file.close()
        if kind is None:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)


def _json_column(values: np.ndarray) -> list:
    if values.dtype.kind not in "SO":
        return values.tolist()

    def text(item):
        if isinstance(item, bytes):
            try:
                return item.decode()
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(item).decode()}
        return item

    return [np.vectorize(text, otypes=[object])(v).tolist() if np.ndim(v) else text(v) for v in values]


# -- JSON Lines and CSV ---------------------------------------------------------------------------


def _reader_spec(spec: FeatureSpec) -> FeatureSpec:
    """The spec the CSV/JSON Lines/NPZ readers get: they only convert values here.

    Every feature is optional to them (an empty default), so a missing one is
    reported by the predictor, which knows what the export takes. Image fields,
    labels and the weight are passed through untouched: an image may be a file,
    base64 data or pixels, and labels are not used.
    """

    def passed(f: Feature) -> Feature:
        return replace(f, dtype="string", shape=(), encoding=None, vocabulary=None, oov_buckets=0, default=(), preprocess=None, augment=None)

    features = tuple(passed(f) if f.encoding else replace(f, default=()) for f in spec.features)
    others = tuple(passed(f) for f in spec.all() if f.role != "feature")
    return FeatureSpec(features=features, labels=others)


def _text_batches(predictor: Predictor, args: argparse.Namespace, kind: str) -> Iterator[tuple[int, dict]]:
    from factory.features.sources import open_source

    base_dir = Path(args.input).expanduser().resolve().parent
    with open_source(args.input, _reader_spec(predictor.spec), format=kind, ignore_unknown=args.ignore_unknown) as source:
        rows: list[tuple[str, dict]] = []
        start = 0
        for row in source:
            if row.error is not None:
                raise RecordError(f"{args.input} {row.where}: {row.error}")
            rows.append((row.where, row.record))
            if len(rows) == args.batch_size:
                yield start, predictor.predict(_columns(predictor, rows, args.input, base_dir))
                start += len(rows)
                rows = []
        if rows:
            yield start, predictor.predict(_columns(predictor, rows, args.input, base_dir))


def _columns(predictor: Predictor, rows: list[tuple[str, dict]], source: str, base_dir: Path) -> dict[str, np.ndarray]:
    """One batch of rows as checked arrays, one per input; an error names the row and the feature."""
    declared = {f.name: f for f in predictor.spec.features}
    columns = {}
    for name, info in predictor.inputs.items():
        feature = declared.get(name)
        values: list[np.ndarray | None] = []
        encoded: list[tuple[int, bytes]] = []
        for i, (where, record) in enumerate(rows):
            value = record.get(name)
            try:
                if feature is not None and feature.encoding and value is not None:
                    value = _image_value(feature, value, base_dir)
                    if isinstance(value, bytes):
                        encoded.append((i, value))
                        values.append(None)
                        continue
                if value is None:
                    value = predictor.default(name)
                    if value is None:
                        also = " (pixels, or an image file path or base64 PNG/JPEG data)" if feature is not None and feature.encoding else ""
                        raise PredictError(
                            f"missing feature '{name}': expected {info.describe(batched=False)}{also}, got nothing; "
                            f"the export takes {predictor.describe_inputs()}"
                        )
                values.append(info.convert(value, batched=False))
            except PredictError as err:
                raise PredictError(f"{source} {where}: {err}") from None
        if encoded:
            pixels = _decode_images(feature, [data for _, data in encoded])
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


def _image_value(feature: Feature, value: Any, base_dir: Path) -> Any:
    """An image field: a file path or base64 (as a string, or ``{"b64": ...}``) -> checked bytes; pixels unchanged."""
    if isinstance(value, Mapping):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise PredictError(f"feature '{feature.name}': expected {{\"b64\": \"<base64 PNG/JPEG>\"}}, got {json.dumps(value)[:60]}")
        data = _b64(value["b64"])
        if data is None:
            raise PredictError(f"feature '{feature.name}': the \"b64\" value is not valid base64")
        return _checked_image(feature, data, "the \"b64\" value")
    if isinstance(value, bytes):
        return _checked_image(feature, value, "the value")
    if not isinstance(value, str):
        return value  # pixels: checked as an array
    text = value.strip()
    if text.startswith("["):  # pixels as a JSON list in a CSV cell
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if len(text) <= _MAX_PATH:
        try:
            if path.is_file():
                return _checked_image(feature, path.read_bytes(), f"image file {path}")
        except OSError as err:
            raise PredictError(f"feature '{feature.name}': cannot read image file {path}: {err.strerror or err}") from None
    data = _b64(text)
    if data is not None and images.image_size(data) is not None:
        return _checked_image(feature, data, "the base64 data")
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise PredictError(
        f"feature '{feature.name}': {shown!r} is neither an image file (no file {path}; relative paths are "
        "relative to the input file's directory) nor base64 PNG/JPEG data"
    )


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(text.strip())
        except (binascii.Error, ValueError):
            return None


def _checked_image(feature: Feature, data: bytes, what: str) -> bytes:
    height, width, _ = feature.shape
    info = images.image_size(data)
    if info is None:
        raise PredictError(f"feature '{feature.name}': expected a PNG or JPEG image of {height}x{width} pixels, but {what} is neither PNG nor JPEG ({len(data)} bytes)")
    kind, h, w, _ = info
    if h and (h, w) != (height, width):
        raise PredictError(f"feature '{feature.name}': expected a PNG or JPEG image of {height}x{width} pixels, got a {kind} image of {h}x{w} ({what})")
    return data


def _decode_images(feature: Feature, data: list[bytes]) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 pixels with the op the ``tf_example`` signature runs."""
    import tensorflow as tf

    from factory.features.transform import decode_images

    try:
        return decode_images(feature, tf.constant(data, dtype=tf.string)).numpy()
    except tf.errors.OpError as err:
        from factory.features.pipeline import explain_error

        raise PredictError(explain_error(err)) from None


# -- NPZ ------------------------------------------------------------------------------------------


def _npz_batches(predictor: Predictor, args: argparse.Namespace) -> Iterator[tuple[int, dict]]:
    from factory.features.sources import open_source

    with open_source(args.input, _reader_spec(predictor.spec), format="npz", ignore_unknown=args.ignore_unknown) as source:
        columns = {k: v for k, v in source.columns.items() if k not in predictor.ignored}
        rows = source.rows
    for lo in range(0, rows, args.batch_size):
        chunk = {k: v[lo : lo + args.batch_size] for k, v in columns.items()}
        try:
            for name, values in chunk.items():
                feature = predictor.spec[name]
                if feature.encoding and values.dtype.kind in "SO":  # encoded images: bytes per record
                    data = []
                    for i, item in enumerate(values):
                        try:
                            data.append(_checked_image(feature, bytes(item), "the value"))
                        except (PredictError, TypeError) as err:
                            raise PredictError(f"record {lo + i}: {err}") from None
                    chunk[name] = _decode_images(feature, data)
            yield lo, predictor.predict(predictor.check(chunk, start=lo))
        except PredictError as err:
            raise PredictError(f"{args.input}: {err}") from None


# -- TFRecord -------------------------------------------------------------------------------------


def _tfrecord_batches(predictor: Predictor, args: argparse.Namespace) -> Iterator[tuple[int, dict]]:
    import tensorflow as tf

    from factory.features.pipeline import compression_of, resolve_files

    start = 0
    for path in resolve_files(args.input):
        ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path, args.compression)).batch(args.batch_size)
        iterator = iter(ds)
        count = 0
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as err:
                from factory.predict import _first_line

                raise RecordError(
                    f"{path}: corrupt or truncated TFRecord file after {count} good records ({_first_line(err)}); "
                    "check that a compressed file has the .gz/.zz extension or pass --compression"
                ) from None
            try:
                outputs = predictor.predict_examples(batch.numpy().tolist())
            except PredictError as err:
                if err.index is None:
                    raise
                raise PredictError(f"{path}, record {count + err.index}: {err.detail}") from None
            yield start, outputs
            count += len(batch)
            start += len(batch)


EPILOG = """\
EXPORT_DIR:
  RUN_DIR/export/<policy>/<version>   that version
  RUN_DIR/export/<policy>             the version its `current` link points at (else the newest)
  RUN_DIR/export, RUN_DIR             the best export, else final, else latest

inputs (the feature spec is the one stored with the export):
  JSON Lines  one object per line keyed by feature name; null or absent is missing.
  CSV         a header row names the features; a vector cell holds values separated
              by spaces or commas, or a JSON list.
  NPZ         one array per feature (np.savez), the first axis counting records.
  TFRecord    tf.train.Example records, as `factory write` writes them; a quoted glob
              reads several files in order.
  An image field (JSON Lines, CSV) is a file path (relative to the input file's
  directory), base64 PNG/JPEG data ({"b64": "..."} or a plain string) or, in JSON
  Lines, the pixels as nested lists. Labels and weights in the input are ignored.

output: one JSON object per record, in input order: "index" (the record's position,
  from 0) and every output of the export, e.g.
  {"index": 0, "class_ids": 3, "logits": [...], "probabilities": [...]}

A missing or unknown feature, or a value of the wrong dtype or shape, stops the
command with exit status 2; --output is then left as it was.
"""
