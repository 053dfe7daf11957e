"""The feature spec: one declaration of a record format, validated without TensorFlow.

``FeatureSpec`` is the single source of truth for names, dtypes, shapes,
encodings, vocabularies, preprocessing and augmentation. The record writer,
the parse spec, the input pipelines and the serving signatures are all
generated from it (``records``, ``parsing``, ``pipeline``), so they cannot drift
apart. This module itself never imports TensorFlow: building a spec from YAML
and reporting its problems takes milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.errors import ConfigError
from factory.spec import load_yaml, plain, schema_problems

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from factory.features.writer import RecordWriter

# How each spec dtype is stored in a tf.train.Example: the list kind of the Feature proto.
STORAGE = {"float32": "float", "int64": "int64", "uint8": "int64", "string": "bytes"}
IMAGE_CHANNELS = {"png": (1, 2, 3, 4), "jpeg": (1, 3)}


def tf_dtype(dtype: str) -> tf.DType:
    """The one mapping from a spec dtype name to a TensorFlow dtype."""
    import tensorflow as tf

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

    @property
    def auto_statistic(self) -> str | None:
        """``"normalize"`` or ``"vocabulary"`` when the feature waits for statistics from the data, else None."""
        if self.auto_vocabulary is not None:
            return "vocabulary"
        if self.preprocess is not None and self.preprocess.normalize is not None and self.preprocess.normalize.auto:
            return "normalize"
        return None

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
        return self.default is None and not self.variable

    @property
    def is_image(self) -> bool:
        return self.dtype == "uint8" and len(self.shape) == 3 and None not in self.shape

    @property
    def output_dtype(self) -> str:
        """Dtype the network (or the loss) receives after preprocessing."""
        if self.vocabulary is not None or (self.role == "label" and self.task == "classification"):
            return "int64"
        if self.preprocess is not None or self.role == "weight":
            return "float32"
        if self.role == "label":
            return "float32" if self.task in ("regression", "binary") else "int64"
        return self.dtype

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        if self.variable and self.max_length is not None:
            return (self.max_length, *self.shape[1:])
        return self.shape

    def describe(self) -> str:
        """``uint8 [8, 8, 1] (png)`` - used in error messages."""
        extra = f" ({self.encoding})" if self.encoding else ""
        return f"{self.dtype} {shape_str(self.shape)}{extra}"


@dataclass(frozen=True)
class FeatureSpec:
    """A validated, immutable feature spec. Build it with ``from_yaml`` or ``from_dict``."""

    features: tuple[Feature, ...]
    labels: tuple[Feature, ...] = ()
    weight: Feature | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeatureSpec:
        """Load and validate a feature spec file; every problem is reported at once."""
        return cls.from_dict(load_yaml(path), source=str(path))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], source: str | None = None, prefix: str = "") -> FeatureSpec:
        """Validate a plain dict (as read from YAML) and build the spec.

        ``prefix`` is prepended to every dotted path in error messages, so a spec
        embedded in a larger config reports ``features.features.image.shape``.
        """
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{prefix or 'feature spec'}: expected a mapping with `features` (and `labels`), got {type(spec).__name__}", source)
        spec = plain(spec)
        problems = schema_problems(spec, "feature_spec.schema.json")
        if not problems:
            from factory.features.rules import semantic_problems

            problems = semantic_problems(spec)
        if problems:
            if prefix:
                problems = [f"{prefix}.{p}" if not p.startswith("(") else f"{prefix}: {p}" for p in problems]
            raise ConfigError(problems, source)
        from factory.features.rules import build_feature

        features = tuple(build_feature(name, d, "feature") for name, d in spec["features"].items())
        labels = tuple(build_feature(name, d, "label") for name, d in (spec.get("labels") or {}).items())
        weight = None
        if spec.get("weight"):
            w = spec["weight"]
            default = None if w.get("default") is None else (float(w["default"]),)
            weight = Feature(name=w["name"], dtype="float32", shape=(), role="weight", default=default)
        return cls(features=features, labels=labels, weight=weight, raw=spec)

    @property
    def needs_statistics(self) -> bool:
        """True when a feature asks for statistics computed from the data (``auto``)."""
        return bool(self.auto_features)

    @property
    def auto_features(self) -> tuple[Feature, ...]:
        """The features with ``normalize: auto`` or ``vocabulary: auto``, in spec order."""
        return tuple(f for f in (*self.features, *self.labels) if f.auto_statistic is not None)

    def with_statistics(self, statistics: Mapping[str, Any]) -> FeatureSpec:
        """The spec with every ``auto`` replaced by the computed constants.

        ``statistics`` is the dict ``factory.features.stats.compute_statistics``
        returns (the content of a run's ``statistics.json``): its ``features``
        maps each auto feature's name to ``{"normalize": {"mean": [...], "std": [...]}}``
        or ``{"vocabulary": [...]}``. The result's ``to_dict()`` holds the
        constants, so it round-trips through ``from_dict`` (export manifests
        rebuild the spec that way). ``ConfigError`` names a feature without its
        statistics; a spec without ``auto`` is returned unchanged.
        """
        from factory.features.rules import resolve_auto

        return resolve_auto(self, statistics)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the plain dict it was built from (for manifests and run dirs)."""
        return plain(self.raw)

    # -- lookups -----------------------------------------------------------------------

    def all(self, labels: bool = True) -> tuple[Feature, ...]:
        """Features, then (if ``labels``) labels and the weight: everything a record holds."""
        extra = (*self.labels, *((self.weight,) if self.weight else ())) if labels else ()
        return (*self.features, *extra)

    def __getitem__(self, name: str) -> Feature:
        for f in self.all():
            if f.name == name:
                return f
        from factory.spec import did_you_mean

        raise KeyError(f"no feature named '{name}'{did_you_mean(name, [f.name for f in self.all()])}")

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.all())

    @property
    def label(self) -> Feature:
        """The single label (the runner trains one head)."""
        if len(self.labels) != 1:
            raise ConfigError(f"labels: expected exactly one label, found {len(self.labels)}")
        return self.labels[0]

    # -- generated pieces (TensorFlow is imported only here) ------------------------------

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """One record (a dict of values) -> one serialized tf.train.Example.

        Numpy image arrays of ``encoding: png|jpeg`` features are encoded; the
        record is validated first (``RecordError`` names the feature).
        """
        from factory.features.records import encode_record

        return encode_record(self, record)

    def writer(
        self,
        prefix: str | Path,
        shards: int = 1,
        compression: str | None = None,
        overwrite: bool = False,
    ) -> RecordWriter:
        """A sharded, validating, atomic TFRecord writer; use it as a context manager.

        Shards are named ``prefix-00000-of-0000N.tfrecord`` (``.gz``/``.zz`` when
        compressed with ``"GZIP"``/``"ZLIB"``) and appear only when the writer
        closes without error.
        """
        from factory.features.writer import RecordWriter

        return RecordWriter(self, prefix, shards=shards, compression=compression, overwrite=overwrite)

    def parse_spec(self, labels: bool = True) -> dict[str, Any]:
        """The ``tf.io.parse_example`` spec for the stored records."""
        from factory.features.parsing import parse_spec

        return parse_spec(self, labels=labels)

    def dataset(self, files: str | Sequence[str], mode: str = "train", batch_size: int = 32, **kwargs) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of ``(features, labels)`` (``+ weights``) batches.

        See ``factory.features.pipeline.dataset`` for the options. A spec with
        ``auto`` statistics must be resolved first (``with_statistics``).
        """
        self._require_resolved("dataset")
        from factory.features.pipeline import dataset

        return dataset(self, files, mode=mode, batch_size=batch_size, **kwargs)

    def check(self, files: str | Sequence[str], compression: str | None = None) -> dict[str, int]:
        """Read every record of ``files``; return record counts per file.

        Raises ``RecordError`` naming the file, the record and the feature for
        the first record that does not match the spec or a corrupt file.
        ``auto`` statistics play no part in checking records and need not be resolved.
        """
        from factory.features.pipeline import check_files

        return check_files(self.without_auto(), files, compression=compression)

    def _require_resolved(self, what: str) -> None:
        if self.needs_statistics:
            names = ", ".join(f"features.{f.name} ({f.auto_statistic}: auto)" for f in self.auto_features)
            raise ConfigError(
                f"{names}: {what} needs the statistics computed from the training records; "
                "resolve the spec first with factory.features.stats.resolve_statistics(spec, files, ...) "
                "or spec.with_statistics(compute_statistics(spec, files))"
            )

    def without_auto(self) -> FeatureSpec:
        """The spec with ``auto`` statistics dropped (plain strings, no normalisation): for reading records as stored."""
        from factory.features.rules import drop_auto

        return drop_auto(self)


# -- helpers --------------------------------------------------------------------------------
