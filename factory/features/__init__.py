"""The feature spec and everything generated from it.

Declaration (no TensorFlow): ``feature.py`` (one feature), ``spec.py`` (``FeatureSpec``),
``rules.py`` (checks beyond the schema). Records (no TensorFlow): ``wire.py`` (the
tf.train.Example wire format), ``encoder.py`` and ``columns.py`` (records and whole columns),
``tfrecord.py`` (the container), ``writer.py`` (sharded, atomic), ``conversion.py`` and
``sources.py`` (CSV, JSON Lines, NPZ in, row by row), ``table_blocks.py`` and ``table_write.py``
(CSV, JSON Lines, Parquet in blocks, in parallel processes), ``images.py``.
Reading (TensorFlow): ``parsing.py`` (the parse spec), ``transform.py`` (decode, augment,
preprocess), ``pipeline.py`` (tf.data). Statistics from the data: ``scan.py`` (one pass),
``statistics.py``, ``profile.py`` (``factory stats``). ``bundled.py`` writes the example datasets.
"""
