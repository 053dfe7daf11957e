"""``factory serve``: TF Serving's REST API over an export tree, on uvicorn and Starlette.

The same paths, bodies and status codes as TF Serving's model server, so a client moves to TF
Serving unchanged (the JSON rules: ``factory.serving.rest_json``; the versions:
``factory.serving.versions``; the batching: ``factory.serving.batching``):

- ``GET  /v1/models/NAME[/versions/N | /labels/L]``: the versions and their states;
- ``GET  /v1/models/NAME[/versions/N | /labels/L]/metadata``: the signature defs;
- ``POST /v1/models/NAME[/versions/N | /labels/L]:predict``: the row (``instances``) or
  columnar (``inputs``) format, ``signature_name`` ``serving_default`` or ``tf_example``;
- ``GET  /monitoring/prometheus/metrics``: requests, latency, batch sizes and queue, by version.

Errors are ``{"error": "..."}`` with TF Serving's status codes: 400 for bad input, 404 for an
unknown model or version, 413 for a body over ``--max-body-bytes``, 503 when the batching queue
is full, 504 when a request waits longer than ``--request-timeout``. SIGTERM (or Ctrl-C) stops
accepting connections, lets the requests in flight finish and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from factory.errors import ConfigError
from factory.serving import rest_json
from factory.serving.batching import QueueFull, TooLarge
from factory.serving.json_values import RestError
from factory.serving.options import ServeOptions
from factory.serving.versions import VersionManager

log = logging.getLogger("factory.serve")
access = logging.getLogger("factory.serve.access")

# TF Serving's request paths (http_rest_api_util.cc), matched case-insensitively on the whole path.
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
METRICS_PATH = "/monitoring/prometheus/metrics"
INT64_MAX = 2**63 - 1
# Bodies and answers above these sizes are parsed and written on a thread, not on the event loop.
LARGE_BODY = 256 * 1024
LARGE_OUTPUT_ROWS = 1024
JSON = "application/json"


class Metrics:
    """The Prometheus metrics of one server (its own registry)."""

    def __init__(self, manager_queue):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "factory_serve_requests",
            "Requests answered, by model, version, API, signature and HTTP status.",
            ["model", "version", "api", "signature", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "factory_serve_request_latency_seconds",
            "Time from the request's arrival to its answer.",
            ["model", "version", "api"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "factory_serve_batch_size",
            "Rows per signature call (merged requests).",
            ["model", "version", "signature"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "factory_serve_batch_requests",
            "Requests merged into one signature call.",
            ["model", "version", "signature"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.queued = Gauge("factory_serve_queued_rows", "Rows waiting for a batch.", registry=self.registry)
        self.queued.set_function(manager_queue)


def _error(err: RestError) -> Response:
    return Response(rest_json.error_body(err.message), status_code=err.status, media_type=JSON)


class App:
    """The ASGI application: routes, the version manager and the metrics."""

    def __init__(self, options: ServeOptions):
        self.options = options
        self.manager = VersionManager(
            options.base,
            options.model_name,
            options.batching,
            poll_seconds=options.poll_seconds,
            fixed=options.fixed,
            on_batch=self._on_batch,
        )
        self.metrics = Metrics(self.manager.queued_rows)
        self.address = ""  # http://host:port, once listening
        self.asgi = Starlette(
            routes=[
                Route("/v1/{rest:path}", self.v1, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
                Route(METRICS_PATH, self.prometheus, methods=["GET"]),
            ],
            lifespan=self.lifespan,
        )

    def _on_batch(self, version: int, signature: str, rows: int, requests: int) -> None:
        labels = (self.options.model_name, str(version), signature)
        self.metrics.batch_size.labels(*labels).observe(rows)
        self.metrics.batch_requests.labels(*labels).observe(requests)

    @contextlib.asynccontextmanager
    async def lifespan(self, app) -> AsyncIterator[None]:
        await asyncio.to_thread(self.manager.start)
        name = self.options.model_name
        log.info(
            "serving model '%s' at %s/v1/models/%s (metrics: %s%s)",
            name,
            self.address,
            name,
            self.address,
            METRICS_PATH,
        )
        yield
        await asyncio.to_thread(self.manager.stop)
        log.info("stopped")

    # -- routes -----------------------------------------------------------------------------------

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def v1(self, request: Request) -> Response:
        started = time.perf_counter()
        method, path = request.method, request.url.path
        api, signature, version_label = "status", "", ""
        try:
            if method == "POST" and (match := PREDICT_PATH.fullmatch(path)):
                name, version, label = self._spec(match)
                api = match.group(4).lower()
                if api != "predict":
                    raise RestError(
                        f"{api} is not served here: factory exports have predict signatures; "
                        f"POST /v1/models/{name}:predict"
                    )
                served = self.manager.resolve(name, version, label)
                version_label = str(served.version)
                body = await self._body(request)
                response, signature = await self._predict(served, body)
            elif method == "GET" and (match := STATUS_PATH.fullmatch(path)):
                name, version, label = self._spec(match)
                if not name:
                    raise RestError("Missing model name in request.")
                if match.group(4):
                    api = "metadata"
                    served = self.manager.resolve(name, version, label)
                    version_label = str(served.version)
                    response = self._json(self._metadata(name, served))
                else:
                    response = self._json(self.manager.status(name, version, label))
            else:
                raise RestError(f"Malformed request: {method} {path}")
        except RestError as err:
            response = _error(err)
        except Exception as err:  # a fault of the server, not of the request: logged, answered as TF Serving's 500
            log.exception("%s %s failed", method, path)
            response = _error(
                RestError(f"Internal: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", 500)
            )
        self.metrics.requests.labels(
            self.options.model_name, version_label, api, signature, str(response.status_code)
        ).inc()
        seconds = time.perf_counter() - started
        self.metrics.latency.labels(self.options.model_name, version_label, api).observe(seconds)
        client = request.client.host if request.client else "-"
        access.info('%s "%s %s" %d %.1f ms', client, method, path, response.status_code, 1000 * seconds)
        return response

    @staticmethod
    def _spec(match: re.Match) -> tuple[str, int | None, str | None]:
        name, version, label = match.group(1) or "", match.group(2), match.group(3)
        if version is not None:
            number = int(version)
            if number > INT64_MAX:
                raise RestError(f"Failed to convert version: {version} to numeric.")
            version = number
        return name, version, label

    async def _body(self, request: Request) -> bytes:
        limit = self.options.max_body_bytes
        declared = request.headers.get("content-length")
        too_large = RestError(
            f"the request body is larger than the limit of {limit} bytes; send fewer instances per request "
            "or start the server with a larger --max-body-bytes",
            413,
        )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _predict(self, served, body: bytes) -> tuple[Response, str]:
        def parse():
            document, signature = rest_json.signature_name(body)
            if signature not in served.inputs:
                raise rest_json.unknown_signature(signature)
            return rest_json.parse_predict(document, served.inputs[signature], signature), signature

        # A large body takes a while to parse: off the event loop, so other requests go on meanwhile.
        parsed, signature = await asyncio.to_thread(parse) if len(body) > LARGE_BODY else parse()
        try:
            future = served.batcher.submit(signature, parsed.inputs)
        except TooLarge as err:
            raise RestError(str(err)) from None
        except QueueFull as err:
            raise RestError(str(err), 503) from None
        try:
            outputs = await asyncio.wait_for(asyncio.wrap_future(future), self.options.request_timeout)
        except TimeoutError:
            raise RestError(
                f"Deadline exceeded: no answer within {self.options.request_timeout:g} s (--request-timeout)", 504
            ) from None
        rows = max((len(v) for v in outputs.values() if np.ndim(v)), default=0)
        if rows > LARGE_OUTPUT_ROWS:
            text = await asyncio.to_thread(rest_json.encode_predictions, outputs, parsed.format)
        else:
            text = rest_json.encode_predictions(outputs, parsed.format)
        return Response(text, media_type=JSON), signature

    def _metadata(self, name: str, served) -> dict:
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(served.version)},
            "metadata": {"signature_def": served.signature_defs},
        }

    @staticmethod
    def _json(document: dict) -> Response:
        return Response(json.dumps(document, indent=1), media_type=JSON)


def log_config(access_log: bool) -> dict:
    """Quiet logging: factory's lines and (``access_log``) one line per request at INFO; uvicorn's own at WARNING."""
    fmt = "%(asctime)s %(levelname)s %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": fmt, "datefmt": "%H:%M:%S"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "factory.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "factory.serve.access": {"level": "INFO" if access_log else "WARNING"},
        },
    }


def serve(options: ServeOptions) -> int:
    """Listen on ``options.host:options.port`` until SIGTERM or Ctrl-C; returns the exit status (0)."""
    app = App(options)
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    # IPPROTO_TCP named, or asyncio leaves TCP_NODELAY off on the accepted connections (it checks
    # sock.proto), and a keep-alive client then waits for delayed ACKs: 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as err:
        sock.close()
        raise ConfigError(
            f"--port {options.port}: cannot listen on {options.host}:{options.port} ({err.strerror}); "
            "pick another port, or --port 0 for any free one"
        ) from None
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app.asgi,
        log_config=log_config(options.access_log),
        access_log=False,  # one line per request is ours, with the latency (factory.serve.access)
        timeout_graceful_shutdown=max(1, int(options.request_timeout) + 1),
        lifespan="on",
    )
    sock.listen(2048)  # connections wait in the backlog until the first versions have loaded
    app.address = f"http://{host}:{port}"
    _Server(config, app).run(sockets=[sock])
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, whose SIGTERM/Ctrl-C also tells the batchers to stop waiting for fuller batches:
    the queued requests run at once and the drain takes no longer than the calls in flight."""

    def __init__(self, config: uvicorn.Config, app: App):
        super().__init__(config)
        self.factory_app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM and Ctrl-C drain, then the process exits 0 (uvicorn would raise the signal again)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            log.info("stopping: answering the requests in flight, taking no new ones")
        self.factory_app.manager.drain()
        super().handle_exit(sig, frame)
