"""One feature of a spec: its dtype, shape, storage, preprocessing and augmentation. No TensorFlow.

``Feature`` is what every generated piece (records, parse spec, pipelines, signatures,
statistics) reads; ``FeatureSpec`` (``spec.py``) is the collection of them with the
generators attached. ``rules.py`` builds ``Feature`` objects from validated dicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

# How each spec dtype is stored in a tf.train.Example: the list kind of the Feature proto.
STORAGE = {"float32": "float", "int64": "int64", "uint8": "int64", "string": "bytes"}
IMAGE_CHANNELS = {"png": (1, 2, 3, 4), "jpeg": (1, 3)}


def tf_dtype(dtype: str) -> tf.DType:
    """The one mapping from a spec dtype name to a TensorFlow dtype."""
    import tensorflow as tf  # defers TensorFlow

    return {"float32": tf.float32, "int64": tf.int64, "uint8": tf.uint8, "string": tf.string}[dtype]


def shape_str(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"


# The value that asks for a statistic computed from the training records (`normalize: auto`,
# `vocabulary: auto`); ``FeatureSpec.with_statistics`` replaces it with constants.
AUTO = "auto"


@dataclass(frozen=True)
class Normalize:
    """``(x - mean) / std`` per channel (last dimension); one value applies to every channel.

    ``mean`` and ``std`` are ``None`` for ``normalize: auto`` until the spec is
    resolved with ``FeatureSpec.with_statistics`` (using them unresolved fails).
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def auto(self) -> bool:
        return self.mean is None


@dataclass(frozen=True)
class AutoVocabulary:
    """``vocabulary: auto``: the most frequent training values, most frequent first (ties in string order).

    ``max_tokens``: keep at most this many (default None: no limit);
    ``min_count``: keep values seen at least this often (default 1).
    """

    max_tokens: int | None = None
    min_count: int = 1


# How ``missing.fill`` replaces a missing value; the first three are computed from the present
# training values by the statistics pass (``factory.features.statistics.Fill``).
FILLS = ("mean", "median", "most_frequent", "constant")
# The name of the model input that tells which values of feature ``name`` were filled (``missing.indicator``).
INDICATOR_SUFFIX = "_missing"


# How a categorical feature (a vocabulary, hash buckets or bins) reaches the network (``encode``). Without
# ``encode``: one-hot up to ONE_HOT_MAX ids, an embedding above it, of ``embedding_size(ids)`` dimensions.
# A list of categories (``shape: [null]`` or ``[k]``) may also be one set: ``multi_hot``, or ``embedding``,
# which for a variable-length list is the mean of its values' embeddings (Ludwig's set and bag).
ENCODINGS = ("one_hot", "embedding", "multi_hot")
ONE_HOT_MAX = 50


def embedding_size(ids: int) -> int:
    """The default ``embedding_dim`` for ``ids`` distinct ids: 1.6 * ids**0.56 (fastai's rule of thumb),
    between 4 and 64: 14 for 50 ids, 39 for 300, 64 from about 730."""
    return max(4, min(64, round(1.6 * ids**0.56)))


# Free text (``text:``): how a string becomes tokens and what the network receives (``factory.features.text``).
TEXT_SPLITS = ("whitespace", "characters")
TEXT_OUTPUTS = ("multi_hot", "tf_idf", "sequence")
# ``max_tokens: auto`` keeps every token seen ``min_count`` times, at most this many.
TEXT_MAX_TOKENS = 20000
# The token embedding of ``output: sequence`` in the built-in networks, without ``embedding_dim``.
TEXT_EMBEDDING_DIM = 64


@dataclass(frozen=True)
class Text:
    """``text:`` of a string feature. ``vocabulary`` (most frequent first) and ``idf`` (one weight per
    vocabulary token) are ``None`` until the spec is resolved with the training statistics
    (``FeatureSpec.with_statistics``)."""

    split: str = "whitespace"
    lowercase: bool = True
    strip_punctuation: bool = True
    ngrams: int = 1
    max_tokens: int | None = None  # None: ``auto``
    min_count: int = 2
    output: str = "multi_hot"
    max_length: int | None = None
    embedding_dim: int | None = None
    vocabulary: tuple[str, ...] | None = None
    idf: tuple[float, ...] | None = None

    @property
    def auto(self) -> bool:
        return self.vocabulary is None

    @property
    def kept(self) -> int:
        """The most tokens the vocabulary keeps: ``max_tokens``, or ``TEXT_MAX_TOKENS`` for ``auto``."""
        return self.max_tokens or TEXT_MAX_TOKENS

    @property
    def ids(self) -> int | None:
        """``sequence``: the number of ids (padding, unknown and the vocabulary); else None."""
        if self.output != "sequence" or self.vocabulary is None:
            return None
        return len(self.vocabulary) + 2

    @property
    def width(self) -> int | None:
        """``multi_hot``/``tf_idf``: the length of the vector (the vocabulary and one unknown); else None."""
        if self.output == "sequence" or self.vocabulary is None:
            return None
        return len(self.vocabulary) + 1

    @property
    def embedding_width(self) -> int:
        return self.embedding_dim or TEXT_EMBEDDING_DIM


# What stands for a missing value of a feature with ``missing:`` between reading and filling:
# the parse default of a record without the feature, and what ``serving_default`` takes.
MISSING_VALUE = {"float32": math.nan, "int64": -(2**63), "string": ""}


def indicator_name(name: str) -> str:
    return name + INDICATOR_SUFFIX


@dataclass(frozen=True)
class Missing:
    """``missing:`` of a feature: a missing value stays absent from the records and is filled
    in the graph (training, evaluation and both serving signatures alike).

    ``value`` is the fill, one value per channel (last dimension) or one for all; ``None`` for
    ``mean``/``median``/``most_frequent`` until the spec is resolved with the training
    statistics (``FeatureSpec.with_statistics``). ``indicator``: the model also receives
    ``<name>_missing``, float32 ``[batch]``, 1.0 where the record lacked the value.
    """

    fill: str
    value: tuple | None = None
    indicator: bool = False

    @property
    def auto(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class Preprocess:
    """Applied identically in training, evaluation and serving: cast to float32, scale, normalize."""

    scale: float | None = None
    normalize: Normalize | None = None


@dataclass(frozen=True)
class Augment:
    """Random image augmentation; training pipeline only. See the schema for units."""

    flip: str = "none"
    translate: int = 0
    crop: tuple[int, int] | None = None
    brightness: float = 0.0
    contrast: float = 0.0

    @property
    def active(self) -> bool:
        return (
            self.flip != "none"
            or self.translate > 0
            or self.crop is not None
            or self.brightness > 0
            or self.contrast > 0
        )


@dataclass(frozen=True)
class Feature:
    """One named tensor of a record: a model input, a label or the example weight.

    ``shape`` excludes the batch dimension; a ``None`` first dimension means
    variable length. ``default`` is ``None`` for a required feature, otherwise a
    flat tuple of values in row-major order (for a fixed shape, already
    broadcast to the full size). ``auto_vocabulary`` is set (and ``vocabulary``
    is ``None``) for ``vocabulary: auto`` until the spec is resolved.
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    role: str = "feature"  # "feature" | "label" | "weight"
    default: tuple | None = None
    encoding: str | None = None
    vocabulary: tuple[str, ...] | None = None
    oov_buckets: int = 0
    ragged: bool = False
    max_length: int | None = None
    pad_value: Any = None
    preprocess: Preprocess | None = None
    augment: Augment | None = None
    task: str | None = None
    num_classes: int | None = None
    auto_vocabulary: AutoVocabulary | None = None
    missing: Missing | None = None
    column: str | None = None
    hash_buckets: int | None = None
    encode: str | None = None
    embedding_dim: int | None = None
    bins: tuple[float, ...] | None = None
    auto_bins: int | None = None
    text: Text | None = None

    @property
    def auto_statistics(self) -> tuple[str, ...]:
        """The statistics the feature waits for from the training records (``fill``, ``normalize``,
        ``vocabulary``), in the order they are applied; empty when it waits for none."""
        kinds = []
        if self.missing is not None and self.missing.auto:
            kinds.append("fill")
        if self.auto_vocabulary is not None:
            kinds.append("vocabulary")
        if self.preprocess is not None and self.preprocess.normalize is not None and self.preprocess.normalize.auto:
            kinds.append("normalize")
        if self.auto_bins is not None:
            kinds.append("bins")
        if self.text is not None and self.text.auto:
            kinds.append("text")
        return tuple(kinds)

    @property
    def ids(self) -> int | None:
        """How many distinct ids a categorical feature takes (vocabulary plus ``oov_buckets``,
        ``hash_buckets``, or one more than its ``bins`` boundaries); None for any other feature (or
        one still waiting for its ``auto`` vocabulary or bins)."""
        if self.hash_buckets is not None:
            return self.hash_buckets
        if self.bins is not None:
            return len(self.bins) + 1
        if self.vocabulary is not None:
            return len(self.vocabulary) + self.oov_buckets
        return None

    @property
    def encoded_as(self) -> str | None:
        """``one_hot``, ``embedding`` or ``multi_hot`` for a categorical feature: ``encode``, else one-hot
        up to ``ONE_HOT_MAX`` ids and an embedding above (a list: one-hot per position, as declared)."""
        ids = self.ids
        if ids is None or self.role != "feature":
            return None
        if self.encode is not None or self.variable:
            return self.encode or "one_hot"
        return "one_hot" if ids <= ONE_HOT_MAX else "embedding"

    @property
    def embedding_width(self) -> int | None:
        """The embedding's dimensions (``embedding_dim``, else ``embedding_size`` of the ids) when embedded."""
        if self.encoded_as != "embedding":
            return None
        return self.embedding_dim or embedding_size(self.ids)

    @property
    def waits_for(self) -> str:
        """``auto_statistics`` as the spec says them: ``missing.fill: median, normalize: auto``."""
        said = {
            "fill": f"missing.fill: {self.missing.fill}" if self.missing else "",
            "bins": f"bins: {{auto: {self.auto_bins}}}",
            "text": "text",
        }
        return ", ".join(said.get(kind) or f"{kind}: auto" for kind in self.auto_statistics)

    @property
    def source(self) -> str:
        """The CSV column, JSON Lines key or NPZ array the feature is read from (``column``; default: its name)."""
        return self.column or self.name

    @property
    def indicator(self) -> str | None:
        """The name of the model input that flags filled values (``missing.indicator``), else None."""
        return indicator_name(self.name) if self.missing is not None and self.missing.indicator else None

    @property
    def channels(self) -> int:
        """Values per position of the last dimension: the number of per-channel statistics (1 for a scalar)."""
        return self.shape[-1] if self.shape and self.shape[-1] is not None else 1

    @property
    def variable(self) -> bool:
        """True when the first dimension is variable length."""
        return bool(self.shape) and self.shape[0] is None

    @property
    def storage(self) -> str:
        """The tf.train.Example list kind: ``float``, ``int64`` or ``bytes``."""
        return "bytes" if self.encoding else STORAGE[self.dtype]

    @property
    def stored_shape(self) -> tuple[int | None, ...]:
        """Shape of the value as stored in the record (an encoded image is one bytes value)."""
        return () if self.encoding else self.shape

    @property
    def size(self) -> int | None:
        """Number of stored values per record, or None for variable length."""
        if self.variable:
            return None
        return math.prod(self.stored_shape)

    @property
    def required(self) -> bool:
        """True when a record must hold the feature: no ``default``, no ``missing`` and a fixed shape."""
        return self.default is None and self.missing is None and not self.variable

    @property
    def output_dtype(self) -> str:
        """Dtype the network (or the loss) receives after preprocessing."""
        if self.text is not None:
            return "int64" if self.text.output == "sequence" else "float32"
        if self.vocabulary is not None or self.hash_buckets is not None or self.bins is not None:
            return "int64"
        if self.role == "label" and self.task == "classification":
            return "int64"
        if self.preprocess is not None or self.role == "weight":
            return "float32"
        if self.role == "label":
            return "float32" if self.task in ("regression", "binary") else "int64"
        return self.dtype

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        if self.text is not None:
            return (self.text.max_length,) if self.text.output == "sequence" else (self.text.width,)
        if self.variable and self.max_length is not None:
            return (self.max_length, *self.shape[1:])
        return self.shape

    def describe(self) -> str:
        """``uint8 [8, 8, 1] (png)`` - used in error messages."""
        extra = f" ({self.encoding})" if self.encoding else ""
        return f"{self.dtype} {shape_str(self.shape)}{extra}"


@dataclass(frozen=True)
class Cross:
    """A feature cross (``crosses:``): the ids of ``features`` (2 or 3 categorical scalars) combined and
    hashed into ``hash_buckets`` ids; a model input of its own, ``name``. One-hot unless ``encode`` says."""

    name: str
    features: tuple[str, ...]
    hash_buckets: int
    encode: str | None = None
    embedding_dim: int | None = None
    role: str = "feature"

    @property
    def ids(self) -> int:
        return self.hash_buckets

    @property
    def encoded_as(self) -> str:
        return self.encode or "one_hot"

    @property
    def embedding_width(self) -> int | None:
        return (self.embedding_dim or embedding_size(self.ids)) if self.encoded_as == "embedding" else None


def cross_name(features: Sequence[str]) -> str:
    """The default name of a cross: ``age_x_color``."""
    return "_x_".join(features)
