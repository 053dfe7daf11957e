"""``linear``: the dense inputs themselves; the head on top makes it a linear model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from factory.networks.common import dense_inputs
from factory.networks.registry import register_network

if TYPE_CHECKING:  # pragma: no cover
    import keras


@register_network("linear")
def linear(features: Mapping[str, keras.KerasTensor], num_outputs: int) -> keras.KerasTensor:
    """No hidden layers: returns ``dense_inputs(features)`` (ids one-hot, everything flattened).

    With the ``Dense(num_outputs)`` head this is logistic/softmax/linear regression.
    Takes no parameters.
    """
    return dense_inputs(features)
