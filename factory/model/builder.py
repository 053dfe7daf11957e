"""The model builder: feature spec + registered network -> a Keras model that outputs logits.

``build_model`` makes one ``keras.Input`` per feature of the spec (named like
the feature, with the dtype and shape the input pipelines deliver after
preprocessing), calls the registered build function on them and adds the head:
``Dense(num_outputs, name="logits")``, kept in float32 under mixed precision.
Loss, metrics, optimizer and modes are the runner's; what the head's logits
mean is ``head_spec`` (sizes) and ``predictions`` (the serving outputs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from factory.errors import ConfigError
from factory.features.feature import shape_str
from factory.features.spec import FeatureSpec
from factory.features.statistics import Normalization
from factory.names import HEAD, OUTPUTS, output_names
from factory.networks.common import building
from factory.networks.registry import check_params, get_network, raw_inputs

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf


def head_spec(spec: FeatureSpec) -> tuple[str, int]:
    """``(task, num_outputs)`` of the spec's single label.

    - ``classification``: ``num_classes`` outputs (logits of a softmax); the
      label holds one class id per example (shape ``[]`` or ``[1]``);
    - ``binary``: one output per label value (logits of a sigmoid), so 1 for
      a scalar label;
    - ``regression``: one output per label value, so 1 for a scalar label.
    """
    label = spec.label
    size = math.prod(label.shape) if label.shape else 1
    if label.task == "classification":
        if size != 1:
            raise ConfigError(
                f"labels.{label.name}.shape: a classification label holds one class id per example "
                f"(shape [] or [1]), got {shape_str(label.shape)}; for several 0/1 targets use `task: binary`"
            )
        return "classification", int(label.num_classes)
    return str(label.task), int(size)


def build_model(spec: FeatureSpec, network: str, params: Mapping[str, Any] | None = None) -> keras.Model:
    """Build the network registered as ``network`` with ``params`` on ``spec``'s features.

    The model takes a dict of preprocessed features keyed by feature name
    (what ``spec.dataset`` yields) and returns the logits ``[batch, num_outputs]``
    (see ``head_spec``), float32. ``params`` are checked against the build
    function's signature first (``ConfigError`` listing every problem).

    Raises ``ConfigError`` for ragged features (the built-in builder feeds
    padded tensors) or a feature named ``logits`` (both before Keras is
    imported), or a network that does not return one ``[batch, units]`` float
    KerasTensor. A normalized regression label's output is taken back to the
    label's units (``Normalization.invert``).
    """
    params = dict(params or {})
    build = get_network(network)
    problems = check_params(network, params)
    if problems:
        raise ConfigError(problems)
    _, num_outputs = head_spec(spec)
    for f in spec.features:
        if f.ragged:
            raise ConfigError(
                f"features.{f.name}.ragged: the model builder feeds padded tensors; "
                "set `ragged: false` and a `max_length` (or drop `ragged`)"
            )
        if f.name == HEAD:
            raise ConfigError(
                f"features.{f.name}: the name '{HEAD}' is taken by the model's output layer; rename the feature"
            )

    import keras  # defers TensorFlow

    inputs = {}
    raw = raw_inputs(network)
    for f in spec.features:
        if f.name in raw:  # as read: what serving_default takes
            inputs[f.name] = keras.Input(shape=f.shape, dtype=f.dtype, name=f.name)
        else:
            inputs[f.name] = keras.Input(shape=f.output_shape, dtype=f.output_dtype, name=f.name)
        if f.indicator:  # 1.0 where the value was missing and filled
            inputs[f.indicator] = keras.Input(shape=(), dtype="float32", name=f.indicator)
    for cross in spec.crosses:  # hashed ids of combined categories
        inputs[cross.name] = keras.Input(shape=(), dtype="int64", name=cross.name)

    with building(spec, network):
        representation = build(dict(inputs), num_outputs, **params)
    _check_representation(network, representation)
    logits = keras.layers.Dense(num_outputs, dtype="float32", name=HEAD)(representation)
    if spec.label.task == "regression" and Normalization.applies_to(spec.label):
        # Back to the label's units, so losses, metrics and exported predictions need no conversion.
        logits = Normalization(spec.label).invert(logits)
    try:
        model = keras.Model(inputs=inputs, outputs=logits, name=network)
    except ValueError as err:
        if "is used 2 times" not in str(err):
            raise
        clash = str(err).split('"')[1] if '"' in str(err) else "?"
        raise ConfigError(
            f"network '{network}': the name '{clash}' is used twice in the model (a feature and a layer, "
            "or two layers); name every layer with factory.networks.common.layer_name(...)"
        ) from None
    return model


def _check_representation(network: str, value: Any) -> None:
    import keras  # defers TensorFlow

    if not isinstance(value, keras.KerasTensor):
        what = type(value).__name__
        if isinstance(value, Mapping | list | tuple):
            what += " (return one tensor: concatenate the parts)"
        raise ConfigError(
            f"network '{network}': the build function returned {what}; it must return one KerasTensor "
            "[batch, units] computed from the `features` inputs (factory adds the output layer)"
        )
    if len(value.shape) != 2:
        raise ConfigError(
            f"network '{network}': returned a tensor of shape {shape_str(value.shape)}; return [batch, units] "
            "(flatten or pool it first)"
        )
    if "float" not in str(value.dtype):
        raise ConfigError(f"network '{network}': returned a {value.dtype} tensor; return floats (cast it first)")


def predictions(
    task: str, logits: tf.Tensor, label_shape: tuple[int, ...] = (), classes: Sequence[str] | None = None
) -> dict[str, tf.Tensor]:
    """The model's outputs for ``task``, from ``logits`` ``[batch, num_outputs]``; these are the serving outputs.

    Everything per-example is shaped like the label, ``[batch, *label_shape]``
    (``[batch]`` for a scalar label, as the input pipelines deliver labels), so
    a loss or metric compares like with like:

    - ``classification``: ``probabilities`` (softmax, ``[batch, num_classes]``),
      ``class_ids`` (argmax, int64, shaped like the label), ``logits``;
    - ``binary``: ``probability`` (sigmoid, float32), ``class_ids``
      (``probability > 0.5``, int64), ``logits``, all shaped like the label;
    - ``regression``: ``predictions`` (float32, shaped like the label).

    ``classes``: the label's string vocabulary (class id ``i`` is ``classes[i]``); a
    classification then also returns ``classes``, the class names, shaped like ``class_ids``.
    """
    import tensorflow as tf  # defers TensorFlow

    logits = tf.cast(logits, tf.float32)
    shape = tf.concat([tf.shape(logits)[:1], tf.constant(list(label_shape), tf.int32)], axis=0)
    if task == "classification":
        class_ids = tf.reshape(tf.argmax(logits, axis=-1, output_type=tf.int64), shape)
        values = (tf.nn.softmax(logits, axis=-1), class_ids, logits)
    elif task == "binary":
        logits = tf.reshape(logits, shape)
        probability = tf.sigmoid(logits)
        values = (probability, tf.cast(probability > 0.5, tf.int64), logits)
    elif task == "regression":
        values = (tf.reshape(logits, shape),)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(OUTPUTS)}")
    named = task == "classification" and bool(classes)
    if named:
        values = (*values, tf.gather(tf.constant(list(classes), tf.string), values[1]))
    return dict(zip(output_names(task, named), values, strict=True))
