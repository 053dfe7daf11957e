"""Exports and what uses them: ``signatures.py`` (generated from the feature spec),
``exporter.py`` (write aside, verify, publish, retain), ``manifest.py`` (find an export and
read its manifest, no TensorFlow), ``inputs.py`` (check inputs against the manifest, no
TensorFlow) and ``predictor.py`` (``load_export``)."""
