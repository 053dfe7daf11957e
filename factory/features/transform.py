"""Decoding, augmentation and preprocessing generated from the feature spec.

Three stages, each a function of a dict of batched tensors:

- ``decode``: stored form -> raw form. PNG/JPEG bytes become uint8 pixels,
  uint8 values stored as int64 become uint8. The raw form is exactly what the
  dense serving signature accepts.
- ``augment``: raw -> raw, training only, stateless random ops seeded per
  batch (so a resumed run repeats the same augmentation).
- ``preprocess``: raw -> model inputs. Missing values filled, vocabulary
  lookup or hashing, text to tokens (``factory.features.text``), cast,
  scale, normalize, pad/truncate. Training, evaluation and both serving
  signatures call this same method, so they cannot disagree; the lookup and
  the normalisation are the statistics' own ``apply``
  (``factory.features.statistics``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import tensorflow as tf

from factory.errors import ConfigError
from factory.features import text
from factory.features.feature import MISSING_VALUE, Augment, Feature, shape_str
from factory.features.statistics import Bins, Normalization, Vocabulary

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec


def _map_values(fn, x):
    return tf.ragged.map_flat_values(fn, x) if isinstance(x, tf.RaggedTensor) else fn(x)


class FeatureTransform(tf.Module):
    """Holds the lookup tables of vocabularies and texts; a ``tf.Module`` so a SavedModel tracks them."""

    def __init__(self, spec: FeatureSpec, raw: Iterable[str] = ()):
        """``raw``: features that ``preprocess`` leaves as read (a network that encodes them itself)."""
        super().__init__(name="feature_transform")
        self.spec = spec
        self.raw = frozenset(raw)
        self._tables = {f.name: Vocabulary(f).table() for f in spec.all() if f.vocabulary is not None}
        self._tables.update({f.name: text.table(f.text) for f in spec.features if f.text is not None})
        # Attribute tracking for SavedModel export.
        self.tables = list(self._tables.values())

    # -- decode -------------------------------------------------------------------------

    def decode(self, parsed: dict, labels: bool = True) -> dict:
        out = dict(parsed)
        for f in self.spec.all(labels):
            if f.name not in parsed:
                continue
            x = parsed[f.name]
            if f.encoding:
                out[f.name] = decode_images(f, x)
            elif f.dtype == "uint8":
                out[f.name] = _map_values(lambda v: tf.cast(v, tf.uint8), x)
        return out

    # -- augment ------------------------------------------------------------------------

    def augment(self, raw: dict, seed: tf.Tensor) -> dict:
        """``seed``: shape [2] integer tensor; different per batch."""
        out = dict(raw)
        for i, f in enumerate(self.spec.features):
            if f.augment is not None and f.name in raw:
                feature_seed = tf.random.experimental.stateless_fold_in(seed, i)
                out[f.name] = augment_images(raw[f.name], f.augment, feature_seed)
        return out

    # -- preprocess ---------------------------------------------------------------------

    def preprocess(self, raw: dict, labels: bool = True) -> dict:
        out = {}
        for f in self.spec.all(labels):
            if f.name not in raw:
                continue
            x = raw[f.name]
            if f.missing is not None:
                filled, missing = fill_missing(f, x)
                if f.indicator:
                    out[f.indicator] = missing
                if f.name not in self.raw:
                    x = filled
            out[f.name] = x if f.name in self.raw else self.preprocess_one(f, x)
        for cross in self.spec.crosses:
            if all(name in out for name in cross.features):
                out[cross.name] = cross_ids([out[name] for name in cross.features], cross.hash_buckets)
        return out

    def preprocess_one(self, f: Feature, x):
        if f.text is not None:
            return text.encode(f.text, self._tables[f.name], x)
        if f.vocabulary is not None:
            x = Vocabulary(f).apply(self._tables[f.name], x)
        elif f.hash_buckets is not None:
            x = _map_values(lambda v: hash_ids(v, f.hash_buckets), x)
        elif f.bins is not None:
            x = Bins(f).apply(x)
        if f.variable and not f.ragged and f.max_length is not None:
            # Padded ids are -1 (not 0, which is the first vocabulary entry, hash bucket or bin): one-hot
            # and embedding layers then see padding as "no token".
            categorical = f.vocabulary is not None or f.hash_buckets is not None or f.bins is not None
            x = _pad_or_truncate(x, f.max_length, -1 if categorical else f.pad_value)
        if f.role == "label":
            target = "int64" if f.task == "classification" else "float32"
            return tf.cast(x, tf.int64 if target == "int64" else tf.float32)
        if f.role == "weight":
            return tf.cast(x, tf.float32)
        pre = f.preprocess
        if pre is None:
            return x
        x = _map_values(lambda v: tf.cast(v, tf.float32), x)
        if pre.scale is not None:
            x = x * pre.scale
        if Normalization.applies_to(f):
            x = _map_values(Normalization(f).apply, x)
        return x


def hash_ids(x: tf.Tensor, buckets: int) -> tf.Tensor:
    """int64 ids in ``[0, buckets)`` of strings (or int64 ids, hashed as their decimal text): the same
    value always gets the same id, in training and in both serving signatures."""
    if x.dtype != tf.string:
        x = tf.strings.as_string(x)
    return tf.strings.to_hash_bucket_fast(x, buckets)


def cross_ids(ids: list[tf.Tensor], buckets: int) -> tf.Tensor:
    """The ids of a cross: each combination of the features' ids (int64 ``[batch]``) hashed into ``buckets``."""
    joined = tf.strings.reduce_join(tf.stack([tf.strings.as_string(i) for i in ids], axis=-1), axis=-1, separator="_x_")
    return tf.strings.to_hash_bucket_fast(joined, buckets)


def fill_missing(f: Feature, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(x with missing values filled, per example 1.0 where any value was missing else 0.0)``.

    A missing value is ``MISSING_VALUE`` of the dtype (NaN, the smallest int64, ``""``): what
    the parse spec gives a record without the feature and what ``serving_default`` takes.
    """
    fill = f.missing.value
    if fill is None:
        raise ConfigError(f"features.{f.name}.missing: the fill is not computed from the training records yet")
    missing = tf.math.is_nan(x) if f.dtype == "float32" else tf.equal(x, tf.constant(MISSING_VALUE[f.dtype], x.dtype))
    values = [v.encode() for v in fill] if f.dtype == "string" else list(fill)
    constant = tf.constant(values if len(values) > 1 else values[0], dtype=x.dtype)
    filled = tf.where(missing, tf.broadcast_to(constant, tf.shape(x)), x)
    axes = list(range(1, x.shape.rank))
    per_example = tf.reduce_any(missing, axis=axes) if axes else missing
    return filled, tf.cast(per_example, tf.float32)


def _pad_or_truncate(x: tf.Tensor, length: int, pad_value) -> tf.Tensor:
    x = x[:, :length]
    pad = length - tf.shape(x)[1]
    paddings = [[0, 0], [0, pad]] + [[0, 0]] * (x.shape.rank - 2)
    value = tf.constant(pad_value.encode() if isinstance(pad_value, str) else pad_value, dtype=x.dtype)
    x = tf.pad(x, paddings, constant_values=value)
    return tf.ensure_shape(x, [None, length, *x.shape[2:]])


def decode_images(f: Feature, data: tf.Tensor) -> tf.Tensor:
    """A batch of PNG/JPEG bytes ``[B]`` -> uint8 ``[B, H, W, C]``, with a clear error on a size mismatch."""
    height, width, channels = f.shape
    message = f"feature '{f.name}': a stored image does not decode to the spec's shape {shape_str(f.shape)}"

    def one(blob):
        image = tf.io.decode_image(blob, channels=channels, dtype=tf.uint8, expand_animations=False)
        check = tf.debugging.assert_equal(tf.shape(image)[:2], tf.constant([height, width]), message=message)
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        return tf.ensure_shape(image, f.shape)

    return tf.map_fn(one, data, fn_output_signature=tf.TensorSpec(f.shape, tf.uint8))


def augment_images(images: tf.Tensor, aug: Augment, seed: tf.Tensor) -> tf.Tensor:
    """Random flips, translation, crop, brightness and contrast on uint8 ``[B, H, W, C]``.

    Stateless: the same ``seed`` gives the same result. Returns uint8 of the same shape.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    seeds = [tf.random.experimental.stateless_fold_in(seed, k) for k in range(6)]
    x = tf.cast(images, tf.float32)

    def coin(s):
        return tf.random.stateless_uniform([batch, 1, 1, 1], s) < 0.5

    if aug.flip in ("horizontal", "both"):
        x = tf.where(coin(seeds[0]), tf.reverse(x, axis=[2]), x)
    if aug.flip in ("vertical", "both"):
        x = tf.where(coin(seeds[1]), tf.reverse(x, axis=[1]), x)
    if aug.crop is not None:
        ch, cw = aug.crop
        offsets = tf.random.stateless_uniform([batch, 2], seeds[2], dtype=tf.float32)
        oy = tf.floor(offsets[:, 0] * (height - ch + 1))
        ox = tf.floor(offsets[:, 1] * (width - cw + 1))
        hy, hx = max(height - 1, 1), max(width - 1, 1)
        boxes = tf.stack([oy / hy, ox / hx, (oy + ch - 1) / hy, (ox + cw - 1) / hx], axis=1)
        x = tf.image.crop_and_resize(x, boxes, tf.range(batch), [height, width])
    if aug.translate:
        shift = tf.random.stateless_uniform([batch, 2], seeds[3], -aug.translate, aug.translate + 1, dtype=tf.int32)
        shift = tf.cast(shift, tf.float32)
        ones, zeros = tf.ones([batch]), tf.zeros([batch])
        # Output pixel (x, y) reads input (x - dx, y - dy): the image moves by (dx, dy).
        transforms = tf.stack([ones, zeros, -shift[:, 1], zeros, ones, -shift[:, 0], zeros, zeros], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=transforms,
            output_shape=[height, width],
            fill_value=0.0,
            interpolation="NEAREST",
            fill_mode="CONSTANT",
        )
    if aug.brightness:
        delta = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[4], -aug.brightness, aug.brightness) * 255.0
        x = x + delta
    if aug.contrast:
        factor = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[5], 1.0 - aug.contrast, 1.0 + aug.contrast)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * factor + mean
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8)
