"""``cnn``: convolution blocks on every image feature, joined with the other features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from factory.errors import ConfigError
from factory.networks.common import activation as get_activation
from factory.networks.common import (
    check_range,
    current_spec,
    dense_inputs,
    is_image,
    layer_name,
    to_float,
)
from factory.networks.registry import register_network

if TYPE_CHECKING:  # pragma: no cover
    import keras


@register_network("cnn")
def cnn(
    features: Mapping[str, keras.KerasTensor],
    num_outputs: int,
    filters: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    pool: bool = True,
    dense: int = 128,
    dropout: float = 0.25,
    activation: str = "relu",
) -> keras.KerasTensor:
    """Conv blocks on each image feature (``[height, width, channels]``), then a dense layer.

    Every image gets its own tower: per entry of ``filters`` (default
    ``(32, 64)``) a ``kernel_size`` x ``kernel_size`` convolution (default 3,
    ``same`` padding) with ``activation`` (default ``"relu"``), followed, when
    ``pool`` (default True), by a 2x2 max-pool - skipped once the image would
    shrink below 2x2, so 8x8 inputs work. The towers are flattened and joined
    with ``dense_inputs`` of the remaining features, then go through a
    ``dense``-unit layer (default 128; 0 for none) and ``dropout`` (default 0.25).

    Integer pixels without ``preprocess`` are cast to float unchanged; declare
    ``preprocess.scale`` in the feature spec to scale them.
    """
    import keras  # defers TensorFlow

    for i, n in enumerate(filters):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"network.filters[{i}]: expected a positive number of filters, got {n!r}")
    check_range("kernel_size", kernel_size, 1)
    check_range("dense", dense, 0)
    check_range("dropout", dropout, 0.0, 1.0, high_open=True)
    act = get_activation("activation", activation)

    images = [name for name, x in features.items() if is_image(x)]
    if not images:
        described = ", ".join(f"{f.name} ({f.describe()})" for f in current_spec().features)
        raise ConfigError(
            f"network.name: 'cnn' needs at least one image feature ([height, width, channels]); "
            f"the spec has {described}; use mlp or linear"
        )
    parts = []
    for name in images:
        x = to_float(name, features[name])
        for i, n in enumerate(filters):
            x = keras.layers.Conv2D(n, kernel_size, padding="same", activation=act, name=layer_name(f"{name}_conv{i}"))(
                x
            )
            if pool and min(x.shape[1], x.shape[2]) // 2 >= 2:
                x = keras.layers.MaxPooling2D(2, name=layer_name(f"{name}_pool{i}"))(x)
        parts.append(keras.layers.Flatten(name=layer_name(f"{name}_flatten"))(x))
    rest = {name: x for name, x in features.items() if name not in images}
    if rest:
        parts.append(dense_inputs(rest))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=layer_name("cnn_concat"))(parts)
    if dense:
        x = keras.layers.Dense(dense, activation=act, name=layer_name("cnn_dense"))(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=layer_name("cnn_dropout"))(x)
    return x
