"""The settings of factory's Optuna sweeper, ``hydra/sweeper=factory_optuna``: each one's type,
default and meaning. No Hydra, no Optuna, no TensorFlow.

``hydra_plugins/factory_optuna_sweeper`` registers ``FactoryOptunaSweeperConf`` in Hydra's
ConfigStore; ``factory.sweeps.study`` and ``factory.sweeps.optimize`` read a sweep's values,
and take ``DEFAULTS`` for any that a mapping leaves out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The sweeper's Hydra target: a job's `hydra.sweeper._target_` says whether its sweep is ours.
SWEEPER_TARGET = "hydra_plugins.factory_optuna_sweeper.sweeper.FactoryOptunaSweeper"
DIRECTIONS = ("minimize", "maximize")
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "successive_halving", "none")


@dataclass
class FactoryOptunaSweeperConf:
    """``hydra.sweeper.*`` of ``hydra/sweeper=factory_optuna``; plain values, no ``_target_`` to set."""

    _target_: str = SWEEPER_TARGET
    # minimize or maximize. The default is the direction factory's early stopping judges
    # `early_stop.monitor` by (`early_stop.mode`, `auto` resolved as the policy resolves it).
    direction: str = "${factory_direction:${early_stop.monitor},${early_stop.mode}}"
    # The study's name in its journal file.
    study_name: str = "factory"
    # The study's journal file; null: SWEEP_DIR/optuna.journal. A relative path is taken from the
    # directory the sweep starts in. A file path, not a database URL.
    storage: str | None = None
    # The number of trials the study is to have. Trials it has already (complete, pruned or failed)
    # count: the same command run again continues an unfinished study and runs nothing for a finished one.
    n_trials: int = 20
    # Trials asked for at once and launched as one batch (`hydra/launcher=joblib` runs them in parallel).
    n_jobs: int = 1
    # tpe, random, grid (every combination of choice() and range() values; n_trials is capped at
    # their number) or cmaes (needs `pip install cmaes`; choice() parameters are drawn at random).
    sampler: str = "tpe"
    # The sampler's seed; null draws a new one each sweep. A continued study seeds with
    # seed + its number of trials, so its random start-up trials are not the first ones again.
    seed: int | None = None
    # tpe and cmaes: random trials before the model takes over.
    n_startup_trials: int = 10
    # Stops unpromising trials early, judged at each evaluation against the other trials:
    # median (below the median of complete trials at the same step), hyperband,
    # successive_halving, or none. Training reports each evaluation's monitored value.
    pruner: str = "median"
    # median: complete trials needed before any trial is pruned.
    pruner_n_startup_trials: int = 5
    # median: training steps before a trial can be pruned.
    pruner_n_warmup_steps: int = 0
    # hyperband, successive_halving: the steps of the first rung; auto: successive halving estimates
    # it from the first complete trial (its last step / 100), hyperband takes 1.
    pruner_min_resource: Any = "auto"
    # hyperband: the steps of a full trial; auto: the last step of the first complete trial.
    pruner_max_resource: Any = "auto"
    # hyperband, successive_halving: 1 in this many trials goes on at each rung.
    pruner_reduction_factor: int = 3
    # The search space, {key: value} in Hydra's sweep grammar: interval(a, b), tag(log, interval(a, b)),
    # range(a, b[, step]), choice(x, y, ...) or a fixed value. The command line adds (and overrides) keys.
    params: dict[str, Any] = field(default_factory=dict)


DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(FactoryOptunaSweeperConf) if f.default is not dataclasses.MISSING
}
