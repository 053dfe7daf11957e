"""Statistics of a feature, one class per kind, from the records to the graph (after Ludwig's
``ZScoreTransformer``): ``Normalization`` (``preprocess.normalize``, a regression label's
``normalize``) and ``Vocabulary``. Each fits on batches (``factory.features.scan`` drives it),
gives its ``statistics.json`` entry, writes its constants into a spec's declaration in place of
``auto`` (``FeatureSpec.with_statistics``/``without_auto`` call ``write``/``drop``) and
applies them in the graph that training, evaluation and serving share. TensorFlow is
imported only inside the graph methods: the TF-free ``FeatureSpec`` imports this module.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from factory.errors import ConfigError, RecordError
from factory.features.checks import NO_OOV_BUCKETS
from factory.features.feature import Feature

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


log = logging.getLogger("factory")


class Moments:
    """Count, min, max, mean and population std per channel, accumulated in float64. Sums are
    taken around a shift (the first batch's mean): exact variance when the mean dwarfs the spread."""

    def __init__(self, channels: int = 1):
        self.channels = channels
        self.count = 0
        self.shift: np.ndarray | None = None
        self.s1, self.s2 = np.zeros(channels), np.zeros(channels)
        self.min, self.max = np.inf, -np.inf

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


def count_text(counts: Counter, values: np.ndarray, name: str) -> None:
    """Add the stored bytes ``values`` of feature ``name`` to ``counts`` as text; ``RecordError`` if not UTF-8."""
    if not len(values):
        return
    unique, repeats = np.unique(values, return_counts=True)
    for value, n in zip(unique, repeats, strict=True):
        try:
            counts[value.decode("utf-8")] += int(n)
        except UnicodeDecodeError:
            raise RecordError(
                f"feature '{name}': a stored value is not UTF-8 text ({value[:40]!r}); "
                "a vocabulary holds text, so write the values as UTF-8 strings"
            ) from None


def ranked(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """``(value, count)`` pairs by descending count, ties in string order."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


# -- one class per kind ---------------------------------------------------------------------------


class Statistic:
    """One kind of statistic of one feature; ``kind`` is its entry's key and the spec key ``auto`` stands for.

    A kind implements ``fit(values, missing=0)`` (one batch: the flat values training reads,
    and the number of records without the feature, read as its ``default``); ``_fitted()``
    (the entry's constants and counts, ``RecordError`` when the records gave nothing);
    ``_declared()`` (its part of ``declared``); ``write(declaration, entry)`` and
    ``drop(declaration)`` (a feature's raw declaration, changed in place); ``describe(entry)``
    (for a log line); ``apply`` (the graph op).
    """

    kind: ClassVar[str]

    def __init__(self, feature: Feature):
        self.feature = feature

    @staticmethod
    def of(feature: Feature) -> Statistic:
        """The statistic an ``auto`` feature waits for (``feature.auto_statistic``)."""
        return KINDS[feature.auto_statistic](feature)

    def entry(self) -> dict[str, Any]:
        """The statistics entry: ``declared``, then the fitted constants and counts."""
        return {"declared": self.declared(), **self._fitted()}

    def declared(self) -> dict[str, Any]:
        """What the statistic depends on; a stored one is reused only while this is unchanged."""
        f = self.feature
        default = list(f.default) if f.default is not None else None
        return {
            "statistic": self.kind,
            "dtype": f.dtype,
            "shape": list(f.shape),
            "encoding": f.encoding,
            "default": default,
            "max_length": f.max_length,
            **self._declared(),
        }

    def problems(self, entry: Mapping[str, Any]) -> list[str]:
        """Why training could not use ``entry`` (empty: it can)."""
        return []


class Normalization(Statistic):
    """``(x - mean) / std`` per channel (the last dimension; one value applies to every channel).

    ``fit``: mean and population std in float64 of the values training sees, stored *after*
    ``preprocess.scale`` (normalisation follows scaling); a constant channel (std 0) gets
    std 1.0 and a warning.
    """

    kind = "normalize"

    def __init__(self, feature: Feature):
        super().__init__(feature)
        self.moments = Moments(feature.channels)
        self._default = None if feature.default is None else np.asarray(feature.default, np.float64)

    @staticmethod
    def applies_to(feature: Feature) -> bool:
        """True when ``feature`` is normalized (constants or ``auto``)."""
        return feature.preprocess is not None and feature.preprocess.normalize is not None

    def fit(self, values: np.ndarray, missing: int = 0) -> None:
        self.moments.add(values)
        if missing and self._default is not None:
            self.moments.add(np.tile(self._default, missing))

    def _fitted(self) -> dict[str, Any]:
        f, moments = self.feature, self.moments
        if moments.count == 0:
            raise RecordError(
                f"features.{f.name}: the training records hold no values to compute `normalize: auto` from"
            )
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
            which = (
                "it is"
                if f.channels == 1
                else f"channel{'s' if len(constant) > 1 else ''} {', '.join(map(str, constant))} are"
            )
            log.warning(f"features.{f.name}: {which} constant in the training records (std 0); dividing by 1.0 instead")
            std = np.where(std == 0, 1.0, std)
        entry = {
            "normalize": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
            "count": int(moments.count),
        }
        if constant:
            entry["constant_channels"] = constant
        return entry

    def _declared(self) -> dict[str, Any]:
        return {"scale": self.feature.preprocess.scale}

    def _where(self, declaration: dict[str, Any]) -> dict[str, Any]:  # a label has no `preprocess`
        return declaration if self.feature.role == "label" else declaration["preprocess"]

    def write(self, declaration: dict[str, Any], entry: Mapping[str, Any]) -> None:
        norm = entry["normalize"]
        self._where(declaration)["normalize"] = {"mean": list(norm["mean"]), "std": list(norm["std"])}

    def drop(self, declaration: dict[str, Any]) -> None:
        del self._where(declaration)["normalize"]

    @staticmethod
    def describe(entry: Mapping[str, Any]) -> str:
        n = len(entry["normalize"]["mean"])
        return f"mean/std{f' of {n} channels' if n > 1 else ''}"

    def constants(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` of the resolved spec; ``ConfigError`` while they are still ``auto``."""
        f, norm = self.feature, self.feature.preprocess.normalize
        if norm.mean is None:
            where = f"labels.{f.name}.normalize" if f.role == "label" else f"features.{f.name}.preprocess.normalize"
            raise ConfigError(f"{where}: `auto` statistics are not resolved yet")
        return norm.mean, norm.std

    def apply(self, x: tf.Tensor) -> tf.Tensor:
        """``(x - mean) / std`` on a dense float32 tensor (channel last)."""
        mean, std = self.constants()
        import tensorflow as tf  # defers TensorFlow

        return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)

    def invert(self, x: Any) -> Any:
        """``x * std + mean`` on a KerasTensor, by a float32 ``Rescaling`` layer named ``denormalize``:
        the network learns ``(y - mean) / std``, and its output is back in the label's units."""
        mean, std = self.constants()
        import keras  # defers TensorFlow

        return keras.layers.Rescaling(
            scale=list(std) if len(std) > 1 else std[0],
            offset=list(mean) if len(mean) > 1 else mean[0],
            dtype="float32",
            name="denormalize",
        )(x)


class Vocabulary(Statistic):
    """Strings to ids: the index in ``vocabulary``; ``oov_buckets`` ids after it for other values.

    ``fit``: the values training sees by descending count, ties in string order; values seen
    fewer than ``min_count`` times are left out, then all but the ``max_tokens`` most frequent.
    """

    kind = "vocabulary"

    def __init__(self, feature: Feature):
        super().__init__(feature)
        self.counts: Counter[str] = Counter()
        self._default = None if feature.default is None else Counter(str(v) for v in feature.default)

    def fit(self, values: np.ndarray, missing: int = 0) -> None:
        count_text(self.counts, values, self.feature.name)
        if missing and self._default is not None:
            for value, n in self._default.items():
                self.counts[value] += n * missing

    def _fitted(self) -> dict[str, Any]:
        f, auto = self.feature, self.feature.auto_vocabulary
        values = ranked(self.counts)
        kept = [value for value, n in values if n >= auto.min_count]
        if auto.max_tokens is not None:
            kept = kept[: auto.max_tokens]
        if not kept:
            why = (
                f"no value is seen {auto.min_count} times or more; lower `min_count`"
                if values
                else "they hold no values"
            )
            raise RecordError(
                f"features.{f.name}: `vocabulary: auto` found nothing to keep in the training records: {why}"
            )
        kept_set = set(kept)
        left_out = [(value, n) for value, n in values if value not in kept_set]
        left = {"distinct": len(left_out), "values": int(sum(n for _, n in left_out))}
        return {"vocabulary": kept, "values": int(sum(self.counts.values())), "distinct": len(values), "left_out": left}

    def _declared(self) -> dict[str, Any]:
        auto = self.feature.auto_vocabulary
        return {"max_tokens": auto.max_tokens, "min_count": auto.min_count}

    def write(self, declaration: dict[str, Any], entry: Mapping[str, Any]) -> None:
        declaration["vocabulary"] = list(entry["vocabulary"])
        # Only meaningful while the vocabulary is `auto`; the semantic check refuses them otherwise.
        declaration.pop("max_tokens", None)
        declaration.pop("min_count", None)

    def drop(self, declaration: dict[str, Any]) -> None:
        for key in ("vocabulary", "max_tokens", "min_count", "oov_buckets"):
            declaration.pop(key, None)

    def problems(self, entry: Mapping[str, Any]) -> list[str]:
        """A vocabulary that leaves training values out needs ``oov_buckets`` to put them in."""
        left = entry.get("left_out", {})
        if not left.get("values") or self.feature.oov_buckets:
            return []
        return [
            f"features.{self.feature.name}.oov_buckets: the vocabulary keeps {len(entry['vocabulary'])} of {entry['distinct']} "
            f"values and leaves out {left['distinct']} (seen {left['values']} times in the training records), "
            "which would stop training; set `oov_buckets: 1` (or more), or raise `max_tokens` / lower `min_count`"
        ]

    @staticmethod
    def describe(entry: Mapping[str, Any]) -> str:
        return f"vocabulary of {len(entry['vocabulary'])} (of {entry['distinct']} values)"

    def table(self) -> Any:
        """The lookup table of the resolved vocabulary (a ``StaticVocabularyTable`` with ``oov_buckets``,
        else a ``StaticHashTable`` giving -1 for other values); the caller tracks it for export."""
        import tensorflow as tf  # defers TensorFlow

        f = self.feature
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(f.vocabulary, tf.string), tf.range(len(f.vocabulary), dtype=tf.int64)
        )
        if f.oov_buckets:
            return tf.lookup.StaticVocabularyTable(init, f.oov_buckets)
        return tf.lookup.StaticHashTable(init, default_value=-1)

    def apply(self, table: Any, x: tf.Tensor | tf.RaggedTensor) -> tf.Tensor | tf.RaggedTensor:
        """int64 ids of the strings ``x`` (dense or ragged) looked up in ``table`` (see ``table``).
        Without ``oov_buckets``, a value outside the vocabulary fails with an error naming the feature."""
        import tensorflow as tf  # defers TensorFlow

        ragged = isinstance(x, tf.RaggedTensor)
        ids = tf.ragged.map_flat_values(table.lookup, x) if ragged else table.lookup(x)
        if self.feature.oov_buckets:
            return ids
        check = tf.debugging.assert_non_negative(
            ids.flat_values if ragged else ids,
            message=f"feature '{self.feature.name}': a value is not in the vocabulary ({NO_OOV_BUCKETS})",
        )
        with tf.control_dependencies([check]):
            return ids if ragged else tf.identity(ids)


KINDS: dict[str, type[Statistic]] = {kind.kind: kind for kind in (Normalization, Vocabulary)}


def declaration(raw: dict[str, Any], f: Feature) -> dict[str, Any]:
    """Where ``f`` is declared in a spec's raw dict (``features`` or ``labels``)."""
    return raw["labels" if f.role == "label" else "features"][f.name]
