"""Reading weights from another run's checkpoints (``train.warm_start_from``)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from factory.errors import ConfigError


def find_checkpoint(source: str) -> str | None:
    """The newest checkpoint prefix in a run dir, a checkpoints dir, or ``source`` itself if it is one."""
    path = Path(source).expanduser()
    for directory in (path / "checkpoints", path):
        if directory.is_dir():
            prefix = tf.train.latest_checkpoint(str(directory))
            if prefix:
                return prefix
    return str(path) if tf.io.gfile.exists(str(path) + ".index") else None


def warm_start(model, source: str) -> str:
    """Load the weights (not the optimizer) of ``source`` into ``model``; returns the checkpoint read.

    ``ConfigError`` (at ``train.warm_start_from``) when there is no checkpoint or it
    does not fit this network.
    """
    prefix = find_checkpoint(source)
    if prefix is None:
        raise ConfigError(f"train.warm_start_from: no checkpoint found at {source!r}; give a run dir or a checkpoint prefix")
    status = tf.train.Checkpoint(model=model).read(prefix)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise ConfigError(f"train.warm_start_from: {prefix} does not match this network ({str(err)[:200]})") from None
    status.expect_partial()
    return prefix
