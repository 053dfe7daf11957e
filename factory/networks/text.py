"""``text``: a network for free text (``text:`` features), with the other inputs alongside."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from factory.errors import ConfigError
from factory.networks.common import (
    check_range,
    current_spec,
    dense_inputs,
    layer_name,
    mean_of,
    token_embeddings,
)
from factory.networks.registry import register_network

if TYPE_CHECKING:  # pragma: no cover
    import keras

ENCODERS = ("bag", "conv")


@register_network("text")
def text(
    features: Mapping[str, keras.KerasTensor],
    num_outputs: int,
    encoder: str = "bag",
    filters: int = 128,
    kernel_size: int = 5,
    hidden: int = 64,
    dropout: float = 0.2,
) -> keras.KerasTensor:
    """Each text of ``output: sequence`` through a learnt token embedding (``text.embedding_dim``), then:

    - ``encoder: bag`` (default): the mean of its token embeddings (fastText's model; an empty text
      gives zeros);
    - ``encoder: conv``: a 1-D convolution of ``filters`` filters over ``kernel_size`` tokens, then
      the maximum over the text (Kim's CNN for sentence classification).

    A text as a ``multi_hot`` or ``tf_idf`` vector, and every other input, joins as in ``dense_inputs``.
    Then ``dropout`` (in [0, 1), default 0.2) and a dense layer of ``hidden`` units (default 64; 0 for
    none). Needs at least one ``text`` feature.
    """
    import keras  # defers TensorFlow

    if encoder not in ENCODERS:
        raise ConfigError(f"network.encoder: {encoder!r} is not one of {', '.join(ENCODERS)}")
    for param, value in (("filters", filters), ("kernel_size", kernel_size)):
        check_range(param, value, 1)
    check_range("hidden", hidden, 0)
    check_range("dropout", dropout, 0.0, 1.0, high_open=True)
    spec = current_spec()
    texts = {f.name for f in spec.features if f.text is not None and f.name in features}
    if not texts:
        raise ConfigError(
            "network.name: the network 'text' reads free text, but no feature declares `text:`; "
            "add `text: {output: sequence}` to a string feature, or pick another network"
        )
    sequences = [f for f in spec.features if f.name in texts and f.text.output == "sequence"]
    parts = []
    for f in sequences:
        vectors = token_embeddings(f.name, f, features[f.name], mask=encoder == "bag")  # a convolution sees padding
        if encoder == "bag":
            parts.append(mean_of(f.name, vectors))
        else:
            conv = keras.layers.Conv1D(
                filters, kernel_size, padding="same", activation="relu", name=layer_name(f"{f.name}_conv")
            )(vectors)
            parts.append(keras.layers.GlobalMaxPooling1D(name=layer_name(f"{f.name}_max"))(conv))
    rest = {name: x for name, x in features.items() if name not in {f.name for f in sequences}}
    if rest:
        parts.append(dense_inputs(rest))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=layer_name("text_concat"))(parts)
    if dropout:
        x = keras.layers.Dropout(dropout, name=layer_name("text_dropout"))(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name=layer_name("text_dense"))(x)
    return x
