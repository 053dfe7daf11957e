"""Serving signatures generated from the feature spec; no network author writes one.

- ``serving_default``: one input per feature, named as in the spec, with the
  spec's *raw* dtype and shape plus a batch dimension (an image declared
  ``uint8 [8, 8, 1]`` takes uint8 pixels, not PNG bytes).
- ``tf_example``: one input ``examples``, a 1-D string tensor of serialized
  tf.train.Example (labels not needed), parsed with the spec's parse spec and
  decoded.

Both run the same ``FeatureTransform.preprocess`` as the training pipeline,
then the model, then the task's output head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import tensorflow as tf

from factory.features.feature import Feature, tf_dtype
from factory.features.parsing import parse_spec
from factory.features.spec import FeatureSpec
from factory.features.transform import FeatureTransform
from factory.names import DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE, EXAMPLES_INPUT


def raw_input_spec(feature: Feature) -> tf.TensorSpec:
    """What ``serving_default`` takes for one feature: raw dtype, declared shape, a batch dimension."""
    if feature.ragged:
        raise ValueError(f"feature '{feature.name}': ragged features cannot be fed to a dense serving signature")
    return tf.TensorSpec([None, *feature.shape], tf_dtype(feature.dtype), name=feature.name)


def raw_input_specs(spec: FeatureSpec) -> dict[str, tf.TensorSpec]:
    return {f.name: raw_input_spec(f) for f in spec.features}


def serving_functions(
    spec: FeatureSpec,
    transform: FeatureTransform,
    forward: Callable[[dict], Mapping[str, tf.Tensor]],
) -> dict[str, tuple[Callable, list]]:
    """``{signature name: (function, input_signature)}``.

    ``forward`` maps preprocessed features to the named outputs (the model and
    its head); each function here adds what comes before it.
    """
    features_spec = parse_spec(spec, labels=False)

    def from_raw(inputs):
        return dict(forward(transform.preprocess(dict(inputs), labels=False)))

    def from_examples(examples):
        parsed = tf.io.parse_example(examples, features_spec)
        return from_raw(transform.decode(parsed, labels=False))

    return {
        DEFAULT_SIGNATURE: (from_raw, [raw_input_specs(spec)]),
        EXAMPLE_SIGNATURE: (from_examples, [tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)]),
    }
