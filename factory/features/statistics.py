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
from factory.features.accumulators import Batch, Moments, Sample, TextCounts, ranked
from factory.features.checks import NO_OOV_BUCKETS
from factory.features.feature import Feature

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


log = logging.getLogger("factory")


# -- one class per kind ---------------------------------------------------------------------------


class Statistic:
    """One kind of statistic of one feature; ``kind`` is its entry's key and the spec key ``auto`` stands for.

    A kind implements ``fit(values, missing=0)`` (one batch: the flat values training reads, as
    an array or a ``Batch`` over the feature's channels, and the number of records without the
    feature, read as its ``default``); ``merge(other)`` (what the same kind of the same feature
    fitted on other records: the pass fits each file apart and merges them in file order);
    ``samples()`` (the ``Sample`` objects it keeps, which draw their own keys); ``_fitted()``
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
        """What an ``auto`` feature waits for (``feature.auto_statistics``): one kind, or several together."""
        kinds = [KINDS[kind](feature) for kind in feature.auto_statistics]
        return kinds[0] if len(kinds) == 1 else Together(feature, kinds)

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

    def merge(self, other: Statistic) -> None:
        """Add what ``other`` (the same kind, of the same feature) was fitted on."""
        raise NotImplementedError

    def samples(self) -> list[Sample]:
        """The samples it keeps (each draws its rows' keys)."""
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

    def fit(self, values: np.ndarray | Batch, missing: int = 0) -> None:
        self.moments.merge(Batch.of(values, self.moments.channels).moments)
        if missing and self._default is not None:
            self.moments.add(np.tile(self._default, missing))

    def merge(self, other: Statistic) -> None:
        self.moments.merge(other.moments)

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
        self.counts = TextCounts(feature.name)
        self._default = None
        if feature.default is not None:
            self._default = np.asarray([str(v).encode() for v in feature.default], dtype=object)

    def fit(self, values: np.ndarray | Batch, missing: int = 0) -> None:
        self.counts.add(Batch.of(values))
        if missing and self._default is not None:
            self.counts.add(self._default, missing)

    def merge(self, other: Statistic) -> None:
        self.counts.merge(other.counts)

    def _fitted(self) -> dict[str, Any]:
        f, auto = self.feature, self.feature.auto_vocabulary
        counts = self.counts.text()
        values = ranked(counts)
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
        return {"vocabulary": kept, "values": int(sum(counts.values())), "distinct": len(values), "left_out": left}

    def _declared(self) -> dict[str, Any]:
        auto = self.feature.auto_vocabulary
        return {"max_tokens": auto.max_tokens, "min_count": auto.min_count}

    def write(self, declaration: dict[str, Any], entry: Mapping[str, Any]) -> None:
        declaration["vocabulary"] = list(entry["vocabulary"])
        # Only meaningful while the vocabulary is `auto`; the semantic check refuses them otherwise.
        declaration.pop("max_tokens", None)
        declaration.pop("min_count", None)

    def drop(self, declaration: dict[str, Any]) -> None:
        for key in ("vocabulary", "max_tokens", "min_count", "oov_buckets", "encode", "embedding_dim"):
            declaration.pop(key, None)

    def problems(self, entry: Mapping[str, Any]) -> list[str]:
        """A vocabulary that leaves training values out needs ``oov_buckets`` to put them in."""
        f, left = self.feature, entry.get("left_out", {})
        if f.oov_buckets:
            return []
        if f.missing is not None and f.missing.value is not None:
            outside = [v for v in f.missing.value if v not in set(entry["vocabulary"])]
            if outside:
                return [
                    f"features.{f.name}.missing.value: {outside[0]!r} is not among the {len(entry['vocabulary'])} "
                    "values of the vocabulary computed from the training records, so a missing value would stop "
                    "training; set `oov_buckets: 1` (or more), or fill with `most_frequent`"
                ]
        if not left.get("values"):
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


class Fill(Statistic):
    """``missing.fill``: mean, median (per channel) or most frequent value of the *present* training
    values (a missing value is not counted); an integer feature's mean is rounded (halves away from
    zero) and its median is one of its values (the lower middle one).

    The median is exact up to ``Sample``'s size (20,000 rows), estimated from a uniform sample
    beyond; the most frequent value breaks ties by the smaller number or string.
    """

    kind = "fill"

    def __init__(self, feature: Feature):
        super().__init__(feature)
        self.how = feature.missing.fill
        channels = 1 if self.how == "most_frequent" else feature.channels
        self.moments = Moments(channels)
        self.sample = Sample(channels) if self.how == "median" else None
        self.counts = TextCounts(feature.name)  # most_frequent: of strings, or of numbers

    def fit(self, values: np.ndarray | Batch, missing: int = 0) -> None:
        batch = Batch.of(values, self.moments.channels)
        if self.how in ("mean", "median"):
            self.moments.merge(batch.moments)
        if self.how == "median":
            self.sample.add(batch.values)
        elif self.how == "most_frequent":
            self.counts.add(batch)

    def merge(self, other: Statistic) -> None:
        self.moments.merge(other.moments)
        if self.sample is not None:
            self.sample.merge(other.sample)
        self.counts.merge(other.counts)

    def samples(self) -> list[Sample]:
        return [] if self.sample is None else [self.sample]

    def _fitted(self) -> dict[str, Any]:
        f = self.feature
        if self.how == "most_frequent":
            if not self.counts:
                raise self._nothing()
            counts = self.counts.text() if f.dtype == "string" else self.counts.raw
            value, _ = min(counts.items(), key=lambda item: (-item[1], item[0]))
            return {"fill": [value.item() if isinstance(value, np.generic) else value]}
        if self.moments.count == 0:
            raise self._nothing()
        if self.how == "mean":
            values = self.moments.mean
        else:  # an integer feature's median is one of its values
            values = np.quantile(self.sample.values(), 0.5, axis=0, method="lower" if f.dtype == "int64" else "linear")
        if not np.all(np.isfinite(values)):
            raise RecordError(
                f"features.{f.name}: the training records hold NaN or infinite values, so `missing.fill: "
                f"{self.how}` has none; leave missing values out of the records (`factory write` does)"
            )
        if f.dtype == "int64":
            return {"fill": [int(np.floor(float(v) + 0.5)) for v in values]}
        return {"fill": [float(v) for v in values]}

    def _nothing(self) -> RecordError:
        return RecordError(
            f"features.{self.feature.name}: the training records hold no value of it to compute "
            f"`missing.fill: {self.how}` from; write records that hold it, or give `fill: constant` and a `value`"
        )

    def _declared(self) -> dict[str, Any]:
        return {"fill": self.how}

    def write(self, declaration: dict[str, Any], entry: Mapping[str, Any]) -> None:
        missing = declaration["missing"]
        missing = {"fill": missing} if isinstance(missing, str) else missing
        missing["value"] = list(entry["fill"])
        declaration["missing"] = missing

    def drop(self, declaration: dict[str, Any]) -> None:
        # Reading records as stored: the feature stays optional, and the fill plays no part.
        f = self.feature
        vocabulary = declaration.get("vocabulary")
        placeholder = (vocabulary[0] if isinstance(vocabulary, list) else "") if f.dtype == "string" else 0
        declaration["missing"] = {"fill": "constant", "value": placeholder}

    @staticmethod
    def describe(entry: Mapping[str, Any]) -> str:
        values = entry["fill"]
        shown = ", ".join(f"{v:.6g}" if isinstance(v, float) else repr(v) for v in values[:4])
        return f"fill {shown}{', ...' if len(values) > 4 else ''}"


class Bins(Statistic):
    """``bins: {auto: K}``: K bins of about equal training counts, their boundaries the quantiles
    1/K, 2/K, ... of the present training values (repeated ones merged, so a value that fills
    several quantiles gets one bin). Exact up to ``Sample``'s size, from a uniform sample beyond."""

    kind = "bins"

    def __init__(self, feature: Feature):
        super().__init__(feature)
        self.sample = Sample(1)

    def fit(self, values: np.ndarray | Batch, missing: int = 0) -> None:
        self.sample.add(Batch.of(values).values)

    def merge(self, other: Statistic) -> None:
        self.sample.merge(other.sample)

    def samples(self) -> list[Sample]:
        return [self.sample]

    def _fitted(self) -> dict[str, Any]:
        f, values = self.feature, self.sample.values()[:, 0]
        if not len(values):
            raise RecordError(f"features.{f.name}: the training records hold no values to compute `bins: auto` from")
        q = np.linspace(0.0, 1.0, f.auto_bins + 1)[1:-1]
        boundaries = np.unique(np.quantile(values, q))
        if boundaries[0] <= values.min():  # a boundary at the minimum leaves bin 0 empty
            boundaries = boundaries[1:]
        if not len(boundaries):
            raise RecordError(
                f"features.{f.name}: `bins: auto` found one value only in the training records; no bins to make"
            )
        return {"bins": [float(b) for b in boundaries]}

    def _declared(self) -> dict[str, Any]:
        return {"bins": self.feature.auto_bins}

    def write(self, declaration: dict[str, Any], entry: Mapping[str, Any]) -> None:
        declaration["bins"] = list(entry["bins"])

    def drop(self, declaration: dict[str, Any]) -> None:
        declaration.pop("bins", None)
        declaration.pop("encode", None)
        declaration.pop("embedding_dim", None)

    @staticmethod
    def describe(entry: Mapping[str, Any]) -> str:
        return f"{len(entry['bins']) + 1} bins"

    def apply(self, x: tf.Tensor) -> tf.Tensor:
        """The bin ids (int64) of the numbers ``x`` (dense or ragged)."""
        import tensorflow as tf  # defers TensorFlow

        boundaries = list(self.feature.bins)

        def bucketize(v):
            return tf.cast(tf.raw_ops.Bucketize(input=tf.cast(v, tf.float32), boundaries=boundaries), tf.int64)

        return tf.ragged.map_flat_values(bucketize, x) if isinstance(x, tf.RaggedTensor) else bucketize(x)


class TextVocabulary(Statistic):
    """``text:``: the tokens of the training texts (``factory.features.text.tokens``) by descending count,
    ties in string order; tokens seen fewer than ``min_count`` times are left out, then all but the
    ``max_tokens`` most frequent (``TEXT_MAX_TOKENS`` for ``auto``). ``tf_idf`` also gets each kept
    token's IDF weight, ``log(1 + documents / (1 + df))``, ``df`` the texts holding it (a record
    without the feature is an empty text and counts as a document).

    ``fit`` takes one batch's ``(tokens, counts, documents)`` as the pass over the records computes
    them in TensorFlow (``factory.features.text.batch_counts``), and the number of texts.
    """

    kind = "text"

    def __init__(self, feature: Feature):
        super().__init__(feature)
        self.counts: Counter[bytes] = Counter()
        self.documents: Counter[bytes] = Counter()
        self.texts = 0

    def fit(self, values: tuple[np.ndarray, np.ndarray, np.ndarray, int], missing: int = 0) -> None:
        tokens, counts, documents, texts = values
        self.texts += texts + missing
        for counter, numbers in ((self.counts, counts), (self.documents, documents)):
            get = counter.get
            for token, n in zip(tokens.tolist(), numbers.tolist(), strict=True):
                counter[token] = get(token, 0) + n

    def merge(self, other: Statistic) -> None:
        self.texts += other.texts
        self.counts.update(other.counts)
        self.documents.update(other.documents)

    def _fitted(self) -> dict[str, Any]:
        f, text = self.feature, self.feature.text
        try:
            counts = {token.decode(): n for token, n in self.counts.items()}
        except UnicodeDecodeError:
            raise RecordError(
                f"features.{f.name}: a training text is not UTF-8; `text` reads UTF-8 strings, so write them as such"
            ) from None
        values = ranked(counts)
        kept = [token for token, n in values if n >= text.min_count][: text.kept]
        if not kept:
            why = (
                f"no token is seen {text.min_count} times or more; lower `text.min_count`"
                if values
                else "they hold no tokens"
            )
            raise RecordError(f"features.{f.name}: `text` found no tokens to keep in the training records: {why}")
        entry: dict[str, Any] = {
            "vocabulary": kept,
            "texts": self.texts,
            "tokens": int(sum(counts.values())),
            "distinct": len(values),
        }
        if text.output == "tf_idf":
            documents = self.documents
            entry["idf"] = [float(np.log1p(self.texts / (1 + documents[token.encode()]))) for token in kept]
        return {"text": entry}

    def _declared(self) -> dict[str, Any]:
        t = self.feature.text
        keys = ("split", "lowercase", "strip_punctuation", "ngrams", "max_tokens", "min_count", "output")
        return {f"text.{key}": getattr(t, key) for key in keys}

    def write(self, declaration: dict[str, Any], entry: Mapping[str, Any]) -> None:
        text, learnt = declaration["text"], entry["text"]
        text["vocabulary"] = list(learnt["vocabulary"])
        if "idf" in learnt:
            text["idf"] = list(learnt["idf"])

    def drop(self, declaration: dict[str, Any]) -> None:
        # Reading records as stored: a plain string, empty when the record lacks it.
        del declaration["text"]
        declaration.setdefault("default", "")

    @staticmethod
    def describe(entry: Mapping[str, Any]) -> str:
        return f"{len(entry['text']['vocabulary'])} tokens (of {entry['text']['distinct']})"


class Together(Statistic):
    """Several kinds of one feature (``missing.fill`` with ``normalize: auto`` or ``vocabulary: auto``),
    fitted on the same values; one entry holds them all."""

    def __init__(self, feature: Feature, parts: list[Statistic]):
        super().__init__(feature)
        self.parts = parts
        self.kind = "+".join(part.kind for part in parts)

    def fit(self, values: np.ndarray | Batch, missing: int = 0) -> None:
        batch = Batch.of(values, self.feature.channels)  # the moments and counts once for all the parts
        for part in self.parts:
            part.fit(batch, missing)

    def merge(self, other: Statistic) -> None:
        for part, theirs in zip(self.parts, other.parts, strict=True):
            part.merge(theirs)

    def samples(self) -> list[Sample]:
        return [sample for part in self.parts for sample in part.samples()]

    def _fitted(self) -> dict[str, Any]:
        return {key: value for part in self.parts for key, value in part._fitted().items()}

    def _declared(self) -> dict[str, Any]:
        return {key: value for part in self.parts for key, value in part._declared().items()}

    def write(self, declaration: dict[str, Any], entry: Mapping[str, Any]) -> None:
        for part in self.parts:
            part.write(declaration, entry)

    def drop(self, declaration: dict[str, Any]) -> None:
        for part in reversed(self.parts):  # an `auto` vocabulary goes first: the fill's placeholder is then any string
            part.drop(declaration)

    def problems(self, entry: Mapping[str, Any]) -> list[str]:
        return [p for part in self.parts for p in part.problems(entry)]


KINDS: dict[str, type[Statistic]] = {
    kind.kind: kind for kind in (Fill, Normalization, Vocabulary, Bins, TextVocabulary)
}


def describe_entry(entry: Mapping[str, Any]) -> str:
    """``fill 3.5, mean/std`` for a log line: each kind the entry holds."""
    return ", ".join(kind.describe(entry) for name, kind in KINDS.items() if name in entry)


def declaration(raw: dict[str, Any], f: Feature) -> dict[str, Any]:
    """Where ``f`` is declared in a spec's raw dict (``features`` or ``labels``)."""
    return raw["labels" if f.role == "label" else "features"][f.name]
