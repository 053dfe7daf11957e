"""The random state a training step consumes, and where it lives.

Exact resume needs every random draw of a step either in the checkpoint or derived from
(seed, step) statelessly:

- the input pipeline's shuffling and augmentation are stateless, seeded by the seed and the
  batch index (``features.pipeline``, ``features.transform``);
- Keras layers that draw (dropout, noise, any layer of a registered network using
  ``keras.random`` with a ``SeedGenerator``) keep a generator state variable, which
  ``random_state`` finds and the checkpoint tracks; a ``tf.random.Generator`` held by a
  layer is tracked with the model;
- TensorFlow's stateful random ops (``tf.random.uniform`` and friends) keep their state in the
  op kernel, out of any checkpoint's reach: ``stateful_random_ops`` finds them in a traced
  step, so the trainer can say so.
"""

from __future__ import annotations

from collections.abc import Iterable

# TensorFlow's random ops whose state is held by the kernel (seeded by the global and op seed).
STATEFUL_RANDOM_OPS = frozenset(
    {
        "RandomUniform",
        "RandomUniformInt",
        "RandomStandardNormal",
        "TruncatedNormal",
        "ParameterizedTruncatedNormal",
        "RandomShuffle",
        "Multinomial",
        "RandomGamma",
        "RandomPoisson",
        "RandomPoissonV2",
    }
)


def random_state(model) -> list:
    """The variables that hold the model's random state: the state of every Keras
    ``SeedGenerator`` (dropout, noise, any layer of a registered network that draws
    random numbers through ``keras.random`` with a generator). Keras lists them in
    ``model.variables`` but not in ``model.weights``, and they are not tracked by a
    ``tf.train.Checkpoint`` of the model: without them a resumed run draws other
    dropout masks than the uninterrupted one. In the model's own order, so the
    checkpoint names do not depend on what else the process built."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def stateful_random_ops(graph_def) -> list[str]:
    """The stateful random op types in a ``GraphDef`` and the functions of its library, sorted."""
    nodes: Iterable = [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]
    return sorted({n.op for n in nodes} & STATEFUL_RANDOM_OPS)
