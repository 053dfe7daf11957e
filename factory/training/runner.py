"""The training loop: train, evaluate every N steps, stop early, checkpoint, resume exactly.

``train(config, run_dir)`` is the whole job; the Hydra app in ``cli`` is a
thin wrapper around it. The loop is a custom ``tf.function`` loop rather than
``Model.fit`` because ``fit`` does not run under ``MultiWorkerMirroredStrategy``
with Keras 3, and because owning the loop lets the checkpoint hold everything a
bit-exact resume needs: weights, optimizer slots, the step, the input
iterator's position and the policies' state.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.config import Config, load_config

log = logging.getLogger("factory")


def train(config: Config | Mapping[str, Any], run_dir: str | os.PathLike | None = None) -> float:
    """Run (or resume) one training job; return the best value of the monitored metric.

    ``config`` is a composed config dict (validated here) or a ``Config``.
    ``run_dir`` holds everything the run writes (default: ``config['run_dir']``,
    else ``runs/<timestamp>``). Running again on the same ``run_dir`` resumes
    from its newest checkpoint.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    if run_dir is None:
        run_dir = config.raw.get("run_dir") or time.strftime("runs/%Y-%m-%d_%H-%M-%S")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from factory.training.loop import Loop

    return Loop(config, Path(run_dir)).run()
