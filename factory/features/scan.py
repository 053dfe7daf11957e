"""The ``auto`` statistics of the training records: one pass over them, once per run directory.

``scan`` reads every record once and hands each feature's values to what asked for
them: the summaries of ``factory stats`` (``factory.features.profile``) and the
``fit`` of each ``auto`` feature's statistic (``factory.features.statistics``). A
statistic sees what training reads: a missing feature counts as its ``default``, a
padded variable-length feature its real values up to ``max_length`` (never the
padding), an image its decoded pixels.

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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from factory.errors import ConfigError, RecordError
from factory.features.accumulators import Batch, Moments, Sample, TextCounts, ranked
from factory.features.feature import MISSING_VALUE, Feature
from factory.features.parsing import storage_dtype
from factory.features.pipeline import explain_errors
from factory.features.reading import count_records, lacks, record_keys, resolve_files
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


class Column:
    """Everything gathered about one feature: the values as stored (``data``, if ``summary``:
    ``Moments`` of one channel and a ``Sample`` for the histogram, or a ``Counter`` of text)
    and the ``statistic`` of an ``auto`` feature (if ``auto``), fitted on the values training reads."""

    def __init__(self, feature: Feature, summary: bool, auto: bool):
        self.f = feature
        self.records = 0
        self.missing = 0
        self.data: Moments | TextCounts | None = None
        self.sample: Sample | None = None
        if summary:
            self.data = TextCounts(feature.name) if feature.dtype == "string" else Moments(1)
            self.sample = None if feature.dtype == "string" else Sample(1)
        self.statistic: Statistic | None = Statistic.of(feature) if auto else None

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
    names the file, record and feature of a record that cannot be read.
    """
    summary, auto = set(summary), set(auto)
    features = [f for f in spec.all() if f.name in summary | auto]
    columns = {f.name: Column(f, f.name in summary, f.name in auto) for f in features}
    paths = resolve_files(files)
    # Every feature is read as a flat list of values with its length per record, so that
    # a missing feature is seen as missing (not as its default) and padding never enters.
    view = {f.name: tf.io.RaggedFeature(storage_dtype(f), row_splits_dtype=tf.int64) for f in features}
    plain = spec.without_auto()  # to explain a bad record; auto statistics play no part in reading

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, view) if view else {}
        out = {"": tf.size(serialized)}
        for f in features:
            values, lengths = parsed[f.name].flat_values, parsed[f.name].row_lengths()
            if f.encoding:
                # One encoded image per record that has one; a record with several is reported below.
                values = decode_images(f, values)
            out[f.name] = (values, lengths)
            if f.text is not None and f.name in auto:  # tokens counted by the tokenizer serving uses
                out[f.name] += batch_counts(f.text, values)
        return out

    batch_size = _batch_size(features)
    located = _Locator(paths, compression)
    total = 0
    ds = _records(paths, compression).batch(batch_size)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    draws = np.random.default_rng(0)  # the summaries' samples: the same records for every feature
    with explain_errors(plain, paths, compression):
        for batch in ds.prefetch(2):
            keys = draws.random(int(batch[""]))
            for f in features:
                values, lengths, *tokens = (t.numpy() for t in batch[f.name])
                _check_lengths(f, lengths, located, total)
                if f.required and f.name in auto and not lengths.all():
                    # Training would stop on this record: say so now, not "no values to compute".
                    path, i = located(total + int(np.flatnonzero(lengths == 0)[0]))
                    raise lacks(path, i, f.name, f.describe(), record_keys(path, i, compression))
                columns[f.name].add(values, lengths, keys, tokens or None)
            total += int(batch[""])
    return paths, total, columns


def _records(paths: list[str], compression: str | None) -> tf.data.Dataset:
    """Every record of ``paths`` in order, through one pipeline (a reader per run of files that
    share a compression): a pipeline per file would start cold and trace the parse each time."""
    runs: list[tuple[str, list[str]]] = []
    for path in paths:
        kind = compression_of(path, compression)
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(path)
        else:
            runs.append((kind, [path]))
    datasets = [tf.data.TFRecordDataset(files, compression_type=kind) for kind, files in runs]
    ds = datasets[0]
    for more in datasets[1:]:
        ds = ds.concatenate(more)
    return ds


def _batch_size(features: Sequence[Feature]) -> int:
    """Records per batch: ``BATCH_SIZE``, fewer when records hold many values (decoded images),
    so that a batch holds about ``BATCH_VALUES`` values at most."""
    per_record = sum(math.prod(f.shape) if not f.variable else (f.max_length or 16) for f in features) or 1
    return max(16, min(BATCH_SIZE, BATCH_VALUES // per_record))


class _Locator:
    """The file and the record in it of a record counted over all files, for messages (counts files only then)."""

    def __init__(self, paths: list[str], compression: str | None):
        self.paths, self.compression = paths, compression

    def __call__(self, index: int) -> tuple[str, int]:
        for path in self.paths:
            count = count_records(path, self.compression) if len(self.paths) > 1 else index + 1
            if index < count:
                return path, index
            index -= count
        return self.paths[-1], index


def _check_lengths(f: Feature, lengths: np.ndarray, located: _Locator, offset: int) -> None:
    """A fixed-shape feature holds all its values or none (missing)."""
    if f.variable:
        return
    bad = np.flatnonzero((lengths != 0) & (lengths != f.size))
    if len(bad):
        i = int(bad[0])
        path, index = located(offset + i)
        raise RecordError(
            f"{path}, record {index}: feature '{f.name}' holds {int(lengths[i])} values, but "
            f"{f.describe()} holds {f.size}; check the files with `factory check`"
        )


# -- the auto statistics ---------------------------------------------------------------------------


def compute_statistics(spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None) -> dict[str, Any]:
    """One pass over ``files``: the statistics of every ``auto`` feature, as a plain JSON dict.

    ``{"format": 1, "records": N, "files": [...], "features": {name: entry}, "summary": {name: summary}}``,
    an entry holding ``normalize: {mean, std}`` (lists, one value per channel,
    after ``scale``), ``vocabulary: [...]`` and/or ``fill: [...]``, and ``declared``
    (what it was computed for; see ``Statistic.declared``); ``summary`` holds every
    feature's ``Column.summary`` (what drift checks compare new records with). ``compression``: None (the default)
    infers each file's from its extension. ``RecordError`` for unreadable records
    or a feature without values.
    """
    names = [f.name for f in spec.auto_features]
    every = [f.name for f in spec.all()]
    paths, records, columns = scan(spec, files, compression, summary=every, auto=names)
    features = {f.name: columns[f.name].statistic.entry() for f in spec.auto_features}
    summary = {name: columns[name].summary() for name in every}
    return {"format": FORMAT, "records": records, "files": paths, "features": features, "summary": summary}


# -- statistics.json in the run directory ---------------------------------------------------------


def resolve_statistics(
    spec: FeatureSpec,
    files: str | Sequence[str],
    compression: str | None,
    run_dir: str | os.PathLike,
) -> FeatureSpec:
    """``spec`` with its ``auto`` statistics filled in, computed once per run directory.

    If ``run_dir/statistics.json`` exists (a resumed run, or a re-run) it is
    read, and must have been computed for the same ``auto`` declarations
    (``ConfigError`` otherwise: start a new run dir or delete the file).
    Otherwise one pass over ``files`` (the training records; ``compression``
    None infers it per file) computes them and the file is written atomically.
    A vocabulary that leaves training values out needs ``oov_buckets``
    (``ConfigError`` before anything is written).
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
    stats = compute_statistics(spec, files, compression)
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
