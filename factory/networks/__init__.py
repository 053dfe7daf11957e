"""Built-in networks, each registered with ``@register_network`` when this package is imported.

- ``linear``: no hidden layers; the head on top of the dense inputs is a linear model.
- ``mlp``: dense layers (``hidden``, ``activation``, ``dropout``, ``batch_norm``).
- ``cnn``: conv blocks on every image feature, then a dense layer.
- ``wide_deep``: a linear part over one-hot categoricals and crosses, dense layers over the rest.
- ``text``: free text through a token embedding, averaged (a bag) or convolved, with the other inputs.

Helpers for writing your own (``current_spec``, ``dense_inputs``, ``layer_name``)
live in ``factory.networks.common`` and are re-exported here. Each module imports Keras only inside its build function, so importing this
package (which the registry does on the first lookup) does not import TensorFlow.
"""

from factory.networks import cnn, linear, mlp, text, wide_deep
from factory.networks.common import building, current_spec, dense_inputs, layer_name

__all__ = ["building", "cnn", "current_spec", "dense_inputs", "layer_name", "linear", "mlp", "text", "wide_deep"]
