"""The sharded, atomic TFRecord writer (``FeatureSpec.writer``)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec

from factory.errors import RecordError
from factory.features.encoder import (
    encode_columns,
    encode_record,
    encoders_for,
)
from factory.features.tfrecord import COMPRESSION_SUFFIX, TFRecordFile, normalize_compression
from factory.processes import alive


def shard_paths(prefix: str | Path, shards: int, compression: str | None) -> list[Path]:
    prefix = Path(prefix)
    suffix = ".tfrecord" + COMPRESSION_SUFFIX[compression]
    return [prefix.with_name(f"{prefix.name}-{i:05d}-of-{shards:05d}{suffix}") for i in range(shards)]


class RecordWriter:
    """Writes validated records round-robin into ``shards`` TFRecord files.

    Records go to hidden ``.<shard>.partial-<pid>`` files; ``close()`` renames
    them all into place at once, so readers see either no new shards or all of
    them, and a crash leaves no partial shard behind. Existing shards under the
    same prefix are an error unless ``overwrite=True``; they are replaced only
    when the new ones are complete. Leaving the ``with`` block by an exception
    discards the partial files and keeps whatever was there before.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        prefix: str | Path,
        shards: int = 1,
        compression: str | None = None,
        overwrite: bool = False,
    ):
        if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
            raise RecordError(f"shards: expected a positive integer, got {shards!r}")
        self.spec = spec
        self.compression = normalize_compression(compression)
        self.prefix = Path(prefix)
        self.paths = shard_paths(self.prefix, shards, self.compression)
        directory = self.prefix.parent
        existing = sorted(
            glob.glob(
                glob.escape(str(self.prefix)) + "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].tfrecord*"
            )
        )
        if existing and not overwrite:
            raise RecordError(
                f"{existing[0]} already exists ({len(existing)} shard file(s) under {self.prefix}-*); "
                "pass overwrite=True (--overwrite) to replace them, or choose another output prefix"
            )
        self._replaced = [Path(p) for p in existing]
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RecordError(f"cannot create the output directory {directory}: {err.strerror}") from None
        self._clean_stale_partials()
        self._partials = [p.with_name(f".{p.name}.partial-{os.getpid()}") for p in self.paths]
        self._writers: list[TFRecordFile] = []
        try:
            for partial in self._partials:
                self._writers.append(TFRecordFile(partial, self.compression))
        except BaseException:
            # Interrupted (Ctrl-C) or failed while opening: no caller holds the writer to abort it.
            self.closed = False
            self.abort()
            raise
        self.encoders_for = encoders_for(spec)
        self.count = 0
        self.closed = False

    def _clean_stale_partials(self) -> None:
        pattern = glob.escape(str(self.prefix.with_name("." + self.prefix.name))) + "-*.partial-*"
        for path in glob.glob(pattern):
            pid = path.rsplit("-", 1)[-1]
            if pid.isdigit() and not alive(int(pid)):
                Path(path).unlink(missing_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        """Validate, encode and write one record (a dict of feature name to value)."""
        self._write(encode_record(self.spec, record, self.count, self.encoders_for))

    def write_many(self, records: Mapping[str, Any] | Iterable[Mapping[str, Any]], chunk: int = 65536) -> int:
        """Write a dict of equally long columns (fast path) or an iterable of records.

        Returns the number of records written by this call.
        """
        before = self.count
        if isinstance(records, Mapping):
            lengths = {len(v) for v in records.values() if v is not None}
            rows = lengths.pop() if len(lengths) == 1 else None
            if rows is None:
                encode_columns(self.spec, records, self.count, self.encoders_for)  # raises the error
            for lo in range(0, rows, chunk):
                part = {k: (None if v is None else v[lo : lo + chunk]) for k, v in records.items()}
                self._write(encode_columns(self.spec, part, self.count, self.encoders_for))
        else:
            for record in records:
                self.write(record)
        return self.count - before

    def _write(self, data: bytes | list[bytes]) -> None:
        """Write one serialized record, or a list of them, continuing the round-robin over the shards."""
        if self.closed:
            raise RecordError("the writer is closed")
        if isinstance(data, bytes):
            self._writers[self.count % len(self._writers)].write(data)
            self.count += 1
            return
        # Record k of the list goes to shard (count + k) % shards: one write per shard.
        shards = len(self._writers)
        for k in range(min(shards, len(data))):
            self._writers[(self.count + k) % shards].write_many(data[k::shards])
        self.count += len(data)

    def close(self) -> list[Path]:
        """Finish the shards and move them into place; returns their paths."""
        if self.closed:
            return self.paths
        for w in self._writers:
            w.close()
        for old in self._replaced:
            if old not in self.paths:
                old.unlink(missing_ok=True)
        for partial, final in zip(self._partials, self.paths, strict=True):
            os.replace(partial, final)
        self.closed = True
        return self.paths

    def abort(self) -> None:
        """Discard everything written; existing shards stay as they were."""
        if self.closed:
            return
        for w in self._writers:
            w.close()
        for partial in self._partials:
            partial.unlink(missing_ok=True)
        self.closed = True

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
