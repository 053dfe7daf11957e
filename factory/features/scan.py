"""The ``auto`` statistics of the training records: one pass over them, once per run directory.

``scan`` reads every record once and hands each feature's values to what asked for
them: the summaries of ``factory stats`` (``factory.features.profile``) and the
``fit`` of each ``auto`` feature's statistic (``factory.features.statistics``). A
statistic sees what training reads: a missing feature counts as its ``default``, a
padded variable-length feature its real values up to ``max_length`` (never the
padding), an image its decoded pixels.

The pass reads each file apart (``scan_parts``: one part per file, its record count and its
columns) and adds the parts up in file order (``merge_parts``), in this process or as
Ray tasks over the files (``factory.cluster.ray_scan.scan_on_ray``, which its callers above this
layer pass in as ``scan_with``): a batch never spans
two files, and a record's key in the summaries' samples comes from its file's number in the
pass and its place in the file, so a file's part is the same wherever it is read, and the
merged result the same, bit for bit, whichever engine read the parts.

``compute_statistics`` is that pass for the ``auto`` features alone.
``resolve_statistics`` runs it once per run directory and keeps the result in
``RUN_DIR/statistics.json`` (``factory.run_dir.STATISTICS``; a plain JSON dict, so a
checkpoint can carry it as well); a resumed run reads the file instead of
recomputing. The constants then enter the spec (``FeatureSpec.with_statistics``),
and from there the training pipeline and the exported signatures alike.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from factory.errors import ConfigError, RecordError
from factory.features.accumulators import Batch, Moments, Sample, TextCounts, ranked
from factory.features.feature import MISSING_VALUE, Feature
from factory.features.parsing import storage_dtype
from factory.features.pipeline import explain_errors
from factory.features.reading import lacks, record_keys, resolve_files
from factory.features.statistics import Statistic, describe_entry
from factory.features.text import batch_counts
from factory.features.tfrecord import compression_of
from factory.features.transform import decode_images
from factory.run_dir import STATISTICS, read_json, write_json

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec

log = logging.getLogger("factory")

# Bumped when the layout of the statistics changes; a file of another format is recomputed by deleting it.
FORMAT = 1
BATCH_SIZE = 16384
# At most about this many values in a batch (a batch of large decoded images holds fewer records).
BATCH_VALUES = 1 << 22


# A summary lists this many of a string feature's most frequent values (``factory stats`` prints 10).
TOP_VALUES = 100
# A number's histogram: the bins between these quantiles of the values (fewer when values repeat).
HISTOGRAM_QUANTILES = np.linspace(0.0, 1.0, 21)
# The random draws of a file's part of the pass: Philox streams keyed by the file's number in the
# pass and by what they are for (``_key``): the records' keys in the summaries' samples, and the
# keys of the samples that draw their own (a statistic's, or the values of decoded images).
_RECORD_DRAWS, _SAMPLE_DRAWS = 0, 1


class Column:
    """Everything gathered about one feature: the values as stored (``data``, if ``summary``:
    ``Moments`` of one channel and a ``Sample`` for the histogram, or a ``Counter`` of text)
    and the ``statistic`` of an ``auto`` feature (if ``auto``), fitted on the values training reads."""

    def __init__(self, feature: Feature, summary: bool, auto: bool, part: int | None = None):
        """``part``: the number of the file whose records it gathers (``scan_parts``); its samples
        then draw their keys from that file's stream."""
        self.f = feature
        self.records = 0
        self.missing = 0
        self.data: Moments | TextCounts | None = None
        self.sample: Sample | None = None
        if summary:
            self.data = TextCounts(feature.name) if feature.dtype == "string" else Moments(1)
            self.sample = None if feature.dtype == "string" else Sample(1)
        self.statistic: Statistic | None = Statistic.of(feature) if auto else None
        if part is not None:
            for sample in self.samples():
                sample.draw_from(_key(part, _SAMPLE_DRAWS))

    def samples(self) -> list[Sample]:
        """Its summary's sample and its statistic's."""
        own = [] if self.sample is None else [self.sample]
        return own + ([] if self.statistic is None else self.statistic.samples())

    def merge(self, other: Column) -> None:
        """Add what ``other`` (a column of the same feature, for the same ends) gathered from other records."""
        self.records += other.records
        self.missing += other.missing
        if self.data is not None:
            self.data.merge(other.data)
        if self.sample is not None:
            self.sample.merge(other.sample)
        if self.statistic is not None:
            self.statistic.merge(other.statistic)

    def add(
        self, values: np.ndarray, lengths: np.ndarray, keys: np.ndarray | None = None, tokens: Sequence | None = None
    ) -> None:
        """One batch: the flat ``values`` of its records, the number of values per record, (for the
        summary's sample) a draw per record, shared by every feature of the batch, and a text's
        ``tokens`` (``factory.features.text.batch_counts``)."""
        if self.f.missing is not None:
            values, lengths = _without_markers(self.f, values, lengths)
        missing = int(np.count_nonzero(lengths == 0))
        self.records += len(lengths)
        self.missing += missing
        f = self.f
        # The batch's moments and counts, computed once for the summary and every statistic.
        batch = Batch(values, f.channels)
        if isinstance(self.data, Moments):
            self.data.merge(batch.moments if f.channels == 1 else Moments.of(values))
            self.sample.add(values, None if keys is None else _value_keys(keys, lengths, values.size))
        elif self.data is not None:
            self.data.add(batch)
        if self.statistic is None:
            return
        if tokens is not None:
            self.statistic.fit((*tokens, len(values)), missing)
            return
        if f.variable and not f.ragged and f.max_length is not None:
            # Training truncates to max_length elements; count what it keeps.
            inner = int(np.prod(f.shape[1:], dtype=np.int64)) if len(f.shape) > 1 else 1
            starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
            batch = Batch(values[np.arange(len(values)) - starts < f.max_length * inner], f.channels)
        self.statistic.fit(batch, missing)

    def summary(self) -> dict[str, Any]:
        """The values as stored (``summary`` columns only): ``role``, ``dtype``, ``shape``, ``encoding``,
        ``records``, ``missing`` (records without a value: for a variable-length feature, empty ones),
        ``values`` (values present), then ``min``/``max``/``mean``/``std`` over all values of a number
        (decoded pixels for images; None without values) and its ``histogram`` (``edges``: quantiles
        of the values, ``fractions``: the share of values per bin, estimated from a bounded sample
        beyond 20,000 values), or ``distinct`` and ``top`` (the ``TOP_VALUES`` most frequent
        ``[value, count]`` pairs) of a string."""
        f, data = self.f, self.data
        out: dict[str, Any] = {
            "role": f.role,
            "dtype": f.dtype,
            "shape": list(f.shape),
            "encoding": f.encoding,
            "records": self.records,
            "missing": self.missing,
        }
        if isinstance(data, Moments):
            empty = data.count == 0
            out["values"] = data.count
            out["min"] = None if empty else _number(f, data.min)
            out["max"] = None if empty else _number(f, data.max)
            out["mean"] = None if empty else float(data.mean[0])
            out["std"] = None if empty else float(data.std[0])
            out["histogram"] = None if empty else histogram(self.sample.values()[:, 0])
        else:
            counts = data.text(strict=False)
            out["values"] = int(sum(counts.values()))
            out["distinct"] = len(counts)
            out["top"] = [[value, n] for value, n in ranked(counts, TOP_VALUES)]
        return out

    def text_counts(self) -> dict[str, int]:
        """How often each string occurs (``summary`` columns of strings only)."""
        return dict(self.data.text(strict=False))


def _without_markers(f: Feature, values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``missing:`` feature's records whose values are ``MISSING_VALUE`` (NaN, "", the smallest int64)
    throughout count as missing, as the graph fills them: their values go, their length becomes 0."""
    marker = MISSING_VALUE[f.dtype]
    flags = np.isnan(values) if f.dtype == "float32" else values == (marker.encode() if f.dtype == "string" else marker)
    if not flags.any():
        return values, lengths
    rows = flags.reshape(-1, f.size).all(axis=1)
    present = np.flatnonzero(lengths)
    lengths = lengths.copy()
    lengths[present[rows]] = 0
    return values.reshape(-1, f.size)[~rows].reshape(-1), lengths


def _value_keys(keys: np.ndarray, lengths: np.ndarray, count: int) -> np.ndarray | None:
    """The draw of each value: its record's (so a sample keeps whole records, the same for every
    feature); None when values do not follow the lengths (decoded images): the sample draws its own."""
    if count == len(keys) and (lengths == 1).all():
        return keys
    if count == int(lengths.sum()):
        return keys[lengths == 1] if lengths.max(initial=0) <= 1 else np.repeat(keys, lengths)
    return None


def histogram(values: np.ndarray) -> dict[str, list[float]]:
    """``{"edges": [...], "fractions": [...]}``: bins between quantiles of ``values`` (repeated ones merged),
    each holding ``fractions[i]`` of them; the last bin includes its upper edge."""
    edges = np.unique(np.quantile(values, HISTOGRAM_QUANTILES))
    if len(edges) == 1:
        return {"edges": [float(edges[0]), float(edges[0])], "fractions": [1.0]}
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": [float(e) for e in edges], "fractions": [float(c) for c in counts / counts.sum()]}


def _number(f: Feature, value: float) -> float | int:
    return int(value) if f.dtype in ("int64", "uint8") else float(value)


# -- the pass over the records --------------------------------------------------------------------


def scan(
    spec: FeatureSpec,
    files: str | Sequence[str],
    compression: str | None,
    summary: Iterable[str],
    auto: Iterable[str],
) -> tuple[list[str], int, dict[str, Column]]:
    """One pass over ``files``: ``(files, records, {name: Column})`` for the features in ``summary`` or ``auto``.

    ``compression`` None infers each file's from its extension. ``RecordError``
    names the file, record and feature of a record that cannot be read. The files'
    parts (``scan_parts``) merged in file order (``merge_parts``).
    """
    paths = resolve_files(files)
    records, columns = merge_parts(spec, summary, auto, scan_parts(spec, paths, compression, summary, auto))
    return paths, records, columns


def merge_parts(
    spec: FeatureSpec,
    summary: Iterable[str],
    auto: Iterable[str],
    parts: Iterable[tuple[int, int, dict[str, Column]]],
) -> tuple[int, dict[str, Column]]:
    """``(records, {name: Column})`` of ``parts`` (as ``scan_parts`` gives them) added up in the order given.

    Called with the parts in file order, by the pass in this process and by the pass on Ray
    alike: a mean and a std depend on the order of the merges in their last bits.
    """
    summary, auto = set(summary), set(auto)
    columns = {f.name: Column(f, f.name in summary, f.name in auto) for f in _features(spec, summary | auto)}
    records = 0
    for _, count, part in parts:
        records += count
        for name, column in columns.items():
            column.merge(part[name])
    return records, columns


def scan_parts(
    spec: FeatureSpec,
    paths: Sequence[str],
    compression: str | None,
    summary: Iterable[str],
    auto: Iterable[str],
    which: Iterable[int] | None = None,
) -> Iterator[tuple[int, int, dict[str, Column]]]:
    """Files ``paths[i]`` for each ``i`` in ``which`` (default: all, in order), each gathered apart:
    ``(i, records, {name: Column})`` per file, in the order of ``which`` (a file without records too).

    A batch never spans two files and a record's sample key depends on ``i`` and its place in
    the file alone (``record_draws``), so a file's part is the same whichever pass reads it: this
    process's, or a Ray task's (``factory.cluster.ray_scan``). ``RecordError`` names the file,
    record and feature of a record that cannot be read (the first of all ``paths``, when
    TensorFlow cannot parse one).
    """
    summary, auto = set(summary), set(auto)
    which = list(range(len(paths)) if which is None else which)
    features = _features(spec, summary | auto)
    if not which:
        return
    # Every feature is read as a flat list of values with its length per record, so that
    # a missing feature is seen as missing (not as its default) and padding never enters.
    view = {f.name: tf.io.RaggedFeature(storage_dtype(f), row_splits_dtype=tf.int64) for f in features}
    plain = spec.without_auto()  # to explain a bad record; auto statistics play no part in reading

    def parse(number, serialized):
        parsed = tf.io.parse_example(serialized, view) if view else {}
        out = {"": tf.size(serialized), "file": number}
        for f in features:
            values, lengths = parsed[f.name].flat_values, parsed[f.name].row_lengths()
            if f.encoding:
                # One encoded image per record that has one; a record with several is reported below.
                values = decode_images(f, values)
            out[f.name] = (values, lengths)
            if f.text is not None and f.name in auto:  # tokens counted by the tokenizer serving uses
                out[f.name] += batch_counts(f.text, values)
        return out

    def part(number: int) -> dict[str, Column]:
        return {f.name: Column(f, f.name in summary, f.name in auto, part=number) for f in features}

    ds = _file_batches(paths, which, compression, _batch_size(features))
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ahead = iter(which)  # the files not reached yet
    current, start, columns = -1, 0, {}
    with explain_errors(plain, paths, compression):
        for batch in ds.prefetch(2):
            number = int(batch["file"])
            if number != current:
                if current >= 0:
                    yield current, start, columns
                for skipped in ahead:  # files without records before this one
                    if skipped == number:
                        break
                    yield skipped, 0, part(skipped)
                current, start, columns = number, 0, part(number)
            count, path = int(batch[""]), paths[number]
            keys = record_draws(number, start, count)  # the summaries' samples: the same records for every feature
            for f in features:
                values, lengths, *tokens = (t.numpy() for t in batch[f.name])
                _check_lengths(f, lengths, path, start)
                if f.required and f.name in auto and not lengths.all():
                    # Training would stop on this record: say so now, not "no values to compute".
                    i = start + int(np.flatnonzero(lengths == 0)[0])
                    raise lacks(path, i, f.name, f.describe(), record_keys(path, i, compression))
                columns[f.name].add(values, lengths, keys, tokens or None)
            start += count
    if current >= 0:
        yield current, start, columns
    for skipped in ahead:
        yield skipped, 0, part(skipped)


def record_draws(file: int, start: int, count: int) -> np.ndarray:
    """The keys in the summaries' samples of records ``start`` to ``start + count`` of file number
    ``file`` of a pass: draws ``start`` onwards of a Philox stream keyed by the file (a counter-based
    generator: each step of its counter gives four draws), so a record's key depends on where
    the record is, not on which part of the pass reads it, nor in which batches."""
    skip = start % 4
    bits = np.random.Philox(counter=start // 4, key=_key(file, _RECORD_DRAWS))
    return np.random.Generator(bits).random(skip + count)[skip:]


def _key(file: int, use: int) -> int:
    """The Philox key of file number ``file``'s draws for ``use`` (``_RECORD_DRAWS`` or ``_SAMPLE_DRAWS``)."""
    return file | use << 64


def _features(spec: FeatureSpec, names: set[str]) -> list[Feature]:
    return [f for f in spec.all() if f.name in names]


def _file_batches(paths: Sequence[str], which: list[int], compression: str | None, batch_size: int) -> tf.data.Dataset:
    """``(i, batch)``: the records of ``paths[i]`` for each ``i`` in ``which``, in order, in batches of at
    most ``batch_size`` that never span two files, through one pipeline (a reader per run of files
    that share a compression): a pipeline per file would start cold and trace the parse each time."""
    runs: list[tuple[str, list[int]]] = []
    for i in which:
        kind = compression_of(paths[i], compression)
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(i)
        else:
            runs.append((kind, [i]))
    datasets = []
    for kind, numbers in runs:

        def read(number, path, kind=kind):
            batches = tf.data.TFRecordDataset(path, compression_type=kind).batch(batch_size)
            return batches.map(lambda batch: (number, batch))

        files = tf.data.Dataset.from_tensor_slices(
            (tf.constant(numbers, tf.int64), tf.constant([paths[i] for i in numbers], tf.string))
        )
        datasets.append(files.flat_map(read))
    ds = datasets[0]
    for more in datasets[1:]:
        ds = ds.concatenate(more)
    return ds


def _batch_size(features: Sequence[Feature]) -> int:
    """Records per batch: ``BATCH_SIZE``, fewer when records hold many values (decoded images),
    so that a batch holds about ``BATCH_VALUES`` values at most."""
    per_record = sum(math.prod(f.shape) if not f.variable else (f.max_length or 16) for f in features) or 1
    return max(16, min(BATCH_SIZE, BATCH_VALUES // per_record))


def _check_lengths(f: Feature, lengths: np.ndarray, path: str, start: int) -> None:
    """A fixed-shape feature holds all its values or none (missing); ``lengths`` are those of the
    records of ``path`` from record ``start`` on."""
    if f.variable:
        return
    bad = np.flatnonzero((lengths != 0) & (lengths != f.size))
    if len(bad):
        i = int(bad[0])
        raise RecordError(
            f"{path}, record {start + i}: feature '{f.name}' holds {int(lengths[i])} values, but "
            f"{f.describe()} holds {f.size}; check the files with `factory check`"
        )


# What runs the pass: ``scan``, or another with its signature and result (``scan_on_ray``).
Scan = Callable[..., tuple[list[str], int, dict[str, Column]]]


# -- the auto statistics ---------------------------------------------------------------------------


def compute_statistics(
    spec: FeatureSpec,
    files: str | Sequence[str],
    compression: str | None = None,
    scan_with: Scan | None = None,
) -> dict[str, Any]:
    """One pass over ``files``: the statistics of every ``auto`` feature, as a plain JSON dict.

    ``{"format": 1, "records": N, "files": [...], "features": {name: entry}, "summary": {name: summary}}``,
    an entry holding ``normalize: {mean, std}`` (lists, one value per channel,
    after ``scale``), ``vocabulary: [...]`` and/or ``fill: [...]``, and ``declared``
    (what it was computed for; see ``Statistic.declared``); ``summary`` holds every
    feature's ``Column.summary`` (what drift checks compare new records with). ``compression``: None (the default)
    infers each file's from its extension. ``RecordError`` for unreadable records
    or a feature without values. ``scan_with``: what runs the pass, called as ``scan`` (the
    default) is; ``factory.cluster.ray_scan.scan_on_ray`` runs it as Ray tasks over the files,
    with the same result, bit for bit.
    """
    names = [f.name for f in spec.auto_features]
    every = [f.name for f in spec.all()]
    paths, records, columns = (scan_with or scan)(spec, files, compression, summary=every, auto=names)
    features = {f.name: columns[f.name].statistic.entry() for f in spec.auto_features}
    summary = {name: columns[name].summary() for name in every}
    return {"format": FORMAT, "records": records, "files": paths, "features": features, "summary": summary}


# -- statistics.json in the run directory ---------------------------------------------------------


def resolve_statistics(
    spec: FeatureSpec,
    files: str | Sequence[str],
    compression: str | None,
    run_dir: str | os.PathLike,
    scan_with: Scan | None = None,
) -> FeatureSpec:
    """``spec`` with its ``auto`` statistics filled in, computed once per run directory.

    If ``run_dir/statistics.json`` exists (a resumed run, or a re-run) it is
    read, and must have been computed for the same ``auto`` declarations
    (``ConfigError`` otherwise: start a new run dir or delete the file).
    Otherwise one pass over ``files`` (the training records; ``compression``
    None infers it per file) computes them and the file is written atomically.
    A vocabulary that leaves training values out needs ``oov_buckets``
    (``ConfigError`` before anything is written). ``scan_with``: as ``compute_statistics`` takes it.
    """
    path = Path(run_dir) / STATISTICS
    if path.exists():
        stats = load_statistics(path)
        problems = statistics_problems(spec, stats)
        if problems:
            problems.append(
                f"{STATISTICS}: the feature spec changed since the statistics were computed; "
                f"start a new run dir, or delete {path} to compute them again from data.train"
            )
            raise ConfigError(problems, str(path))
        log.info(f"reusing the statistics in {path} (from {stats['records']} training records)")
        return spec.with_statistics(stats)

    started = time.perf_counter()
    stats = compute_statistics(spec, files, compression, scan_with)
    seconds = time.perf_counter() - started
    problems = [p for f in spec.auto_features for p in Statistic.of(f).problems(stats["features"][f.name])]
    if problems:
        raise ConfigError(problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, stats)
    what = f": {describe(stats)}" if stats["features"] else ""
    log.info(f"computed statistics from {stats['records']} training records in {seconds:.2f} s{what}; saved in {path}")
    return spec.with_statistics(stats)


def load_statistics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``statistics.json``; ``ConfigError`` naming the file when it is not one."""
    path = Path(path)
    try:
        stats = read_json(path)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{path}: cannot read the statistics ({err}); delete the file to compute them again from data.train"
        ) from None
    if not isinstance(stats, dict) or stats.get("format") != FORMAT or not isinstance(stats.get("features"), dict):
        raise ConfigError(
            f"{path}: not a statistics file of format {FORMAT}; delete it to compute the statistics again from data.train"
        )
    return stats


def statistics_problems(spec: FeatureSpec, stats: Mapping[str, Any]) -> list[str]:
    """How ``spec``'s ``auto`` features differ from those ``stats`` were computed for (empty: they match)."""
    problems = []
    stored = stats.get("features", {})
    for f in spec.auto_features:
        entry = stored.get(f.name)
        now = Statistic.of(f).declared()
        if entry is None:
            problems.append(f"features.{f.name}: `{f.waits_for}` now, but the statistics were computed without it")
            continue
        before = entry.get("declared", {})
        changed = [f"{key} {before.get(key)!r} -> {now[key]!r}" for key in now if before.get(key) != now[key]]
        changed += [f"{key} {before[key]!r} -> (none)" for key in before if key not in now]
        if changed:
            problems.append(f"features.{f.name}: changed since the statistics were computed: {', '.join(changed)}")
    auto = {f.name for f in spec.auto_features}
    for name in stored:
        if name not in auto:
            problems.append(f"features.{name}: has statistics, but is no longer `auto` in the spec")
    return problems


def describe(stats: Mapping[str, Any]) -> str:
    """``x: mean/std of 4 channels, s: vocabulary of 2 (of 5 values)`` for a log line."""
    parts = []
    for name, entry in stats.get("features", {}).items():
        parts.append(f"{name}: {describe_entry(entry)}")
    return ", ".join(parts)
