"""The ``data`` globs checked against the file system before training starts. No TensorFlow.

A glob that matches no file would otherwise surface only once TensorFlow has loaded and the
model is built (``data.test`` even at the very end of a run). Remote paths (``gs://``,
``s3://``, any ``scheme://``) are left to TensorFlow's file systems; so are the globs under
``data.dir`` when ``data.generate`` is set, since the bundled records are written there on first use.
"""

from __future__ import annotations

import glob
import os

from factory.config.settings import Config
from factory.errors import RecordError
from factory.features.shards import check_complete


def _under(pattern: str, directory: str) -> bool:
    root = os.path.abspath(os.path.expanduser(directory))
    return os.path.abspath(pattern).startswith(root + os.sep)


def missing_data(config: Config) -> list[str]:
    """One problem per local ``data.train``, ``data.eval`` or ``data.test`` glob that matches no file,
    and per shard set they match only in part (``factory.features.shards``)."""
    data = config.data
    problems = []
    for key in ("train", "eval", "test"):
        matched: list[str] = []
        for pattern in getattr(data, key) or ():
            if "://" in pattern or (data.generate and data.dir and _under(pattern, data.dir)):
                continue
            matches = glob.glob(pattern)
            if not matches:
                where = "" if os.path.isabs(pattern) else f" (relative to {os.getcwd()})"
                null = f", or data.{key}=null" if key == "test" else ""
                problems.append(f"data.{key}: '{pattern}' matches no file{where}; fix the path{null}")
            matched += matches
        try:
            check_complete(matched)
        except RecordError as err:
            problems.append(f"data.{key}: {err}")
    return problems
