"""The sharded, atomic TFRecord writer (``FeatureSpec.writer``).

A set of shards appears all at once or not at all, also when the process is
killed: records go to hidden ``.<shard>.partial-<pid>`` files; ``close()``
flushes them to the disk, writes a journal (``.<prefix>.journal``: which
partial becomes which shard, which old shards go) and only then renames. The
next writer on the same prefix finishes what a journal of a dead process lists
(``recover``), so a rerun of an interrupted ``factory write`` completes the set
before writing it again. Readers refuse an incomplete set meanwhile
(``factory.features.shards.check_complete``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec

from factory.errors import FactoryError, RecordError, disk_full, is_disk_full
from factory.features.encoder import (
    encode_columns,
    encode_record,
    encoders_for,
)
from factory.features.shards import existing_shards, shard_paths
from factory.features.tfrecord import TFRecordFile, normalize_compression
from factory.processes import alive


def journal_path(prefix: str | Path) -> Path:
    """The journal of the set under ``prefix``: present only while its shards are being renamed into place."""
    prefix = Path(prefix)
    return prefix.with_name(f".{prefix.name}.journal")


def _sync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable (best effort: not every file system can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_journal(path: Path, entry: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _finish(path: Path, entry: dict) -> None:
    """Do what a journal lists: remove the old shards, rename the partial files into place, drop the journal."""
    directory = path.parent
    for name in entry["remove"]:
        (directory / name).unlink(missing_ok=True)
    for partial, final in entry["moves"]:
        if (directory / partial).exists():
            os.replace(directory / partial, directory / final)
    _sync_directory(directory)
    path.unlink(missing_ok=True)


def recover(prefix: str | Path) -> list[Path]:
    """Finish the set an interrupted writer left under ``prefix``; returns its shards ([] if there was none).

    A journal exists only once every partial file is complete and on the disk, so
    the renames it lists are finished. If its files are gone (removed by hand),
    what is left of that set is removed instead and [] returned. A journal of a
    live process is that process's business: ``RecordError``.
    """
    path = journal_path(prefix)
    for stale in path.parent.glob(glob.escape(path.name) + ".tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not alive(int(pid)):
            stale.unlink(missing_ok=True)
    if not path.exists():
        return []
    try:
        entry = json.loads(path.read_text())
        pid, moves = int(entry["pid"]), [(str(a), str(b)) for a, b in entry["moves"]]
        entry["remove"] = [str(n) for n in entry["remove"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RecordError(
            f"{path}: unreadable write journal ({err}); delete it and write the set again with --overwrite"
        ) from None
    if pid != os.getpid() and alive(pid):
        raise RecordError(
            f"{path}: another writer (process {pid}) is renaming its shards under {prefix}; wait until it ends"
        )
    directory = path.parent
    if any(not (directory / a).exists() and not (directory / b).exists() for a, b in moves):
        for a, b in moves:  # the set cannot be completed: remove what is left of it
            (directory / a).unlink(missing_ok=True)
            (directory / b).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return []
    _finish(path, entry)
    return [directory / b for _, b in moves]


class RecordWriter:
    """Writes validated records round-robin into ``shards`` TFRecord files.

    ``close()`` moves them all into place as one step that survives a kill (see
    the module docstring), so readers see either no new shards or all of them.
    Existing shards under the same prefix are an error unless ``overwrite=True``;
    they are replaced only when the new ones are complete. The shards of an
    interrupted earlier write are completed first and then replaced, without
    ``overwrite``. Leaving the ``with`` block by an exception discards the partial
    files and keeps whatever was there before. A full disk is a ``StorageError``
    naming the shard and the free space, with nothing half-written left.
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
        self.closed = True  # until the partial files are open
        directory = self.prefix.parent
        recovered = set(recover(self.prefix)) if directory.is_dir() else set()
        existing = existing_shards(self.prefix)
        if existing and not overwrite and not set(existing) <= recovered:
            raise RecordError(
                f"{existing[0]} already exists ({len(existing)} shard file(s) under {self.prefix}-*); "
                "pass overwrite=True (--overwrite) to replace them, or choose another output prefix"
            )
        self._replaced = existing
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(directory) from None
            raise RecordError(f"cannot create the output directory {directory}: {err.strerror}") from None
        self._clean_stale_partials()
        self._partials = [p.with_name(f".{p.name}.partial-{os.getpid()}") for p in self.paths]
        self._writers: list[TFRecordFile] = []
        self._entry: dict | None = None  # the journal's content once prepared
        self.closed = False
        try:
            for partial in self._partials:
                self._writers.append(TFRecordFile(partial, self.compression))
        except OSError as err:
            raise self._failed(err, len(self._writers)) from None
        except BaseException:
            # Interrupted (Ctrl-C) while opening: no caller holds the writer to abort it.
            self.abort()
            raise
        self.encoders_for = encoders_for(spec)
        self.count = 0
        # Values left out of the records written so far, by feature name: missing values.
        self.missing: Counter[str] = Counter()

    def _clean_stale_partials(self) -> None:
        pattern = glob.escape("." + self.prefix.name) + "-*.partial-*"
        for path in self.prefix.parent.glob(pattern):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not alive(int(pid)):
                path.unlink(missing_ok=True)

    def _failed(self, err: OSError, shard: int) -> FactoryError:
        """Discard everything written and explain an ``OSError`` met while writing shard ``shard``."""
        self.abort()
        path = self.paths[min(shard, len(self.paths) - 1)]
        if is_disk_full(err):
            return disk_full(path)
        return RecordError(f"cannot write {path}: {err.strerror or err}; nothing was written")

    def write(self, record: Mapping[str, Any]) -> None:
        """Validate, encode and write one record (a dict of feature name to value)."""
        self._write(encode_record(self.spec, record, self.count, self.encoders_for, self.missing))

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
                self._write(encode_columns(self.spec, part, self.count, self.encoders_for, self.missing))
        else:
            for record in records:
                self.write(record)
        return self.count - before

    def write_framed(self, groups: Sequence[bytes], count: int) -> None:
        """Append ``count`` records framed elsewhere (``tfrecord.frames``, e.g. in another process):
        ``groups[k]`` holds the k-th, (k + shards)-th, ... of them, so it goes to the shard whose turn
        in the round-robin that is. Validated by whoever encoded them."""
        if self.closed or self._entry is not None:
            raise RecordError("the writer is closed")
        shards = len(self._writers)
        if len(groups) > min(shards, count):
            raise ValueError(f"write_framed: {len(groups)} groups for {count} records over {shards} shards")
        shard = self.count % shards
        try:
            for k, data in enumerate(groups):
                shard = (self.count + k) % shards
                self._writers[shard].write_framed(data)
        except OSError as err:
            raise self._failed(err, shard) from None
        self.count += count

    def _write(self, data: bytes | list[bytes]) -> None:
        """Write one serialized record, or a list of them, continuing the round-robin over the shards."""
        if self.closed or self._entry is not None:
            raise RecordError("the writer is closed")
        shards = len(self._writers)
        shard = self.count % shards
        try:
            if isinstance(data, bytes):
                self._writers[shard].write(data)
                self.count += 1
                return
            # Record k of the list goes to shard (count + k) % shards: one write per shard.
            for k in range(min(shards, len(data))):
                shard = (self.count + k) % shards
                self._writers[shard].write_many(data[k::shards])
        except OSError as err:
            raise self._failed(err, shard) from None
        self.count += len(data)

    def prepare(self) -> Path:
        """Commit the set without moving it into place; returns the journal's path.

        The shards are flushed to the disk and the journal written: from now on the
        set is complete, and ``close()`` (or, after a crash, the next writer on this
        prefix, see ``recover``) moves it into place. Nothing is visible to readers yet.
        """
        journal = journal_path(self.prefix)
        if self._entry is not None:
            return journal
        if self.closed:
            raise RecordError("the writer is closed")
        entry = {
            "pid": os.getpid(),
            "moves": [[p.name, f.name] for p, f in zip(self._partials, self.paths, strict=True)],
            "remove": [old.name for old in self._replaced if old not in self.paths],
        }
        shard = 0
        try:
            for i, w in enumerate(self._writers):
                shard = i
                w.close()
            shard = len(self._writers)
            _write_journal(journal, entry)
        except OSError as err:
            raise self._failed(err, shard) from None
        self._entry = entry
        return journal

    def close(self) -> list[Path]:
        """Finish the shards and move them into place; returns their paths."""
        if self.closed and self._entry is None:
            return self.paths
        journal = self.prepare()
        _finish(journal, self._entry)
        self._entry = None
        self.closed = True
        return self.paths

    def abort(self) -> None:
        """Discard everything written; existing shards stay as they were (a prepared set is kept: see ``prepare``)."""
        if self.closed or self._entry is not None:
            return
        self.closed = True
        for w in self._writers:
            with contextlib.suppress(OSError):  # a full disk fails the last flush too; the file goes anyway
                w.close()
        for partial in self._partials:
            partial.unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
