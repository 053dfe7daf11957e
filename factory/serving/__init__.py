"""Exports and what uses them: ``signatures.py`` (generated from the feature spec),
``exporter.py`` (write aside, verify), ``export_tree.py`` (publish, point ``current``, retain;
no TensorFlow), ``manifest.py`` (find an export and read its manifest, no TensorFlow),
``inputs.py`` (check inputs against the manifest, no TensorFlow) and ``predictor.py`` (``load_export``)."""
