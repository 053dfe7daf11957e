"""One pass over the records, and the ``auto`` statistics computed from it: ``compute_statistics``.

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

The same pass also gathers the values as stored, for ``factory stats``
(``factory.features.profile``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from factory.errors import RecordError
from factory.features.feature import Feature
from factory.features.parsing import storage_dtype
from factory.features.pipeline import compression_of, explain_errors, resolve_files
from factory.features.spec import FeatureSpec
from factory.features.transform import decode_images

log = logging.getLogger("factory")

# Bumped when the layout of the statistics changes; a file of another format is recomputed by deleting it.
FORMAT = 1
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


def ranked(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """``(value, count)`` pairs by descending count, ties in string order."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


class Column:
    """Everything gathered about one feature: the values as stored (``data``, if ``summary``)
    and the values training sees (``train``, if ``auto``): a ``Counter`` of strings, else ``Moments``."""

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
        """One batch: the flat ``values`` of its records and the number of values per record."""
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


def scan(
    spec: FeatureSpec, files: str | Sequence[str], compression: str | None, summary: Iterable[str], auto: Iterable[str],
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
    bad = np.flatnonzero((lengths != 0) & (lengths != f.size))
    if len(bad):
        i = int(bad[0])
        raise RecordError(
            f"{path}, record {offset + i}: feature '{f.name}' holds {int(lengths[i])} values, but "
            f"{f.describe()} holds {f.size}; check the files with `factory check`"
        )


# -- auto statistics -------------------------------------------------------------------------------


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


def auto_entry(f: Feature, column: Column) -> dict[str, Any]:
    """The statistics entry of ``auto`` feature ``f``: ``declared``, then ``normalize`` or ``vocabulary``.

    ``RecordError`` when the records hold nothing to compute it from.
    """
    entry = _normalize_entry(f, column.train) if f.auto_statistic == "normalize" else _vocabulary_entry(f, column.train)
    return {"declared": declared(f), **entry}


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
    values = ranked(counts)
    kept = [value for value, n in values if n >= auto.min_count]
    if auto.max_tokens is not None:
        kept = kept[: auto.max_tokens]
    if not kept:
        why = f"no value is seen {auto.min_count} times or more; lower `min_count`" if values else "they hold no values"
        raise RecordError(f"features.{f.name}: `vocabulary: auto` found nothing to keep in the training records: {why}")
    kept_set = set(kept)
    left_out = [(value, n) for value, n in values if value not in kept_set]
    return {
        "vocabulary": kept,
        "values": int(sum(counts.values())),
        "distinct": len(values),
        "left_out": {"distinct": len(left_out), "values": int(sum(n for _, n in left_out))},
    }


def compute_statistics(spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None) -> dict[str, Any]:
    """One pass over ``files``: the statistics of every ``auto`` feature, as a plain JSON dict.

    ``{"format": 1, "records": N, "files": [...], "features": {name: entry}}``,
    an entry holding ``normalize: {mean, std}`` (lists, one value per channel,
    after ``scale``) or ``vocabulary: [...]``, and ``declared`` (what it was
    computed for; see ``declared``). ``compression``: None (the default) infers
    each file's from its extension. ``RecordError`` for unreadable records or a
    feature without values.
    """
    names = [f.name for f in spec.auto_features]
    paths, records, columns = scan(spec, files, compression, summary=(), auto=names)
    features = {f.name: auto_entry(f, columns[f.name]) for f in spec.auto_features}
    return {"format": FORMAT, "records": records, "files": paths, "features": features}
