"""``factory predict``: run an export on a JSON Lines, CSV, NPZ or TFRecord file; predictions as JSON Lines.

The input is read and checked batch by batch (``factory.cli.predict_readers``),
and TensorFlow is loaded only for the first batch that passes (or has image
bytes to decode), so a wrong file usually fails in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from factory.cli.args import add_compression, positive_int
from factory.cli.bad_rows import BadRows
from factory.cli.predict_output import JsonLinesOutput
from factory.cli.predict_readers import batches
from factory.errors import RecordError
from factory.features.sources import input_format as table_format
from factory.serving.predictor import DEFAULT_BATCH_SIZE, Predictor

FORMATS = ("jsonl", "csv", "npz", "tfrecord")
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecord.zz", ".tfrecords.gz", ".gz", ".zz")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "export", metavar="EXPORT_DIR", help="an export version dir, or its policy, export or run dir (see below)"
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="a .jsonl, .csv, .npz or .tfrecord file (TFRecord: or a quoted glob)",
    )
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the extension)")
    parser.add_argument("--output", metavar="FILE", help="write the predictions here (default: standard output)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"examples per model call (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="drop columns/keys the feature spec does not declare (default: an error)",
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="leave out rows/records that do not fit the export, naming the first few (default: stop at the first)",
    )
    add_compression(parser, "from each file's extension: .gz GZIP, .zz ZLIB")


def input_format(path: str, format: str | None) -> str:
    """``format`` if given, else the one named by the extension; a glob is TFRecord. ``RecordError`` if neither tells."""
    if format:
        return format
    if path.lower().endswith(_TFRECORD_SUFFIXES) or any(c in path for c in "*?["):
        return "tfrecord"
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
    bad = BadRows(args.input, args.skip_bad_rows)
    predictions = batches(predictor, args.input, kind, args.batch_size, args.ignore_unknown, args.compression, bad)
    try:
        with JsonLinesOutput(args.output) as out:
            for indexes, outputs in predictions:
                out.write(indexes, outputs)
    except BrokenPipeError:
        # The reader of standard output stopped (`| head`): not an error. Point stdout at
        # /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    bad.report()
    where = args.output or "standard output"
    records = "record" if out.count == 1 else "records"
    skipped = f" ({bad.count} bad {'row' if bad.count == 1 else 'rows'} skipped)" if args.skip_bad_rows else ""
    message = (
        f"predicted {out.count} {records}{skipped} with {predictor.path} ({predictor.policy} v{predictor.version}) "
        f"to {where}"
    )
    print(message, file=sys.stdout if args.output else sys.stderr)
    return 0


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
command with exit status 2; --output is then left as it was. So does a float that
is infinite or beyond float32's range, or NaN: a NaN (or an empty CSV cell, a JSON
null) is a missing value, which takes the feature's `default:` if the spec declares
one. With --skip-bad-rows such rows are left out instead (the first few are named
on standard error, with their reason); the others keep their "index". An output
that is NaN or infinite (a model overflowing) is written as null.
"""
