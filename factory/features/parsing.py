"""The one place that builds the ``tf.io`` parse spec from a feature spec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from factory.features.feature import MISSING_VALUE, Feature, tf_dtype

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec

# Stand-ins for "this record lacks the feature": the checked parse spec gives
# required features these defaults, and the pipeline raises a clear error when
# one shows up instead of TensorFlow's "Feature: x is required but could not be
# found". They are values no real record carries in practice.
MISSING = {
    "float": float(np.finfo(np.float32).min),
    "int64": int(np.iinfo(np.int64).min),
    "bytes": b"\x00factory:missing\x00",
}
_STORAGE_DTYPE = {"float": tf.float32, "int64": tf.int64, "bytes": tf.string}


def storage_dtype(feature: Feature) -> tf.DType:
    return _STORAGE_DTYPE[feature.storage]


def feature_parse_spec(feature: Feature, checked: bool = False):
    """``tf.io`` feature config of one feature, as stored in the records."""
    dtype = storage_dtype(feature)
    if feature.variable:
        inner = list(feature.shape[1:])
        if feature.ragged:
            partitions = [tf.io.RaggedFeature.UniformRowLength(d) for d in reversed(inner)]
            return tf.io.RaggedFeature(dtype, partitions=partitions, row_splits_dtype=tf.int64)
        pad = feature.pad_value
        if feature.dtype == "string":
            pad = str(pad).encode()
        return tf.io.FixedLenSequenceFeature(inner, dtype, allow_missing=True, default_value=pad)
    shape = list(feature.stored_shape)
    if feature.missing is not None:  # the fill happens in the graph (``FeatureTransform.preprocess``)
        marker = MISSING_VALUE[feature.dtype]
        return tf.io.FixedLenFeature(
            shape, dtype, default_value=np.full(shape, marker, dtype=object).tolist() if shape else marker
        )
    if feature.default is not None:
        default: Any = feature.default
        if feature.dtype == "string":
            default = [str(v).encode() for v in default]
        default = np.asarray(default).reshape(shape).tolist() if shape else default[0]
        return tf.io.FixedLenFeature(shape, dtype, default_value=default)
    if checked:
        fill = MISSING[feature.storage]
        return tf.io.FixedLenFeature(
            shape,
            dtype,
            default_value=np.full(shape, fill, dtype=object if feature.storage == "bytes" else None).tolist()
            if shape
            else fill,
        )
    return tf.io.FixedLenFeature(shape, dtype)


def parse_spec(spec: FeatureSpec, labels: bool = True, checked: bool = False) -> dict[str, Any]:
    """``{name: tf.io.FixedLenFeature | FixedLenSequenceFeature | RaggedFeature}``.

    With ``checked=True`` required features get a sentinel default so the
    pipeline can name a missing feature itself (see ``MISSING``).
    """
    return {f.name: feature_parse_spec(f, checked) for f in spec.all(labels)}


def missing_mask(feature: Feature, value: tf.Tensor) -> tf.Tensor:
    """Per-example bool: the record lacked this required feature (checked parse only)."""
    fill = MISSING[feature.storage]
    hit = tf.equal(value, tf.constant(fill, dtype=value.dtype))
    axes = list(range(1, value.shape.rank))
    return tf.reduce_all(hit, axis=axes) if axes else hit


__all__ = ["MISSING", "feature_parse_spec", "missing_mask", "parse_spec", "storage_dtype", "tf_dtype"]
