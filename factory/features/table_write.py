"""Records from a table file, block by block, in parallel processes: what ``factory write`` runs.

Each block of a ``table_blocks.Plan`` becomes a ``BlockResult`` on its own: its records
validated, encoded and framed (``tfrecord.frames``), ready to be appended to the shards
of their part. ``run_blocks`` hands out the blocks (to ``workers`` processes, or in this
process) and yields their results in file order, at most ``2 x workers`` ahead, so
memory is bounded by the block size whatever the file's. The caller appends each result
to its ``RecordWriter``s (``write_framed``); since a block's records are grouped by
their turn in the round-robin over the shards, not by shard, the shards come out the
same for any number of workers: record k of a part goes to shard k % shards.

A block is read column-wise (pyarrow, ``RecordWriter``'s column encoder) and, if that
meets anything (a bad value, a row of the wrong width, a cell pyarrow reads otherwise),
read again row by row, which names each bad row as ``factory write`` always has. With
``--split`` a row's part is drawn from its place in the file (``SplitRule``), so the
parts do not depend on the blocks, the workers, or which bad rows were skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factory.errors import RecordError
from factory.features.encoder import encode_columns, encode_record, encoders_for
from factory.features.sources import Row
from factory.features.table_blocks import Block, BlockReader, Plan, column_errors
from factory.features.tfrecord import frames

# Bad rows a block reports by name (the rest are counted): as many as the command shows.
SHOWN_BAD = 5
# Rows encoded together when a block is read row by row.
ROW_BATCH = 4096


@dataclass(frozen=True)
class SplitRule:
    """Each row to one of ``names`` with probabilities ``fractions``, drawn from ``seed`` and the row's
    place in the file (its line, or its row): a hash, so the same file and seed give the same parts
    however the file is cut, read or skipped through."""

    names: tuple[str, ...]
    fractions: tuple[float, ...]
    seed: int = 0

    def parts(self, positions: np.ndarray) -> np.ndarray:
        """The part (an index into ``names``) of the rows at ``positions``."""
        bounds = np.cumsum(self.fractions)
        draws = _uniform(np.asarray(positions, dtype=np.uint64), self.seed)
        return np.minimum(np.searchsorted(bounds, draws, side="right"), len(self.names) - 1)


def _uniform(positions: np.ndarray, seed: int) -> np.ndarray:
    """A draw in [0, 1) per position: SplitMix64 of (seed, position)."""
    with np.errstate(over="ignore"):
        x = positions + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class Job:
    """What every block of one write needs: the plan, the shard count of each part, the split."""

    plan: Plan
    shards: tuple[int, ...]
    split: SplitRule | None = None
    skip_bad_rows: bool = False


@dataclass
class PartOutput:
    """A block's records of one part: ``groups[k]`` frames its k-th, (k + shards)-th, ... record."""

    count: int = 0
    groups: list[bytes] = field(default_factory=list)


@dataclass
class BlockResult:
    """One block, encoded: its records per part, the values left out as missing, its bad rows
    (the first ``SHOWN_BAD`` as ``(where, why)``; ``bad`` counts them all). Without ``skip_bad_rows``
    a block stops at its first bad row."""

    parts: list[PartOutput]
    missing: Counter = field(default_factory=Counter)
    bad: int = 0
    reasons: list[tuple[str, str]] = field(default_factory=list)


class _Encoding:
    """One process's state for a job: the block reader and the spec's encoders."""

    def __init__(self, job: Job, threads: bool):
        self.job = job
        self.reader = BlockReader(job.plan, threads=threads)
        self.encoders = encoders_for(job.plan.spec)
        self.errors = column_errors()

    def block(self, block: Block) -> BlockResult:
        pieces: list[tuple[list[bytes], np.ndarray]] = []
        missing: Counter = Counter()
        try:
            for columns, positions in self.reader.columns(block):
                records = encode_columns(self.job.plan.spec, columns, 0, self.encoders, missing)
                pieces.append((records, positions))
        except self.errors:
            return self._by_rows(block)
        return self._result(pieces, missing)

    def _by_rows(self, block: Block) -> BlockResult:
        """The block row by row: good rows encoded in batches, bad ones named (and, skipping, left out)."""
        return self.rows(iter(self.reader.rows(block)))

    def rows(self, rows: Iterator[Row], limit: int | None = None) -> BlockResult:
        """Up to ``limit`` rows of ``rows`` (all by default) as one result; bad rows named (and, skipping,
        left out); without skipping the first bad row ends it."""
        pieces: list[tuple[list[bytes], np.ndarray]] = []
        missing: Counter = Counter()
        bad: list[tuple[str, str]] = []
        count = 0
        pending: list[Row] = []

        def flush() -> None:
            nonlocal count
            records, kept, problems = self._encode_rows(pending, missing)
            pieces.append((records, np.asarray([_position(r.where) for r in kept], dtype=np.int64)))
            for where, why in problems:
                count += 1
                if len(bad) < SHOWN_BAD:
                    bad.append((where, why))
            pending.clear()

        stop = not self.job.skip_bad_rows
        for row in itertools.islice(rows, limit):
            if row.error is None and row.record:
                pending.append(row)
                if len(pending) >= ROW_BATCH:
                    flush()
                    if count and stop:
                        break
                continue
            flush()  # rows before this one first, so that bad rows are met in file order
            if count and stop:
                break
            if row.error is not None:
                problem = row.error
            else:  # no declared value at all: the encoder names the first required feature
                try:
                    record = encode_record(self.job.plan.spec, row.record, -1, self.encoders, missing)
                except RecordError as err:
                    problem = without_index(str(err))
                else:
                    pieces.append(([record], np.asarray([_position(row.where)], dtype=np.int64)))
                    continue
            count += 1
            if len(bad) < SHOWN_BAD:
                bad.append((row.where, problem))
            if stop:
                break
        else:
            flush()
        result = self._result(pieces, missing)
        result.bad, result.reasons = count, bad
        return result

    def _encode_rows(self, rows: list[Row], missing: Counter) -> tuple[list[bytes], list[Row], list[tuple[str, str]]]:
        """Good rows through the column encoder; a batch with a bad record is redone row by row."""
        if not rows:
            return [], [], []
        spec = self.job.plan.spec
        names = {name for row in rows for name in row.record}
        columns = {name: column_of([row.record.get(name) for row in rows]) for name in names}
        batch: Counter = Counter()
        try:
            records = encode_columns(spec, columns, 0, self.encoders, batch)
        except RecordError:
            pass  # the records themselves are the reference: redo them one by one
        else:
            missing.update(batch)
            return records, rows, []
        records, kept, problems = [], [], []
        for row in rows:
            try:
                records.append(encode_record(spec, row.record, -1, self.encoders, missing))
            except RecordError as err:
                problems.append((row.where, without_index(str(err))))
                if not self.job.skip_bad_rows:
                    break
                continue
            kept.append(row)
        return records, kept, problems

    def _result(self, pieces: list[tuple[list[bytes], np.ndarray]], missing: Counter) -> BlockResult:
        job = self.job
        per_part: list[list[bytes]] = [[] for _ in job.shards]
        for records, positions in pieces:
            if job.split is None:
                per_part[0].extend(records)
                continue
            parts = job.split.parts(positions).tolist()
            for record, part in zip(records, parts, strict=True):
                per_part[part].append(record)
        outputs = []
        for records, shards in zip(per_part, job.shards, strict=True):
            groups = [frames(records[k::shards]) for k in range(min(shards, len(records)))]
            outputs.append(PartOutput(len(records), groups))
        return BlockResult(outputs, missing)


def _position(where: str) -> int:
    """``line 7`` / ``row 3`` -> 7 / 3."""
    return int(where.rsplit(" ", 1)[-1])


def without_index(message: str) -> str:
    """The encoder's ``record N: ...`` message without its own count (the row is named by its place instead)."""
    if message.startswith("record "):
        number, sep, rest = message[7:].partition(": ")
        if sep and number.lstrip("-").isdigit():
            return rest
    return message


def column_of(values: list) -> Any:
    """One feature's values from a batch of records, in the form the column encoder takes.

    Equally shaped numeric arrays (or plain numbers) become one array, which the
    encoder validates and encodes whole; anything else (missing values, nested
    lists, strings, image bytes) an object array that it takes value by value.
    """
    first = values[0]
    if isinstance(first, np.ndarray):
        if all(isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype.kind in "iuf" for v in values):
            return np.stack(values)
    elif all(type(v) in (int, float) for v in values):
        return np.asarray(values)
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # element by element: numpy would merge equal-length lists
        column[i] = value
    return column


# -- running the blocks ----------------------------------------------------------------------------


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def run_blocks(job: Job, workers: int = 1) -> Iterator[BlockResult]:
    """The results of ``job``'s blocks in file order: in this process (one worker, one block, or a
    stream), else in ``workers`` processes with at most two blocks each in flight."""
    plan = job.plan
    if plan.stream:  # read once, in order: results of ROW_BATCH rows as they arrive
        encoding = _Encoding(job, threads=True)
        rows = plan.stream_rows()
        while True:
            result = encoding.rows(rows, ROW_BATCH)
            if not result.bad and not any(part.count for part in result.parts):
                return
            yield result
    # Parquet is read here, 65,536 rows at a time (a row group may hold a million: too much to hold
    # encoded, and too coarse for the workers), and the rows handed over.
    blocks = plan.batches() if plan.format == "parquet" else plan.blocks()
    if workers <= 1 or plan.single_block():
        encoding = _Encoding(job, threads=True)
        for block in blocks:
            yield encoding.block(block)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_start, initargs=(job,))
    pending: deque = deque()
    try:
        queued = blocks
        # The workers start first, before this process reads anything with pyarrow (whose readers run
        # threads a fork would copy mid-work); a Ctrl-C meanwhile waits until they ignore it (``_start``).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool.submit(os.getpid).result()
            for block in queued:
                pending.append(pool.submit(_encode, block))
                if len(pending) >= 2 * workers:
                    break
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool:
                raise RecordError(
                    f"{plan.path}: a worker process ended unexpectedly (killed, or out of memory?); nothing was "
                    "written. Run the command again, with fewer --workers or a smaller --block-size"
                ) from None
            for block in queued:
                pending.append(pool.submit(_encode, block))
                break
            yield result
    finally:
        if pending:  # stopped early (a bad row, Ctrl-C): the blocks under way are not wanted
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                with contextlib.suppress(OSError):
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
        else:
            pool.shutdown(wait=True)


def _context() -> multiprocessing.context.BaseContext:
    """``fork`` on Linux: a worker starts in milliseconds with the spec and plan in memory (``spawn``
    takes about a second per worker to import numpy, pyarrow and factory again). The threads this
    process has by then are idle pools (numpy's, jemalloc's); nothing here has read with pyarrow yet."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


_WORKER: _Encoding | None = None


def _start(job: Job) -> None:
    """A worker process: Ctrl-C is the parent's to handle (it stops the pool)."""
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while it forked
    _WORKER = _Encoding(job, threads=False)


def _encode(block: Block) -> BlockResult:
    assert _WORKER is not None
    return _WORKER.block(block)


def encode_block(job: Job, block: Block) -> BlockResult:
    """One block of ``job`` in this process (a Ray task's)."""
    return _Encoding(job, threads=False).block(block)
