"""``factory serve PATH``: an export tree served with TF Serving's REST API (``factory.serving.server``).

Everything on the command line is checked before TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from factory.errors import ConfigError
from factory.names import DEFAULT_MODEL_NAME, MODEL_NAME_PATTERN
from factory.serving.batching import BatchingOptions
from factory.serving.manifest import manifest_model_name, model_base, read_manifest
from factory.serving.options import ServeOptions

DEFAULT_PORT = 8501  # TF Serving's REST port
_NAME = re.compile(MODEL_NAME_PATTERN)


def arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BatchingOptions()
    parser.add_argument(
        "path",
        metavar="PATH",
        help="a run dir, a policy dir (RUN/export/best: TF Serving's model base path) or one version dir",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s; 0: any free port")
    parser.add_argument("--host", default="127.0.0.1", help="default %(default)s; 0.0.0.0 in a container")
    parser.add_argument("--model-name", help="the NAME in /v1/models/NAME (default: the export's export.model_name)")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=1.0,
        help="how often to look for new versions (default %(default)s, as TF Serving)",
    )
    batching = parser.add_argument_group("batching (TF Serving's parameters and defaults)")
    batching.add_argument("--no-batching", action="store_true", help="run each request alone")
    batching.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size, help="default %(default)s")
    batching.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=defaults.batch_timeout_micros,
        help="how long a request may wait for others (default %(default)s)",
    )
    batching.add_argument(
        "--num-batch-threads", type=int, default=defaults.num_batch_threads, help="default: the cores (%(default)s)"
    )
    batching.add_argument(
        "--max-enqueued-batches", type=int, default=defaults.max_enqueued_batches, help="default %(default)s"
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--request-timeout", type=float, default=30.0, help="seconds before a 504 (default %(default)s)"
    )
    limits.add_argument(
        "--max-body-bytes", type=int, default=64 * 2**20, help="larger bodies get a 413 (default %(default)s)"
    )
    parser.add_argument("--no-access-log", action="store_true", help="no line per request")


def options(args: argparse.Namespace):
    """The checked ``ServeOptions`` (``ConfigError``/``PredictError`` naming the option at fault)."""
    base, fixed = model_base(args.path)
    batching = BatchingOptions(
        enabled=not args.no_batching,
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        num_batch_threads=args.num_batch_threads,
        max_enqueued_batches=args.max_enqueued_batches,
    )
    problems = batching.problems()
    if not 0 <= args.port <= 65535:
        problems.append(f"--port: expected 0 to 65535, got {args.port}")
    for option, value in (("--poll-seconds", args.poll_seconds), ("--request-timeout", args.request_timeout)):
        if not value > 0:
            problems.append(f"{option}: expected a positive number of seconds, got {value}")
    if args.max_body_bytes < 1:
        problems.append(f"--max-body-bytes: expected a positive integer, got {args.max_body_bytes}")
    name = args.model_name or _model_name(base, fixed)
    if not _NAME.match(name):
        problems.append(f"--model-name: {name!r} is not a model name; use letters, digits, '_', '.' and '-'")
    if problems:
        raise ConfigError("; ".join(problems))
    return ServeOptions(
        base=base,
        fixed=fixed,
        model_name=name,
        host=args.host,
        port=args.port,
        batching=batching,
        poll_seconds=args.poll_seconds,
        request_timeout=args.request_timeout,
        max_body_bytes=args.max_body_bytes,
        access_log=not args.no_access_log,
    )


def _model_name(base: Path, fixed: Path | None) -> str:
    """The newest export's ``export.model_name``; the setting's default when there is none yet."""
    candidates = [fixed] if fixed is not None else []
    if fixed is None and base.is_dir():
        candidates = sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name))
    for version in candidates:
        try:
            name = manifest_model_name(read_manifest(version))
        except Exception:  # a version without a readable manifest names nothing
            continue
        if name:
            return name
    return DEFAULT_MODEL_NAME


def run(args: argparse.Namespace) -> int:
    checked = options(args)
    from factory.serving.server import serve  # defers TensorFlow (and uvicorn) until the options are right

    return serve(checked)


EPILOG = """\
Speaks TF Serving's REST API, so clients move to TF Serving unchanged:

  GET  /v1/models/NAME                      the versions and their states
  GET  /v1/models/NAME/metadata             the signature defs
  POST /v1/models/NAME:predict              {"instances": [...]} or {"inputs": {...}}
  POST /v1/models/NAME/versions/N:predict   one version; /labels/current: the policy's current one
  GET  /monitoring/prometheus/metrics       requests, latency, batch sizes, queue

Bytes (a PNG image, a serialized tf.Example for "signature_name": "tf_example")
go as {"b64": "..."}. The newest version is served, and the one `current` points
at; a version a running training writes is picked up within --poll-seconds,
warmed up with its assets.extra/tf_serving_warmup_requests, and only then
served; the old one is unloaded once its requests are answered.

examples:
  factory serve outputs/2026-01-31/12-00-00
  curl -d '{"instances": [{"image": {"b64": "..."}}]}' localhost:8501/v1/models/digits:predict
  factory serve RUN/export/best --port 0 --max-batch-size 64 --batch-timeout-micros 2000
"""
