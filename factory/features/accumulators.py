"""Accumulators of a feature's values over batches, in bounded memory: ``Moments`` (count, mean, std,
min, max, merged with Chan's update), ``Batch`` (what several of them need of one batch, computed
once), ``Sample`` (a uniform sample, for medians, quantile bins and histograms) and ``TextCounts``
(how often each string occurs). The statistics (``factory.features.statistics``) and the pass over
the records (``factory.features.scan``) build on them. No TensorFlow.

Each one ``merge``s another of its kind (the same values, gathered elsewhere: the pass gathers
each file apart, perhaps in another process, and merges the files in order). Counts, minima,
maxima, text counts and samples merge exactly, in any order; a mean and std merge in float64 and
depend on the order of the merges in their last bits, so the pass always merges in file order.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from factory.errors import RecordError


class Moments:
    """Count, min, max, mean and population std per channel, in float64: each batch's mean and
    sum of squared deviations, merged with Chan et al.'s update (exact when the mean dwarfs the
    spread). ``of`` gives one batch's moments, which several accumulators can ``merge``."""

    def __init__(self, channels: int = 1):
        self.channels = channels
        self.count = 0
        self._mean, self._m2 = np.zeros(channels), np.zeros(channels)
        self.min, self.max = np.inf, -np.inf

    @classmethod
    def of(cls, values: np.ndarray, channels: int = 1) -> Moments:
        """The moments of one batch: ``values`` of any shape whose size is a multiple of ``channels``."""
        out = cls(channels)
        x = np.asarray(values, dtype=np.float64).reshape(-1, channels)
        if len(x):
            out.count = len(x)
            out._mean = x.mean(axis=0)
            d = x - out._mean
            out._m2 = np.einsum("ij,ij->j", d, d)
            out.min, out.max = float(x.min()), float(x.max())
        return out

    def add(self, values: np.ndarray) -> None:
        """``values``: any array whose size is a multiple of ``channels`` (channel last)."""
        self.merge(Moments.of(values, self.channels))

    def merge(self, other: Moments) -> None:
        """Add the values that ``other`` (moments of as many channels) summarises."""
        if not other.count:
            return
        if other.channels != self.channels:
            raise ValueError(f"merging moments of {other.channels} channels into {self.channels}")
        total = self.count + other.count
        weight = other.count / total
        delta = other._mean - self._mean
        self._mean = self._mean + delta * weight
        self._m2 = self._m2 + other._m2 + delta * delta * self.count * weight
        self.count = total
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    @property
    def mean(self) -> np.ndarray:
        return self._mean

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self._m2 / self.count, 0.0))


class Batch:
    """One batch of a feature's values, with what several accumulators need of it computed once:
    its ``moments`` over ``channels``."""

    def __init__(self, values: np.ndarray, channels: int = 1):
        self.values, self.channels = values, channels
        self._moments: Moments | None = None

    @classmethod
    def of(cls, values: np.ndarray | Batch, channels: int = 1) -> Batch:
        """``values`` as a batch (a batch as it is)."""
        return values if isinstance(values, Batch) else cls(np.asarray(values), channels)

    @property
    def moments(self) -> Moments:
        if self._moments is None:
            self._moments = Moments.of(self.values, self.channels)
        return self._moments


class Sample:
    """A uniform random sample of at most ``size`` rows of ``channels`` values, in bounded memory
    (bottom-k sampling: each row draws a key, the ``size`` smallest keys are kept). With the same
    rows in the same order it is the same sample; with at most ``size`` rows it holds them all,
    so its quantiles are exact. Samples of parts of the rows ``merge`` into the sample of all of
    them: the ``size`` smallest keys of the parts' smallest keys are those of all the rows."""

    def __init__(self, channels: int = 1, size: int = 20_000, seed: int = 0):
        self.channels, self.size = channels, size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.rows = np.empty((0, channels))
        self.threshold = np.inf  # keys at or above it cannot enter any more
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # added since the last shrink
        self._held = 0

    def add(self, values: np.ndarray, keys: np.ndarray | None = None) -> None:
        """``values`` (rows of ``channels``); ``keys``: their draws in [0, 1), one per row (default: drawn
        here), so that the samples of several features of the same records can share them."""
        x = np.asarray(values).reshape(-1, self.channels)
        if not len(x):
            return
        keys = self.rng.random(len(x)) if keys is None else keys
        keep = keys < self.threshold
        self._pending.append((keys[keep], x[keep].astype(np.float64)))
        self._held += int(keep.sum())
        if self._held >= 2 * self.size:
            self._shrink()

    def draw_from(self, key: int) -> None:
        """Draw the keys of rows added without keys from now on from ``np.random.Philox(key=key)``:
        a part of a pass draws from a stream of its own (``factory.features.scan`` keys it by file)."""
        self.rng = np.random.Generator(np.random.Philox(key=key))

    def merge(self, other: Sample) -> None:
        """Add the rows ``other`` (a sample of as many ``channels`` and the same ``size``) holds, with their keys."""
        if other.channels != self.channels or other.size != self.size:
            raise ValueError(
                f"merging a sample of {other.size} rows of {other.channels} channels into one of "
                f"{self.size} rows of {self.channels}"
            )
        other._shrink()
        if not len(other.keys):
            return
        keep = other.keys < self.threshold
        self._pending.append((other.keys[keep], other.rows[keep]))
        self._held += int(keep.sum())
        # Either side's threshold has `size` keys below it among the rows of both.
        self.threshold = min(self.threshold, other.threshold)
        if self._held >= 2 * self.size:
            self._shrink()

    def _shrink(self) -> None:
        if self._pending:
            self.keys = np.concatenate([self.keys, *(k for k, _ in self._pending)])
            self.rows = np.concatenate([self.rows, *(r for _, r in self._pending)])
            self._pending = []
        if len(self.keys) > self.size:
            kept = np.argpartition(self.keys, self.size - 1)[: self.size]
            self.keys, self.rows = self.keys[kept], self.rows[kept]
            self.threshold = float(self.keys.max())
        self._held = len(self.keys)

    def values(self) -> np.ndarray:
        """The sampled rows, ``[n, channels]``."""
        self._shrink()
        return self.rows

    def quantiles(self, q: Sequence[float] | float) -> np.ndarray:
        """Per channel, ``[len(q), channels]`` (``[channels]`` for one ``q``); linear interpolation."""
        return np.quantile(self.values(), q, axis=0)


class TextCounts:
    """How often each stored string occurs, counted as bytes and decoded once at the end (``text``:
    ``RecordError`` naming feature ``name`` when a value is not UTF-8).

    Values wait in chunks of about ``CHUNK`` and are counted a chunk at a time (in C); merging a
    chunk's counts costs one step per distinct value, not per value. Memory: the chunk and the
    distinct values, whatever the number of records.
    """

    CHUNK = 1 << 18

    def __init__(self, name: str):
        self.name = name
        self._raw: Counter[bytes] = Counter()
        self._pending: list[np.ndarray] = []
        self._size = 0

    def add(self, values: np.ndarray | Batch, times: int = 1) -> None:
        """The stored bytes ``values`` (each counted ``times``), or a ``Batch`` of them."""
        values = values.values if isinstance(values, Batch) else np.asarray(values)
        if times != 1:
            for value in values.tolist():
                self._raw[value] += times
            return
        self._pending.append(values.reshape(-1))
        self._size += values.size
        if self._size >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        chunk = Counter(np.concatenate(self._pending).tolist())
        self._pending, self._size = [], 0
        if not self._raw:
            self._raw = chunk
            return
        raw = self._raw
        for value, n in chunk.items():
            raw[value] += n

    def merge(self, other: TextCounts) -> None:
        """Add the counts of ``other``."""
        counts = other.raw
        if not counts:
            return
        raw = self.raw
        if not raw:
            self._raw = Counter(counts)
            return
        for value, n in counts.items():
            raw[value] += n

    @property
    def raw(self) -> Counter:
        """The counts by stored value (bytes, or the numbers of a numeric feature)."""
        self._flush()
        return self._raw

    def __bool__(self) -> bool:
        return bool(self._size or self._raw)

    def text(self, strict: bool = True) -> Counter[str]:
        """The counts by text; ``strict=False`` (a summary) shows bytes that are not UTF-8 escaped."""
        out: Counter[str] = Counter()
        for value, n in self.raw.items():
            try:
                out[value.decode("utf-8", errors="strict" if strict else "backslashreplace")] += n
            except UnicodeDecodeError:
                raise RecordError(
                    f"feature '{self.name}': a stored value is not UTF-8 text ({value[:40]!r}); "
                    "a vocabulary holds text, so write the values as UTF-8 strings"
                ) from None
        return out


def ranked(counts: Mapping[str, int], top: int | None = None) -> list[tuple[str, int]]:
    """``(value, count)`` pairs by descending count, ties in string order; the first ``top`` only if given."""
    key = lambda item: (-item[1], item[0])  # noqa: E731
    if top is not None and top < len(counts):
        return heapq.nsmallest(top, counts.items(), key=key)
    return sorted(counts.items(), key=key)
