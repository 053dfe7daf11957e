"""``wide_deep``: a linear part over the one-hot inputs plus dense layers over the rest (Estimator's
``DNNLinearCombinedClassifier`` / ``Regressor``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from factory.networks.common import current_spec, dense_inputs, layer_name
from factory.networks.mlp import mlp
from factory.networks.registry import register_network

if TYPE_CHECKING:  # pragma: no cover
    import keras


def wide_names(names: Sequence[str]) -> list[str]:
    """The inputs of the linear part: categorical features encoded one-hot (vocabularies, hash buckets,
    bins), the crosses and texts as ``multi_hot`` or ``tf_idf`` vectors (sparse columns); everything
    else (numbers, embeddings, token sequences, images, indicators) goes deep."""
    spec = current_spec()
    wide = []
    for name in names:
        item = spec.cross(name) or next((f for f in spec.features if f.name == name), None)
        text = getattr(item, "text", None)
        if item is not None and (item.encoded_as == "one_hot" or (text is not None and text.output != "sequence")):
            wide.append(name)
    return wide


@register_network("wide_deep")
def wide_deep(
    features: Mapping[str, keras.KerasTensor],
    num_outputs: int,
    hidden: Sequence[int] = (64, 32),
    activation: str = "relu",
    dropout: float = 0.0,
) -> keras.KerasTensor:
    """The one-hot inputs and crosses straight to the head (the wide, linear part), next to ``hidden``
    dense layers over the other inputs (the deep part): the head adds a linear model of the sparse
    columns to what the deep part learns from numbers and embeddings.

    - ``hidden``: units per deep layer, default ``(64, 32)``.
    - ``activation``: any Keras activation name, default ``"relu"``.
    - ``dropout``: rate after each deep layer, in [0, 1), default 0.
    """
    import keras  # defers TensorFlow

    wide = wide_names(list(features))
    deep = {name: x for name, x in features.items() if name not in wide}
    parts = []
    if wide:
        parts.append(dense_inputs({name: features[name] for name in wide}))
    if deep:  # the deep part is an `mlp` (its checks and layers) over the other inputs
        parts.append(mlp(deep, num_outputs, hidden=hidden, activation=activation, dropout=dropout))
    if len(parts) == 1:
        return parts[0]
    return keras.layers.Concatenate(name=layer_name("wide_deep"))(parts)
