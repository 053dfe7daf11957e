"""``mlp``: a stack of dense layers on the dense inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from factory.errors import ConfigError
from factory.networks.common import activation as get_activation
from factory.networks.common import check_range, dense_inputs, layer_name
from factory.networks.registry import register_network

if TYPE_CHECKING:  # pragma: no cover
    import keras


@register_network("mlp")
def mlp(
    features: Mapping[str, keras.KerasTensor],
    num_outputs: int,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    wide: bool = False,
) -> keras.KerasTensor:
    """Dense layers of ``hidden`` units on ``dense_inputs(features)``.

    - ``hidden``: units per layer, default ``(64, 64)``; ``[]`` makes it ``linear``.
    - ``activation``: any Keras activation name, default ``"relu"``.
    - ``dropout``: rate after each layer's activation, in [0, 1), default 0 (none).
    - ``batch_norm``: batch normalisation between each dense layer (then
      without bias) and its activation, default False.
    - ``wide``: also pass the inputs straight to the head ("wide and deep"): the
      model is a linear model plus what the hidden layers add, which suits
      nearly linear tabular data. Default False.
    """
    import keras  # defers TensorFlow

    for i, units in enumerate(hidden):
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ConfigError(f"network.hidden[{i}]: expected a positive number of units, got {units!r}")
    check_range("dropout", dropout, 0.0, 1.0, high_open=True)
    act = get_activation("activation", activation)

    inputs = x = dense_inputs(features)
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, use_bias=not batch_norm, name=layer_name(f"mlp_dense{i}"))(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=layer_name(f"mlp_batch_norm{i}"))(x)
        x = keras.layers.Activation(act, name=layer_name(f"mlp_{activation}{i}"))(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=layer_name(f"mlp_dropout{i}"))(x)
    if wide and hidden:
        x = keras.layers.Concatenate(name=layer_name("mlp_wide"))([inputs, x])
    return x
