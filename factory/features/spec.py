"""The feature spec: one declaration of a record format, validated without TensorFlow.

``FeatureSpec`` is the single source of truth for names, dtypes, shapes,
encodings, vocabularies, preprocessing and augmentation. The record writer,
the parse spec, the input pipelines and the serving signatures are all
generated from it (``records``, ``parsing``, ``pipeline``), so they cannot drift
apart. This module itself never imports TensorFlow: building a spec from YAML
and reporting its problems takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.errors import ConfigError
from factory.features import rules
from factory.features.encoder import encode_record
from factory.features.feature import Cross, Feature
from factory.features.statistics import Statistic, declaration
from factory.features.writer import RecordWriter
from factory.validation import did_you_mean, load_yaml, plain, schema_problems

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


@dataclass(frozen=True)
class FeatureSpec:
    """A validated, immutable feature spec. Build it with ``from_yaml`` or ``from_dict``."""

    features: tuple[Feature, ...]
    labels: tuple[Feature, ...] = ()
    weight: Feature | None = None
    crosses: tuple[Cross, ...] = ()
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
            raise ConfigError(
                f"{prefix or 'feature spec'}: expected a mapping with `features` (and `labels`), got {type(spec).__name__}",
                source,
            )
        spec = plain(spec)
        problems = schema_problems(spec, "feature_spec.schema.json")
        if not problems:
            problems = rules.semantic_problems(spec)
        if problems:
            if prefix:
                problems = [f"{prefix}.{p}" if not p.startswith("(") else f"{prefix}: {p}" for p in problems]
            raise ConfigError(problems, source)
        features = tuple(rules.build_feature(name, d, "feature") for name, d in spec["features"].items())
        labels = tuple(rules.build_feature(name, d, "label") for name, d in (spec.get("labels") or {}).items())
        weight = None
        if spec.get("weight"):
            w = spec["weight"]
            default = None if w.get("default") is None else (float(w["default"]),)
            weight = Feature(name=w["name"], dtype="float32", shape=(), role="weight", default=default)
        crosses = tuple(rules.build_cross(c) for c in spec.get("crosses") or [])
        return cls(features=features, labels=labels, weight=weight, crosses=crosses, raw=spec)

    @property
    def needs_statistics(self) -> bool:
        """True when a feature asks for statistics computed from the data (``auto``)."""
        return bool(self.auto_features)

    @property
    def auto_features(self) -> tuple[Feature, ...]:
        """The features that wait for statistics of the training records (``normalize: auto``,
        ``vocabulary: auto``, ``missing.fill`` of mean, median or most_frequent), in spec order."""
        return tuple(f for f in (*self.features, *self.labels) if f.auto_statistics)

    def with_statistics(self, statistics: Mapping[str, Any]) -> FeatureSpec:
        """The spec with every ``auto`` replaced by the computed constants.

        ``statistics`` is the dict ``factory.features.scan.compute_statistics``
        returns (the content of a run's ``statistics.json``): its ``features``
        maps each auto feature's name to ``{"normalize": {"mean": [...], "std": [...]}}``
        or ``{"vocabulary": [...]}``. The result's ``to_dict()`` holds the
        constants, so it round-trips through ``from_dict`` (export manifests
        rebuild the spec that way). ``ConfigError`` names a feature without its
        statistics; a spec without ``auto`` is returned unchanged.
        """
        if not self.needs_statistics:
            return self
        entries = statistics.get("features") if isinstance(statistics, Mapping) else None
        if not isinstance(entries, Mapping):
            raise ConfigError("statistics: expected a mapping with `features` (as compute_statistics returns)")
        raw = plain(self.raw)
        problems = []
        for f in self.auto_features:
            entry = entries.get(f.name)
            lacking = [kind for kind in f.auto_statistics if not isinstance(entry, Mapping) or kind not in entry]
            if lacking:
                problems.append(f"features.{f.name}: the statistics hold no {' or '.join(lacking)} for this feature")
                continue
            Statistic.of(f).write(declaration(raw, f), entry)
        if problems:
            raise ConfigError(problems)
        return type(self).from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the plain dict it was built from (for manifests and run dirs)."""
        return plain(self.raw)

    # -- lookups -----------------------------------------------------------------------

    def all(self, labels: bool = True) -> tuple[Feature, ...]:
        """Features, then (if ``labels``) labels and the weight: everything a record holds."""
        extra = (*self.labels, *((self.weight,) if self.weight else ())) if labels else ()
        return (*self.features, *extra)

    @property
    def input_names(self) -> tuple[str, ...]:
        """What the network receives, in order: each feature, followed by its missing-value
        indicator (``<name>_missing``, float32 ``[batch]``) when ``missing.indicator`` asks for one,
        then the ``crosses`` (int64 ids ``[batch]``)."""
        names = [name for f in self.features for name in (f.name, f.indicator) if name]
        return (*names, *(c.name for c in self.crosses))

    def indicated(self, name: str) -> Feature | None:
        """The feature whose missing-value indicator is the input ``name``, else None."""
        return next((f for f in self.features if f.indicator == name), None)

    def cross(self, name: str) -> Cross | None:
        """The cross that is the input ``name``, else None."""
        return next((c for c in self.crosses if c.name == name), None)

    def __getitem__(self, name: str) -> Feature:
        for f in self.all():
            if f.name == name:
                return f
        raise KeyError(f"no feature named '{name}'{did_you_mean(name, [f.name for f in self.all()])}")

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.all())

    @property
    def label(self) -> Feature:
        """The single label (the runner trains one head)."""
        if len(self.labels) != 1:
            raise ConfigError(f"labels: expected exactly one label, found {len(self.labels)}")
        return self.labels[0]

    # -- generated pieces ------------------------------------------------------------------

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """One record (a dict of values) -> one serialized tf.train.Example.

        Numpy image arrays of ``encoding: png|jpeg`` features are encoded; the
        record is validated first (``RecordError`` names the feature).
        """
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
        return RecordWriter(self, prefix, shards=shards, compression=compression, overwrite=overwrite)

    def parse_spec(self, labels: bool = True) -> dict[str, Any]:
        """The ``tf.io.parse_example`` spec for the stored records."""
        from factory.features.parsing import parse_spec  # defers TensorFlow

        return parse_spec(self, labels=labels)

    def dataset(
        self, files: str | Sequence[str], mode: str = "train", batch_size: int = 32, **kwargs
    ) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of ``(features, labels)`` (``+ weights``) batches.

        See ``factory.features.pipeline.dataset`` for the options. A spec with
        ``auto`` statistics must be resolved first (``with_statistics``).
        """
        self._require_resolved("dataset")
        from factory.features.pipeline import dataset  # defers TensorFlow

        return dataset(self, files, mode=mode, batch_size=batch_size, **kwargs)

    def check(self, files: str | Sequence[str], compression: str | None = None) -> dict[str, int]:
        """Read every record of ``files``; return record counts per file.

        Raises ``RecordError`` naming the file, the record and the feature for
        the first record that does not match the spec or a corrupt file.
        ``auto`` statistics play no part in checking records and need not be resolved.
        """
        from factory.features.pipeline import check_files  # defers TensorFlow

        return check_files(self.without_auto(), files, compression=compression)

    def _require_resolved(self, what: str) -> None:
        if self.needs_statistics:
            names = ", ".join(f"features.{f.name} ({f.waits_for})" for f in self.auto_features)
            raise ConfigError(
                f"{names}: {what} needs the statistics computed from the training records; "
                "resolve the spec first with factory.features.scan.resolve_statistics(spec, files, ...) "
                "or spec.with_statistics(compute_statistics(spec, files))"
            )

    def without_auto(self) -> FeatureSpec:
        """The spec with ``auto`` statistics dropped (plain strings, no normalisation): for reading records as stored."""
        if not self.needs_statistics:
            return self
        raw = plain(self.raw)
        for f in self.auto_features:
            Statistic.of(f).drop(declaration(raw, f))
        raw.pop("crosses", None)  # they combine what reading as stored leaves out
        return type(self).from_dict(raw)


# -- helpers --------------------------------------------------------------------------------
