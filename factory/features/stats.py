"""Statistics from the training records: ``normalize: auto``, ``vocabulary: auto`` and data summaries.

One pass over the records computes what an ``auto`` feature asks for:

- ``preprocess.normalize: auto``: mean and population standard deviation per
  channel (the last dimension; one value for a scalar), in float64, over every
  value training sees: a missing feature counts as its ``default``, a padded
  variable-length feature counts its real values up to ``max_length`` (never
  the padding), images count their decoded pixels. They are stored *after*
  ``preprocess.scale``, because normalisation follows scaling. A constant
  channel (std 0) gets std 1.0 and a warning.
- ``vocabulary: auto``: the values by descending count, ties in string order;
  values seen fewer than ``min_count`` times are left out, then all but the
  ``max_tokens`` most frequent.

``resolve_statistics`` runs that pass once per run directory and keeps the
result in ``RUN_DIR/statistics.json`` (a plain JSON dict, so a checkpoint can
carry it as well); a resumed run reads the file instead of recomputing. The
constants then enter the spec (``FeatureSpec.with_statistics``), and from there
the training pipeline and the exported signatures alike.

``summarize`` adds per-feature summaries for ``factory stats``: records,
missing records, min/max/mean/std of numbers, distinct and most frequent
strings.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from factory.errors import ConfigError, RecordError
from factory.features.parsing import storage_dtype
from factory.features.pipeline import compression_of, explain_errors, resolve_files
from factory.features.spec import Feature, FeatureSpec
from factory.features.transform import decode_images

log = logging.getLogger("factory")

STATISTICS_FILE = "statistics.json"
# Bumped when the file's layout changes; a file of another format is recomputed by deleting it.
FORMAT = 1
TOP_VALUES = 10
BATCH_SIZE = 1024


# -- accumulators ---------------------------------------------------------------------------------


class Moments:
    """Count, min, max, mean and population std per channel, accumulated in float64.

    Sums and sums of squares are taken around a shift (the first batch's mean),
    which keeps the variance exact when the mean is large next to the spread.
    """

    def __init__(self, channels: int = 1):
        self.channels = channels
        self.count = 0
        self.shift: np.ndarray | None = None
        self.s1 = np.zeros(channels)
        self.s2 = np.zeros(channels)
        self.min = np.inf
        self.max = -np.inf

    def add(self, values: np.ndarray) -> None:
        """``values``: any array whose size is a multiple of ``channels`` (channel last)."""
        x = np.asarray(values, dtype=np.float64).reshape(-1, self.channels)
        if not len(x):
            return
        if self.shift is None:
            self.shift = x.mean(axis=0)
        d = x - self.shift
        self.s1 += d.sum(axis=0)
        self.s2 += np.square(d).sum(axis=0)
        self.count += len(x)
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.s1 / self.count

    @property
    def std(self) -> np.ndarray:
        m = self.s1 / self.count
        return np.sqrt(np.maximum(self.s2 / self.count - m * m, 0.0))


class _Column:
    """Everything gathered about one feature: the values as stored, and the values training sees."""

    def __init__(self, feature: Feature, summary: bool, auto: bool):
        self.f = feature
        self.records = 0
        self.missing = 0
        self.text = feature.dtype == "string"
        self.data: Moments | Counter | None = None
        if summary:
            self.data = Counter() if self.text else Moments(1)
        self.train: Moments | Counter | None = None
        if auto:
            self.train = Counter() if self.text else Moments(feature.channels)
        if feature.default is not None:
            if self.text:
                self.default: Any = Counter(str(v) for v in feature.default)
            else:
                self.default = np.asarray(feature.default, np.float64)

    def add(self, values: np.ndarray, lengths: np.ndarray) -> None:
        missing = int(np.count_nonzero(lengths == 0))
        self.records += len(lengths)
        self.missing += missing
        if self.data is not None:
            self._add(self.data, values)
        if self.train is None:
            return
        f = self.f
        if f.variable and not f.ragged and f.max_length is not None:
            # Training truncates to max_length elements; count what it keeps.
            inner = int(np.prod(f.shape[1:], dtype=np.int64)) if len(f.shape) > 1 else 1
            starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
            values = values[np.arange(len(values)) - starts < f.max_length * inner]
        self._add(self.train, values)
        if missing and f.default is not None:  # what training reads for a record without the feature
            if self.text:
                for value, n in self.default.items():
                    self.train[value] += n * missing
            else:
                self.train.add(np.tile(self.default, missing))

    def _add(self, target: Moments | Counter, values: np.ndarray) -> None:
        if isinstance(target, Moments):
            target.add(values)
            return
        if not len(values):
            return
        unique, counts = np.unique(values, return_counts=True)
        for value, n in zip(unique, counts, strict=True):
            try:
                target[value.decode("utf-8")] += int(n)
            except UnicodeDecodeError:
                raise RecordError(
                    f"feature '{self.f.name}': a stored value is not UTF-8 text ({value[:40]!r}); "
                    "a vocabulary holds text, so write the values as UTF-8 strings"
                ) from None


# -- the pass over the records --------------------------------------------------------------------


def _scan(
    spec: FeatureSpec, files: str | Sequence[str], compression: str | None, summary: Iterable[str], auto: Iterable[str],
) -> tuple[list[str], int, dict[str, _Column]]:
    """One pass over ``files``: ``(files, records, {name: column})`` for the features in ``summary`` or ``auto``."""
    summary, auto = set(summary), set(auto)
    features = [f for f in spec.all() if f.name in summary | auto]
    columns = {f.name: _Column(f, f.name in summary, f.name in auto) for f in features}
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
        return out

    total = 0
    for path in paths:
        ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path, compression))
        ds = ds.batch(BATCH_SIZE).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        with explain_errors(plain, [path], compression):
            for batch in ds.prefetch(2):
                for f in features:
                    values, lengths = (t.numpy() for t in batch[f.name])
                    _check_lengths(f, lengths, path, total)
                    columns[f.name].add(values, lengths)
                total += int(batch[""])
    return paths, total, columns


def _check_lengths(f: Feature, lengths: np.ndarray, path: str, offset: int) -> None:
    """A fixed-shape feature holds all its values or none (missing)."""
    if f.variable:
        return
    size = f.size
    bad = np.flatnonzero((lengths != 0) & (lengths != size))
    if len(bad):
        i = int(bad[0])
        raise RecordError(
            f"{path}, record {offset + i}: feature '{f.name}' holds {int(lengths[i])} values, but "
            f"{f.describe()} holds {size}; check the files with `factory check`"
        )


# -- statistics ------------------------------------------------------------------------------------


def declared(f: Feature) -> dict[str, Any]:
    """What a feature's ``auto`` statistic depends on; a stored statistic is reused only while this is unchanged."""
    out: dict[str, Any] = {
        "statistic": f.auto_statistic,
        "dtype": f.dtype,
        "shape": list(f.shape),
        "encoding": f.encoding,
        "default": list(f.default) if f.default is not None else None,
        "max_length": f.max_length,
    }
    if f.auto_statistic == "normalize":
        out["scale"] = f.preprocess.scale
    else:
        out["max_tokens"] = f.auto_vocabulary.max_tokens
        out["min_count"] = f.auto_vocabulary.min_count
    return out


def _normalize_entry(f: Feature, moments: Moments) -> dict[str, Any]:
    if moments.count == 0:
        raise RecordError(f"features.{f.name}: the training records hold no values to compute `normalize: auto` from")
    mean, std = moments.mean, moments.std
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        raise RecordError(
            f"features.{f.name}: the training records hold NaN or infinite values, so `normalize: auto` "
            "has no mean and std; clean the records (or give `normalize: {mean, std}`)"
        )
    scale = f.preprocess.scale
    if scale is not None:  # normalisation follows scaling: (x * scale - mean') / std'
        mean, std = mean * scale, std * abs(scale)
    constant = [int(c) for c in np.flatnonzero(std == 0)]
    if constant:
        which = "it is" if f.channels == 1 else f"channel{'s' if len(constant) > 1 else ''} {', '.join(map(str, constant))} are"
        log.warning(f"features.{f.name}: {which} constant in the training records (std 0); dividing by 1.0 instead")
        std = np.where(std == 0, 1.0, std)
    entry = {"normalize": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}, "count": int(moments.count)}
    if constant:
        entry["constant_channels"] = constant
    return entry


def _vocabulary_entry(f: Feature, counts: Counter) -> dict[str, Any]:
    auto = f.auto_vocabulary
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = [value for value, n in ranked if n >= auto.min_count]
    if auto.max_tokens is not None:
        kept = kept[: auto.max_tokens]
    if not kept:
        why = f"no value is seen {auto.min_count} times or more; lower `min_count`" if ranked else "they hold no values"
        raise RecordError(f"features.{f.name}: `vocabulary: auto` found nothing to keep in the training records: {why}")
    kept_set = set(kept)
    left_out = [(value, n) for value, n in ranked if value not in kept_set]
    return {
        "vocabulary": kept,
        "values": int(sum(counts.values())),
        "distinct": len(ranked),
        "left_out": {"distinct": len(left_out), "values": int(sum(n for _, n in left_out))},
    }


def _entries(spec: FeatureSpec, columns: Mapping[str, _Column]) -> dict[str, dict[str, Any]]:
    entries = {}
    for f in spec.auto_features:
        column = columns[f.name]
        entry = _normalize_entry(f, column.train) if f.auto_statistic == "normalize" else _vocabulary_entry(f, column.train)
        entries[f.name] = {"declared": declared(f), **entry}
    return entries


def compute_statistics(spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None) -> dict[str, Any]:
    """One pass over ``files``: the statistics of every ``auto`` feature, as a plain JSON dict.

    ``{"format": 1, "records": N, "files": [...], "features": {name: entry}}``,
    an entry holding ``normalize: {mean, std}`` (lists, one value per channel,
    after ``scale``) or ``vocabulary: [...]``, and ``declared`` (what it was
    computed for; see ``declared``). ``compression``: None infers each file's
    from its extension. ``RecordError`` for unreadable records or a feature
    without values.
    """
    names = [f.name for f in spec.auto_features]
    paths, records, columns = _scan(spec, files, compression, summary=(), auto=names)
    return {"format": FORMAT, "records": records, "files": paths, "features": _entries(spec, columns)}


def summarize(spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None) -> dict[str, Any]:
    """Per-feature summaries of ``files`` (features, labels and the weight), and the ``auto`` statistics.

    ``{"files": [...], "records": N, "features": {name: summary}}``. A summary
    has ``role``, ``dtype``, ``shape``, ``records``, ``missing`` (records
    without a value: for a variable-length feature, empty ones), ``values``
    (values present), then ``min``/``max``/``mean``/``std`` over all values of
    a number (decoded pixels for images), or ``distinct`` and ``top`` (the
    ``TOP_VALUES`` most frequent ``[value, count]`` pairs) of a string. An
    ``auto`` feature adds ``statistics``: the entry training would compute, or
    ``{"error": message}`` when it could not.
    """
    names = [f.name for f in spec.all()]
    auto = [f.name for f in spec.auto_features]
    paths, records, columns = _scan(spec, files, compression, summary=names, auto=auto)
    out = {}
    for f in spec.all():
        column = columns[f.name]
        summary: dict[str, Any] = {
            "role": f.role,
            "dtype": f.dtype,
            "shape": list(f.shape),
            "encoding": f.encoding,
            "records": column.records,
            "missing": column.missing,
        }
        data = column.data
        if isinstance(data, Moments):
            summary["values"] = data.count
            empty = data.count == 0
            summary["min"] = None if empty else _number(f, data.min)
            summary["max"] = None if empty else _number(f, data.max)
            summary["mean"] = None if empty else float(data.mean[0])
            summary["std"] = None if empty else float(data.std[0])
        else:
            ranked = sorted(data.items(), key=lambda item: (-item[1], item[0]))
            summary["values"] = int(sum(data.values()))
            summary["distinct"] = len(ranked)
            summary["top"] = [[value, n] for value, n in ranked[:TOP_VALUES]]
        if f.auto_statistic is not None:
            try:
                entry = (
                    _normalize_entry(f, column.train) if f.auto_statistic == "normalize" else _vocabulary_entry(f, column.train)
                )
                summary["statistics"] = {"declared": declared(f), **entry}
            except RecordError as err:
                summary["statistics"] = {"error": str(err)}
        out[f.name] = summary
    return {"files": paths, "records": records, "features": out}


def _number(f: Feature, value: float) -> float | int:
    return int(value) if f.dtype in ("int64", "uint8") else float(value)


# -- the run directory -----------------------------------------------------------------------------


def load_statistics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``statistics.json``; ``ConfigError`` naming the file when it is not one."""
    path = Path(path)
    try:
        stats = json.loads(path.read_text())
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
        now = declared(f)
        if entry is None:
            problems.append(f"features.{f.name}: `{f.auto_statistic}: auto` now, but the statistics were computed without it")
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


def resolve_statistics(
    spec: FeatureSpec, files: str | Sequence[str], compression: str | None, run_dir: str | os.PathLike,
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
    path = Path(run_dir) / STATISTICS_FILE
    if path.exists():
        stats = load_statistics(path)
        problems = statistics_problems(spec, stats)
        if problems:
            problems.append(
                f"{STATISTICS_FILE}: the feature spec changed since the statistics were computed; "
                f"start a new run dir, or delete {path} to compute them again from data.train"
            )
            raise ConfigError(problems, str(path))
        log.info(f"reusing the statistics in {path} (from {stats['records']} training records)")
        return spec.with_statistics(stats)

    started = time.perf_counter()
    stats = compute_statistics(spec, files, compression)
    seconds = time.perf_counter() - started
    problems = []
    for f in spec.auto_features:
        entry = stats["features"][f.name]
        left = entry.get("left_out", {})
        if left.get("values") and not f.oov_buckets:
            problems.append(
                f"features.{f.name}.oov_buckets: the vocabulary keeps {len(entry['vocabulary'])} of {entry['distinct']} "
                f"values and leaves out {left['distinct']} (seen {left['values']} times in the training records), "
                "which would stop training; set `oov_buckets: 1` (or more), or raise `max_tokens` / lower `min_count`"
            )
    if problems:
        raise ConfigError(problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATISTICS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats, indent=2) + "\n")
    os.replace(tmp, path)
    log.info(f"computed statistics from {stats['records']} training records in {seconds:.2f} s: {describe(stats)}; saved in {path}")
    return spec.with_statistics(stats)


def describe(stats: Mapping[str, Any]) -> str:
    """``x: mean/std of 4 channels, s: vocabulary of 2 (of 5 values)`` for a log line."""
    parts = []
    for name, entry in stats.get("features", {}).items():
        if "normalize" in entry:
            n = len(entry["normalize"]["mean"])
            parts.append(f"{name}: mean/std{f' of {n} channels' if n > 1 else ''}")
        else:
            parts.append(f"{name}: vocabulary of {len(entry['vocabulary'])} (of {entry['distinct']} values)")
    return ", ".join(parts)
