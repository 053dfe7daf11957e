"""``check_cluster``: whether a config's ``cluster`` can run, checked without Ray or TensorFlow.

``factory-train`` calls it with the rest of the command-line check, so a run that cannot start
on Ray (Ray not installed, a strategy other than the one every Ray worker trains under, a batch
the workers cannot split) exits with status 2 in a fraction of a second, before anything loads.
"""

from __future__ import annotations

import importlib.util

from factory.config import Config
from factory.config.settings import CLUSTER_STRATEGY
from factory.errors import ConfigError

# The extra that installs Ray Train (pyproject.toml).
RAY_EXTRA = "pip install 'factory[ray]'"


def ray_installed() -> bool:
    """Whether ``import ray`` would find Ray (nothing is imported)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a broken or stubbed-out installation
        return False


def cluster_problems(config: Config) -> list[str]:
    """One line per reason ``config.cluster`` cannot run, each starting with its dotted key."""
    cluster = config.cluster
    if cluster.backend != "ray":
        return []
    if not ray_installed():
        return [f"cluster=ray needs Ray: {RAY_EXTRA}"]
    problems = []
    if config.train.strategy != CLUSTER_STRATEGY:
        problems.append(
            f"train.strategy: cluster=ray trains every worker under {CLUSTER_STRATEGY} (conf/cluster/ray.yaml "
            f"sets it), not '{config.train.strategy}'; drop train.strategy from the command line"
        )
    if config.train.batch_size % cluster.workers:
        problems.append(
            f"train.batch_size: {config.train.batch_size} examples per step cannot be split evenly across "
            f"cluster.workers={cluster.workers}; use a multiple of {cluster.workers}"
        )
    return problems


def check_cluster(config: Config) -> None:
    """Raise ``ConfigError`` (exit status 2) listing every reason ``config.cluster`` cannot run.

    With ``cluster.backend: local`` there is nothing to check. With ``ray``: Ray must be
    installed (``pip install 'factory[ray]'``), ``train.strategy`` must be
    ``multi_worker_mirrored`` (what ``cluster=ray`` sets), and ``train.batch_size`` a multiple
    of ``cluster.workers``. Imports neither Ray nor TensorFlow.
    """
    problems = cluster_problems(config)
    if problems:
        raise ConfigError(problems)
