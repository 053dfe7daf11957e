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
from factory.spec import load_yaml, schema_problems

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from factory.features.records import RecordWriter

DTYPES = ("float32", "int64", "uint8", "string")
# How each spec dtype is stored in a tf.train.Example: the list kind of the Feature proto.
STORAGE = {"float32": "float", "int64": "int64", "uint8": "int64", "string": "bytes"}
IMAGE_CHANNELS = {"png": (1, 2, 3, 4), "jpeg": (1, 3)}
TASKS = ("classification", "binary", "regression")


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
        spec = _plain(spec)
        problems = schema_problems(spec, "feature_spec.schema.json")
        if not problems:
            problems = _semantic_problems(spec)
        if problems:
            if prefix:
                problems = [f"{prefix}.{p}" if not p.startswith("(") else f"{prefix}: {p}" for p in problems]
            raise ConfigError(problems, source)
        features = tuple(_build(name, d, "feature") for name, d in spec["features"].items())
        labels = tuple(_build(name, d, "label") for name, d in (spec.get("labels") or {}).items())
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
        if not self.needs_statistics:
            return self
        entries = statistics.get("features") if isinstance(statistics, Mapping) else None
        if not isinstance(entries, Mapping):
            raise ConfigError("statistics: expected a mapping with `features` (as compute_statistics returns)")
        raw = _plain(self.raw)
        problems = []
        for f in self.auto_features:
            entry = entries.get(f.name)
            kind = f.auto_statistic
            if not isinstance(entry, Mapping) or kind not in entry:
                problems.append(f"features.{f.name}: the statistics hold no {kind} for this `{kind}: auto` feature")
                continue
            declared = raw["labels" if f.role == "label" else "features"][f.name]
            if kind == "normalize":
                norm = entry["normalize"]
                where = declared if f.role == "label" else declared["preprocess"]
                where["normalize"] = {"mean": list(norm["mean"]), "std": list(norm["std"])}
            else:
                declared["vocabulary"] = list(entry["vocabulary"])
                # Only meaningful while the vocabulary is `auto`; the semantic check refuses them otherwise.
                declared.pop("max_tokens", None)
                declared.pop("min_count", None)
        if problems:
            raise ConfigError(problems)
        return FeatureSpec.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the plain dict it was built from (for manifests and run dirs)."""
        return _plain(self.raw)

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
        from factory.features.records import RecordWriter

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
        if not self.needs_statistics:
            return self
        raw = _plain(self.raw)
        for f in self.auto_features:
            declared = raw["labels" if f.role == "label" else "features"][f.name]
            if f.role == "label":
                del declared["normalize"]
            elif f.auto_statistic == "normalize":
                del declared["preprocess"]["normalize"]
            else:
                for key in ("vocabulary", "max_tokens", "min_count", "oov_buckets"):
                    declared.pop(key, None)
        return FeatureSpec.from_dict(raw)


# -- helpers --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Deep-copy into plain dicts/lists (Hydra DictConfig, tuples, ...)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _flatten(value: Any) -> list:
    if isinstance(value, list | tuple):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _nested_shape(value: Any) -> tuple[int, ...] | None:
    """Shape of a nested list, or None if it is ragged."""
    if not isinstance(value, list | tuple):
        return ()
    inner = {_nested_shape(v) for v in value}
    if len(inner) > 1 or None in inner:
        return None
    return (len(value), *(inner.pop() if inner else ()))


def _value_problem(dtype: str, value: Any) -> str | None:
    if dtype == "string":
        return None if isinstance(value, str) else f"expected a string, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {value!r}"
    if dtype in ("int64", "uint8") and float(value) != int(value):
        return f"expected an integer, got {value!r}"
    if dtype == "uint8" and not 0 <= value <= 255:
        return f"{value!r} is outside the uint8 range 0..255"
    return None


def _semantic_problems(spec: dict) -> list[str]:
    """Rules that JSON Schema cannot express well, each with its dotted path."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    groups = [("features", spec["features"]), ("labels", spec.get("labels") or {})]
    for group, entries in groups:
        for name, f in entries.items():
            path = f"{group}.{name}"
            if name in seen:
                problems.append(f"{path}: the name '{name}' is already used in {seen[name]}")
            seen[name] = path
            problems += _feature_problems(path, f, label=group == "labels")
    if spec.get("weight"):
        name = spec["weight"]["name"]
        if name in seen:
            problems.append(f"weight.name: the name '{name}' is already used in {seen[name]}")
    return problems


def _feature_problems(path: str, f: dict, label: bool) -> list[str]:
    p: list[str] = []
    dtype, shape = f["dtype"], f["shape"]
    variable = bool(shape) and shape[0] is None
    if any(d is None for d in shape[1:]):
        p.append(f"{path}.shape: only the first dimension may be null (variable length), got {shape_str(shape)}")
    if not variable:
        for key in ("ragged", "max_length", "pad_value"):
            if key in f:
                p.append(f"{path}.{key}: only applies to variable-length features (a null first dimension in `shape`)")
    elif f.get("ragged") and "max_length" in f:
        p.append(f"{path}.max_length: a ragged feature is not padded; drop `max_length` or set `ragged: false`")

    enc = f.get("encoding")
    if enc:
        if dtype != "uint8":
            p.append(f"{path}.encoding: {enc} images decode to uint8; set `dtype: uint8` (got {dtype})")
        if len(shape) != 3 or None in shape:
            p.append(f"{path}.shape: an encoded image needs a fixed [height, width, channels] shape, got {shape_str(shape)}")
        elif shape[2] not in IMAGE_CHANNELS[enc]:
            allowed = ", ".join(map(str, IMAGE_CHANNELS[enc]))
            p.append(f"{path}.shape: {enc} images have {allowed} channels, got {shape[2]}")
        if "default" in f:
            p.append(f"{path}.default: an encoded image cannot have a default; make the records carry it")

    vocab = f.get("vocabulary")
    if vocab is not None and dtype != "string":
        p.append(f"{path}.vocabulary: a vocabulary maps strings to ids; set `dtype: string` (got {dtype})")
    if "oov_buckets" in f and vocab is None:
        p.append(f"{path}.oov_buckets: needs a `vocabulary`")
    for key in ("max_tokens", "min_count"):
        if key in f and vocab != AUTO:
            p.append(f"{path}.{key}: only applies to `vocabulary: auto` (a vocabulary computed from the training records)")

    if "pad_value" in f and variable:
        problem = _value_problem(dtype, f["pad_value"])
        if problem:
            p.append(f"{path}.pad_value: {problem}")

    if "default" in f and not enc:
        default = f["default"]
        got = _nested_shape(default)
        if variable:
            p.append(f"{path}.default: a variable-length feature defaults to empty; drop `default`")
        elif got is None:
            p.append(f"{path}.default: nested lists of unequal length")
        elif got not in ((), tuple(shape)):
            p.append(f"{path}.default: shape {shape_str(got)} does not match the feature's shape {shape_str(shape)}; give a scalar or a value of that shape")
        else:
            bad = next((m for v in _flatten(default) if (m := _value_problem(dtype, v))), None)
            if bad:
                p.append(f"{path}.default: {bad}")
            elif vocab is not None and vocab != AUTO and f.get("oov_buckets", 0) == 0:
                missing = [v for v in _flatten(default) if v not in vocab]
                if missing:
                    p.append(f"{path}.default: {missing[0]!r} is not in the vocabulary and there are no oov_buckets")

    pre = f.get("preprocess")
    if pre:
        if dtype == "string":
            p.append(f"{path}.preprocess: applies to numeric features; a string feature needs a `vocabulary` instead")
        norm = pre.get("normalize")
        if norm and norm != AUTO:
            channels = shape[-1] if shape and shape[-1] is not None else None
            for key in ("mean", "std"):
                values = norm[key] if isinstance(norm[key], list) else [norm[key]]
                if len(values) != 1 and (not shape or len(values) != channels):
                    p.append(f"{path}.preprocess.normalize.{key}: {len(values)} values, but the last dimension has size {channels or 'none'}; give one value or one per channel")
            stds = norm["std"] if isinstance(norm["std"], list) else [norm["std"]]
            if any(s <= 0 for s in stds):
                p.append(f"{path}.preprocess.normalize.std: must be positive, got {norm['std']!r}")

    aug = f.get("augment")
    if aug:
        if dtype != "uint8" or len(shape) != 3 or None in shape:
            p.append(f"{path}.augment: augmentation applies to images (uint8 with a fixed [height, width, channels] shape), got {dtype} {shape_str(shape)}")
        elif aug.get("crop") and (aug["crop"][0] > shape[0] or aug["crop"][1] > shape[1]):
            p.append(f"{path}.augment.crop: {aug['crop']} is larger than the image ({shape[0]}x{shape[1]})")

    if label:
        p += _label_problems(path, f)
    return p


def _label_problems(path: str, f: dict) -> list[str]:
    p: list[str] = []
    task = _task(f)
    dtype = f["dtype"]
    norm = f.get("normalize")
    if norm is not None and task != "regression":
        p.append(f"{path}.normalize: only a regression label is normalized (this one is {task})")
    elif isinstance(norm, dict):
        size = math.prod(d for d in f["shape"] if d) if f["shape"] else 1
        for key in ("mean", "std"):
            values = norm[key] if isinstance(norm[key], list) else [norm[key]]
            if len(values) not in (1, size):
                p.append(f"{path}.normalize.{key}: {len(values)} values for a label of size {size}; give one value or {size}")
        stds = norm["std"] if isinstance(norm["std"], list) else [norm["std"]]
        if any(v <= 0 for v in stds):
            p.append(f"{path}.normalize.std: must be positive, got {norm['std']!r}")
    if task == "classification":
        if "num_classes" not in f and "vocabulary" not in f:
            p.append(f"{path}.num_classes: a classification label needs `num_classes` (or a string `vocabulary`)")
        if dtype not in ("int64", "string", "uint8"):
            p.append(f"{path}.dtype: class ids are integers; use int64 (or string with a vocabulary), got {dtype}")
        if dtype == "string" and "vocabulary" not in f:
            p.append(f"{path}.vocabulary: a string label needs a `vocabulary` that maps it to class ids")
        vocab = f.get("vocabulary")
        if vocab is not None and "num_classes" in f and f["num_classes"] != len(vocab):
            p.append(f"{path}.num_classes: {f['num_classes']} does not match the vocabulary's {len(vocab)} entries; drop `num_classes`")
    elif task == "binary":
        if dtype not in ("int64", "float32", "uint8"):
            p.append(f"{path}.dtype: a binary label is 0/1 as int64 or float32, got {dtype}")
    else:
        if dtype == "string" or "vocabulary" in f:
            p.append(f"{path}.dtype: a regression label is numeric, got {dtype}")
        if "num_classes" in f:
            p.append(f"{path}.num_classes: only for `task: classification`")
    if f["shape"] and f["shape"][0] is None:
        p.append(f"{path}.shape: a label needs a fixed shape, got {shape_str(f['shape'])}")
    return p


def _task(f: dict) -> str:
    if "task" in f:
        return f["task"]
    return "classification" if ("num_classes" in f or "vocabulary" in f) else "regression"


def _build(name: str, f: dict, role: str) -> Feature:
    shape = tuple(f["shape"])
    default = None
    if "default" in f:
        flat = _flatten(f["default"])
        size = math.prod(shape) if shape else 1
        default = tuple(flat * size if len(flat) == 1 and size > 1 else flat)
    pre = f.get("preprocess")
    if role == "label" and "normalize" in f:  # a label's normalize rescales the network's output
        pre = {"normalize": f["normalize"]}
    preprocess = None
    if pre:
        norm = pre.get("normalize")
        normalize = None
        if norm == AUTO:
            normalize = Normalize()
        elif norm:
            as_tuple = lambda v: tuple(float(x) for x in (v if isinstance(v, list) else [v]))  # noqa: E731
            normalize = Normalize(mean=as_tuple(norm["mean"]), std=as_tuple(norm["std"]))
        preprocess = Preprocess(scale=pre.get("scale"), normalize=normalize)
    aug = f.get("augment")
    augment = None
    if aug:
        augment = Augment(
            flip=aug.get("flip", "none"),
            translate=aug.get("translate", 0),
            crop=tuple(aug["crop"]) if aug.get("crop") else None,
            brightness=float(aug.get("brightness", 0.0)),
            contrast=float(aug.get("contrast", 0.0)),
        )
    auto_vocabulary = None
    if f.get("vocabulary") == AUTO:
        auto_vocabulary = AutoVocabulary(max_tokens=f.get("max_tokens"), min_count=f.get("min_count", 1))
    vocab = tuple(f["vocabulary"]) if f.get("vocabulary") not in (None, AUTO) else None
    task = num_classes = None
    if role == "label":
        task = _task(f)
        if task == "classification":
            num_classes = f.get("num_classes") or len(vocab)
    pad_value = f.get("pad_value")
    if shape and shape[0] is None and pad_value is None:
        pad_value = "" if f["dtype"] == "string" else 0
    return Feature(
        name=name,
        dtype=f["dtype"],
        shape=shape,
        role=role,
        default=default,
        encoding=f.get("encoding"),
        vocabulary=vocab,
        oov_buckets=f.get("oov_buckets", 0),
        ragged=f.get("ragged", False),
        max_length=f.get("max_length"),
        pad_value=pad_value,
        preprocess=preprocess,
        augment=augment if augment and augment.active else None,
        task=task,
        num_classes=num_classes,
        auto_vocabulary=auto_vocabulary,
    )
