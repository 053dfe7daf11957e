"""Helpers for writing networks: the build context, unique layer names, dense inputs.

A build function receives only tensors. What it may need to know beyond them
(a vocabulary's size, which features are images) is in the feature spec, which
``factory.model.builder.build_model`` makes available while the network is being built::

    with building(spec):
        representation = build(features, num_outputs, **params)

and which a build function reads with ``current_spec()``. Keras is imported
inside the helpers, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from factory.errors import ConfigError, FactoryError
from factory.names import HEAD  # the model's output layer: no network layer may take this name
from factory.validation import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from factory.features.feature import Cross, Feature
    from factory.features.spec import FeatureSpec


@dataclass
class _Context:
    spec: FeatureSpec
    network: str | None = None
    used: set[str] = field(default_factory=set)


_stack: list[_Context] = []


@contextlib.contextmanager
def building(spec: FeatureSpec, network: str | None = None) -> Iterator[FeatureSpec]:
    """Make ``spec`` the current spec while ``network`` is built (contexts nest).

    Layer names handed out by ``layer_name`` are unique within one context and
    never equal a feature name (Keras refuses a model where a layer and an
    input share a name).
    """
    context = _Context(spec, network, used={HEAD, *(f.name for f in spec.all())})
    _stack.append(context)
    try:
        yield spec
    finally:
        _stack.pop()


def current_spec() -> FeatureSpec:
    """The feature spec of the model being built; ``FactoryError`` outside ``building``."""
    if not _stack:
        raise FactoryError(
            "no feature spec is being built: call networks through factory.model.builder.build_model "
            "(or inside `with factory.networks.common.building(spec):`)"
        )
    return _stack[-1].spec


def layer_name(base: str) -> str:
    """``base``, or ``base_1``, ``base_2``... if it is taken in the current build.

    Use it for every layer a network creates: a network that calls a helper
    twice, or a feature that happens to be called ``mlp_dense0``, then still
    gets a valid model. Outside ``building`` it returns ``base``.
    """
    if not _stack:
        return base
    used = _stack[-1].used
    name, n = base, 0
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


def spec_feature(name: str) -> Feature:
    """The spec entry of the input named ``name`` in the current build."""
    spec = current_spec()
    for f in spec.features:
        if f.name == name:
            return f
    raise FactoryError(
        f"'{name}' is not a feature of the spec being built; features: {', '.join(f.name for f in spec.features)}"
    )


def is_image(x: keras.KerasTensor) -> bool:
    """True for a ``[batch, height, width, channels]`` tensor with known spatial size."""
    shape = tuple(x.shape)
    return len(shape) == 4 and None not in shape[1:]


def vocabulary_size(feature: Feature) -> int | None:
    """Number of distinct ids of a categorical feature (vocabulary plus OOV buckets, or hash buckets), else None."""
    return feature.ids


def embedded(name: str, f: Feature | Cross, x: keras.KerasTensor) -> keras.KerasTensor:
    """The ids ``x`` of ``f`` through a learnt embedding of ``f.embedding_width`` dimensions per position.

    Ids move up by one: row 0 stands for padding and unknown values (-1), so a padded sequence or a value
    outside a vocabulary without ``oov_buckets`` never indexes out of range.
    """
    import keras  # defers TensorFlow

    shifted = keras.layers.Rescaling(1.0, offset=1.0, dtype="float32", name=layer_name(f"{name}_ids"))(x)
    return keras.layers.Embedding(f.ids + 1, f.embedding_width, name=layer_name(f"{name}_embedding"))(shifted)


@functools.cache
def multi_hot_layer() -> type:
    """``MultiHot(depth)``: a list of ids ``[batch, length]`` (any length; -1 pads) -> ``[batch, depth]``,
    1.0 for each id in the list. A class made on first use: Keras loads only then."""
    import keras  # defers TensorFlow

    @keras.saving.register_keras_serializable(package="factory")
    class MultiHot(keras.layers.Layer):
        def __init__(self, depth: int, **kwargs):
            super().__init__(**kwargs)
            self.depth = depth

        def call(self, ids):
            hot = keras.ops.one_hot(keras.ops.cast(ids, "int32"), self.depth)  # -1: all zeros
            return keras.ops.max(hot, axis=1)

        def compute_output_shape(self, shape):
            return (shape[0], self.depth)

        def get_config(self):
            return {**super().get_config(), "depth": self.depth}

    return MultiHot


@functools.cache
def masked_mean_layer() -> type:
    """``MaskedMean()``: ``[batch, length, dim]`` with a mask -> ``[batch, dim]``, the mean over the
    unmasked positions, zeros where all are masked (an empty list or text; Keras'
    ``GlobalAveragePooling1D`` divides 0 by 0 there). A class made on first use: Keras loads only then."""
    import keras  # defers TensorFlow

    @keras.saving.register_keras_serializable(package="factory")
    class MaskedMean(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, x, mask=None):
            if mask is None:
                return keras.ops.mean(x, axis=1)
            weights = keras.ops.expand_dims(keras.ops.cast(mask, x.dtype), -1)
            count = keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)
            return keras.ops.sum(x * weights, axis=1) / count

        def compute_mask(self, x, mask=None):
            return None

        def compute_output_shape(self, shape):
            return (shape[0], shape[2])

    return MaskedMean


def mean_of(name: str, vectors: keras.KerasTensor) -> keras.KerasTensor:
    """The mean of masked ``vectors`` ``[batch, length, dim]`` over the unmasked positions (zeros for none)."""
    return masked_mean_layer()(name=layer_name(f"{name}_bag"))(vectors)


def bagged(name: str, f: Feature, x: keras.KerasTensor) -> keras.KerasTensor:
    """A variable-length list of ids as the mean of their embeddings (padding, -1, left out): a bag."""
    import keras  # defers TensorFlow

    shifted = keras.layers.Rescaling(1.0, offset=1.0, dtype="float32", name=layer_name(f"{name}_ids"))(x)
    vectors = keras.layers.Embedding(
        f.ids + 1, f.embedding_width, mask_zero=True, name=layer_name(f"{name}_embedding")
    )(shifted)
    return mean_of(name, vectors)


def token_embeddings(name: str, f: Feature, x: keras.KerasTensor, mask: bool = True) -> keras.KerasTensor:
    """The ids of a text's ``sequence`` ``[batch, length]`` -> ``[batch, length, embedding_dim]``; with
    ``mask``, a mask over the padding (id 0), so pooling and recurrent layers leave it out."""
    import keras  # defers TensorFlow

    return keras.layers.Embedding(
        f.text.ids, f.text.embedding_width, mask_zero=mask, name=layer_name(f"{name}_embedding")
    )(x)


def to_float(name: str, x: keras.KerasTensor) -> keras.KerasTensor:
    """Cast an integer (e.g. raw uint8 pixel) input to float, unscaled: scaling is ``preprocess``'s job."""
    import keras  # defers TensorFlow

    if "float" in str(x.dtype):
        return x
    # Rescaling(1.0) is a named, serialisable cast; keras.ops.cast would add an auto-named
    # operation that collides with an input of the same name.
    return keras.layers.Rescaling(1.0, name=layer_name(f"{name}_float"))(x)


def dense_inputs(features: Mapping[str, keras.KerasTensor]) -> keras.KerasTensor:
    """One ``[batch, n]`` float tensor from ``features`` (in spec order), for dense layers.

    - categorical features (int64 ids of a vocabulary or ``hash_buckets``) are
      one-hot encoded to their number of ids, each position separately (a padding
      or unknown id of -1 encodes as all zeros), or embedded (``encode: embedding``,
      the default above ``ONE_HOT_MAX`` ids; see ``embedded``), then flattened;
    - float features are flattened;
    - other integer features (uint8 without ``preprocess``, plain int64) are
      cast to float32 unchanged (no 1/255: declare ``preprocess.scale``), then
      flattened;
    - a missing-value indicator (``<name>_missing``) is one more column, after its feature;
    - a cross (``crosses:``) is one-hot (or embedded) like a categorical feature;
    - free text (``text:``) comes as its vector (``multi_hot``, ``tf_idf``), or as the mean of its
      tokens' embeddings (``sequence``: a bag of words, padding left out).

    Needs the feature spec (``building``) for vocabulary sizes. Raises
    ``ConfigError`` for a feature that has no fixed size (variable length
    without ``max_length``) or a string without a vocabulary.
    """
    import keras  # defers TensorFlow

    spec = current_spec()
    if not features:
        raise FactoryError("dense_inputs: no features given")
    order = {name: i for i, name in enumerate(spec.input_names)}
    names = sorted(features, key=lambda n: (order.get(n, len(order)), n))
    parts = []
    for name in names:
        x = features[name]
        if spec.indicated(name) is not None:  # a missing-value indicator: float32 [batch]
            parts.append(keras.layers.Reshape((1,), name=layer_name(f"{name}_flat"))(x))
            continue
        f = spec.cross(name) or spec_feature(name)
        if getattr(f, "text", None) is not None and f.text.output == "sequence":  # a bag of words: the mean embedding
            parts.append(mean_of(name, token_embeddings(name, f, x)))
            continue
        inner = tuple(x.shape[1:])
        pooled = f.encoded_as == "multi_hot" or (f.encoded_as == "embedding" and getattr(f, "variable", False))
        if None in inner and not pooled:  # a set or a bag takes any length
            raise ConfigError(
                f"features.{name}.max_length: the network '{_network()}' needs a fixed size, "
                f"but '{name}' has variable length; set `max_length` to pad/truncate it"
            )
        depth = vocabulary_size(f)
        if pooled and f.encoded_as == "embedding":
            x = bagged(name, f, x)
        elif f.encoded_as == "embedding":
            x = embedded(name, f, x)
        elif f.encoded_as == "multi_hot":
            x = multi_hot_layer()(depth, name=layer_name(f"{name}_multihot"))(x)
        elif depth is not None:
            x = keras.layers.CategoryEncoding(depth, output_mode="one_hot", name=layer_name(f"{name}_onehot"))(x)
        elif "string" in str(x.dtype):
            raise ConfigError(
                f"features.{name}.vocabulary: the network '{_network()}' needs numbers; "
                "give the string feature a `vocabulary` (ids are one-hot encoded)"
            )
        else:
            x = to_float(name, x)
        size = math.prod(x.shape[1:])
        if len(x.shape) != 2:
            x = keras.layers.Reshape((size,), name=layer_name(f"{name}_flat"))(x)
        parts.append(x)
    if len(parts) == 1:
        return parts[0]
    return keras.layers.Concatenate(name=layer_name("inputs_concat"))(parts)


def _network() -> str:
    """Name of the network being built, for error messages."""
    return (_stack[-1].network if _stack else None) or "this"


def check_range(
    param: str, value: Any, low: float | None = None, high: float | None = None, high_open: bool = False
) -> None:
    """``ConfigError`` at ``network.<param>`` unless ``low <= value <= high`` (``< high`` if ``high_open``)."""
    bad = (low is not None and value < low) or (high is not None and (value >= high if high_open else value > high))
    if bad:
        upper = "" if high is None else f" and {'below' if high_open else 'at most'} {high}"
        lower = "" if low is None else f"at least {low}"
        raise ConfigError(f"network.{param}: {value!r} is out of range; expected {lower}{upper}".rstrip())


def activation(param: str, name: str) -> Any:
    """``keras.activations.get(name)`` with a ``ConfigError`` at ``network.<param>`` for an unknown name."""
    import keras  # defers TensorFlow

    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):
        known = sorted(
            k for k in dir(keras.activations) if not k.startswith("_") and k not in ("get", "serialize", "deserialize")
        )
        raise ConfigError(
            f"network.{param}: unknown activation {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}"
        ) from None
