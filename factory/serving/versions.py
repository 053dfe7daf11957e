"""The versions ``factory serve`` holds, as TF Serving holds them.

A ``VersionManager`` watches a policy dir (TF Serving's model base path) every ``poll_seconds``.
It serves the newest version and the one ``current`` points at (usually the same, TF Serving's
``Latest`` policy plus the ``current`` label). A new version is loaded (``LOADING``), its warmup
requests are replayed, and only then is it ``AVAILABLE`` and takes requests; the versions no
longer wanted are then ``UNLOADING`` (their queued requests finish) and ``END``. A version dir
appears by a rename when complete (``factory.serving.export_tree``), so a half-written one is
never seen; one that fails to load is reported in the status and not retried until it changes.

Each ``ServedVersion`` runs its signatures through a ``Batcher`` (``factory.serving.batching``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from factory.names import CURRENT, SAVED_MODEL
from factory.serving.batching import Batcher, BatchingOptions
from factory.serving.inputs import TensorInfo
from factory.serving.json_values import RestError
from factory.serving.predictor import explain_error
from factory.serving.warmup import read_warmup

log = logging.getLogger("factory.serve")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
# Signatures a SavedModel holds that are not for serving.
_HIDDEN = ("__saved_model_init_op",)


def _tensor_info(name: str, info) -> TensorInfo:
    dims = [None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
    dtype = tf.dtypes.as_dtype(info.dtype).name
    return TensorInfo(name, dtype, tuple(dims[1:]))


class ServedVersion:
    """One loaded version: its signatures (``inputs`` as ``TensorInfo`` by signature), its signature
    defs as TF Serving's metadata API returns them, and its batcher."""

    def __init__(self, path: Path, version: int, batching: BatchingOptions, on_batch: Callable | None = None):
        self.path, self.version = path, version
        proto = saved_model_pb2.SavedModel.FromString((path / SAVED_MODEL).read_bytes())
        defs = proto.meta_graphs[0].signature_def
        # TF Serving's SignatureDefMap (map<string, SignatureDef> signature_def = 1) as its REST API writes it.
        self.signature_defs = {
            "signature_def": {
                name: json_format.MessageToDict(
                    d, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                )
                for name, d in defs.items()
            }
        }
        self.inputs: dict[str, dict[str, TensorInfo]] = {
            name: {k: _tensor_info(k, v) for k, v in sorted(d.inputs.items())}
            for name, d in defs.items()
            if name not in _HIDDEN
        }
        self._loaded = tf.saved_model.load(str(path))
        self._functions = {name: self._loaded.signatures[name] for name in self.inputs}
        self.batcher = Batcher(self.run, batching, on_batch=lambda s, r, n: on_batch and on_batch(version, s, r, n))

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of ``signature``; bad input raises ``RestError`` (400) naming it."""
        try:
            outputs = self._functions[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            raise RestError(explain_error(err)) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def warm_up(self) -> int:
        """Replay the export's warmup requests (each alone, outside the batcher); returns how many ran."""
        ran = 0
        for signature, inputs in read_warmup(self.path):
            if signature in self._functions:
                self.run(signature, inputs)
                ran += 1
        return ran

    def close(self) -> None:
        self.batcher.close()


@dataclass
class _Entry:
    state: str
    served: ServedVersion | None = None
    error: str = ""
    stamp: float = 0.0  # the version dir's mtime when it failed to load


@dataclass
class VersionManager:
    """Loads, serves and unloads the versions under ``base`` (a policy dir), or only ``fixed``."""

    base: Path
    name: str
    batching: BatchingOptions
    poll_seconds: float = 1.0
    fixed: Path | None = None
    on_batch: Callable | None = None
    _entries: dict[int, _Entry] = field(default_factory=dict)
    _labels: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- what is on disk --------------------------------------------------------------------------

    def _on_disk(self) -> tuple[dict[int, Path], int | None]:
        """The complete versions under ``base`` and the one ``current`` points at."""
        if self.fixed is not None:
            number = int(self.fixed.name) if self.fixed.name.isdigit() else 1
            return {number: self.fixed}, number
        try:
            found = {
                int(p.name): p
                for p in self.base.iterdir()
                if p.name.isdigit() and not p.is_symlink() and (p / SAVED_MODEL).is_file()
            }
        except OSError:
            return {}, None
        try:
            current = int((self.base / CURRENT).readlink().name)
        except (OSError, ValueError):
            current = None
        return found, current if current in found else None

    def poll(self) -> None:
        """Load the versions wanted now (the newest and ``current``), then unload the others."""
        found, current = self._on_disk()
        wanted = {v for v in (max(found, default=None), current) if v is not None}
        for version in sorted(wanted):
            entry = self._entries.get(version)
            if entry is not None and entry.state == AVAILABLE:
                continue
            if entry is not None and entry.state == END and entry.error:
                try:
                    if found[version].stat().st_mtime == entry.stamp:
                        continue  # failed before and unchanged since
                except OSError:
                    continue
            self._load(version, found[version])
        available = {v for v, e in self._entries.items() if e.state == AVAILABLE}
        with self._lock:
            self._labels = {CURRENT: current} if current in available else {}
            # The old version keeps serving until a new one is available.
            leaving = [v for v in available if v not in wanted] if available & wanted else []
            for version in leaving:
                self._entries[version].state = UNLOADING
        for version in leaving:
            entry = self._entries[version]
            log.info("model '%s' version %d unloading", self.name, version)
            if entry.served is not None:
                entry.served.close()
            with self._lock:
                entry.served, entry.state = None, END

    def _load(self, version: int, path: Path) -> None:
        with self._lock:
            self._entries[version] = _Entry(LOADING)
        started, served = time.monotonic(), None
        try:
            served = ServedVersion(path, version, self.batching, self.on_batch)
            warmed = served.warm_up()
        except Exception as err:  # reported in the status, the server keeps serving
            if served is not None:
                served.close()
            message = explain_error(err) if isinstance(err, tf.errors.OpError) else str(err)
            try:
                stamp = path.stat().st_mtime
            except OSError:
                stamp = 0.0
            with self._lock:
                self._entries[version] = _Entry(END, error=message, stamp=stamp)
            log.error(
                "model '%s' version %d failed to load: %s", self.name, version, message
            )  # once the status says so
            return
        with self._lock:
            self._entries[version] = _Entry(AVAILABLE, served)
        log.info(
            "model '%s' version %d AVAILABLE (loaded in %.1f s, %d warmup request%s replayed) from %s",
            self.name,
            version,
            time.monotonic() - started,
            warmed,
            "" if warmed == 1 else "s",
            path,
        )

    # -- the poller -------------------------------------------------------------------------------

    def start(self) -> None:
        """Poll once now (the first versions load before this returns), then every ``poll_seconds``."""
        self.poll()
        if self.fixed is None:
            self._thread = threading.Thread(target=self._watch, name="versions", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception as err:  # a poll that fails is tried again at the next one
                log.error("polling %s failed: %s", self.base, err)

    def drain(self) -> None:
        """Run what is queued now and refuse new requests (shutting down); safe from a signal handler."""
        self._stop.set()
        for entry in list(self._entries.values()):
            if entry.served is not None:
                entry.served.batcher.drain()

    def stop(self) -> None:
        """Stop polling; let each version's queued requests finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for entry in list(self._entries.values()):
            if entry.served is not None:
                entry.served.close()

    # -- what requests see ------------------------------------------------------------------------

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> ServedVersion:
        """The version a request names (TF Serving's errors when there is none)."""
        self._check_name(name)
        with self._lock:
            version = self._labelled(version, label)
            if version is None:
                available = [v for v, e in self._entries.items() if e.state == AVAILABLE]
                if not available:
                    raise RestError(f"Servable not found for request: Latest({name})", 404)
                version = max(available)
            entry = self._entries.get(version)
            if entry is None or entry.state != AVAILABLE or entry.served is None:
                raise RestError(f"Servable not found for request: Specific({name}, {version})", 404)
            return entry.served

    def status(self, name: str, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """``GetModelStatusResponse`` as TF Serving's REST API writes it."""
        self._check_name(name)
        with self._lock:
            version = self._labelled(version, label)
            if version is not None:
                if version not in self._entries:
                    raise RestError(f"Could not find version {version} of model {name}", 404)
                chosen = {version: self._entries[version]}
            else:
                if not self._entries:
                    raise RestError(f"Could not find any versions of model {name}", 404)
                chosen = dict(self._entries)
            return {
                "model_version_status": [
                    {
                        "version": str(v),
                        "state": e.state,
                        "status": {"error_code": "UNKNOWN" if e.error else "OK", "error_message": e.error},
                    }
                    for v, e in sorted(chosen.items(), reverse=True)
                ]
            }

    def queued_rows(self) -> int:
        """Rows waiting for a batch, over the versions loaded."""
        with self._lock:
            return sum(e.served.batcher.queued_rows for e in self._entries.values() if e.served is not None)

    def _labelled(self, version: int | None, label: str | None) -> int | None:
        """The version ``label`` stands for (``version`` without one); under the lock."""
        if label is None:
            return version
        if label not in self._labels:
            raise RestError(f"Unrecognized servable version label: {label}", 400)
        return self._labels[label]

    def _check_name(self, name: str) -> None:
        if name != self.name:
            raise RestError(f"Servable not found for request: Latest({name})", 404)
