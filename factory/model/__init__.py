"""From a feature spec and a registered network to a Keras model: ``builder.py`` (inputs, the
network, the head and the outputs by task) and ``tasks.py`` (losses and evaluation metrics)."""
