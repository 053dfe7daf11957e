"""``factory convert EXPORT --to tflite|onnx``: ``serving_default`` converted, checked and recorded (``factory.serving.convert``)."""

from __future__ import annotations

import argparse

from factory.errors import ConfigError
from factory.serving.manifest import find_export

FORMATS = ("tflite", "onnx")
DEFAULT_TOLERANCE = 1e-4


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export", metavar="EXPORT", help="a version, policy, export or run dir")
    parser.add_argument("--to", required=True, choices=FORMATS, help="the format to convert serving_default to")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="the largest difference from the SavedModel's outputs on eval records (default %(default)g; "
        "absolute below 1, relative above)",
    )
    parser.add_argument(
        "--calls", type=int, default=200, help="batch-1 calls timed for the latency (default %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    if not args.tolerance > 0:
        raise ConfigError(f"--tolerance: expected a positive number, got {args.tolerance}")
    if args.calls < 1:
        raise ConfigError(f"--calls: expected a positive integer, got {args.calls}")
    version = find_export(args.export)
    from factory.serving.convert import convert  # defers TensorFlow until the arguments are right

    record = convert(version, args.to, tolerance=args.tolerance, calls=args.calls)
    kb = 1024
    print(f"wrote {version / record['path']}")
    print(f"{'':<14}{'size':>12}{'batch-1 latency':>18}")
    print(
        f"{'SavedModel':<14}{record['saved_model_bytes'] / kb:>9.1f} kB{record['saved_model_latency_ms_batch_1']:>15.3f} ms"
    )
    print(f"{args.to:<14}{record['bytes'] / kb:>9.1f} kB{record['latency_ms_batch_1']:>15.3f} ms")
    print(
        f"outputs match the SavedModel's on {record['checked_records']} eval records within {record['tolerance']:g} "
        f"(largest difference {record['max_difference']:.2g}); recorded in the manifest under converted.{args.to}"
    )
    return 0


EPILOG = """\
Writes <version>/converted/serving_default.tflite (or .onnx) beside the SavedModel
(TF Serving ignores it), after checking its outputs against the SavedModel on the
export's eval records (its warmup requests). Needs `pip install 'factory[convert]'`.
A model whose serving_default looks up vocabularies, hashes or splits text, or
decodes images uses TensorFlow ops these formats lack: the error names them.

examples:
  factory convert runs/a --to tflite
  factory convert runs/a/export/best/3 --to onnx --tolerance 1e-5
"""
