"""The sweep side of ``factory-train``: a sweep's trials checked, a sweep dir run again resumed, trials in TensorBoard.

- ``trial_overrides`` and ``sweeper_params``: the override lists that cover every value of every
  sweep (and the ``hydra.sweeper.params`` of config files), which ``factory.cli.train`` checks
  trial by trial before Hydra starts;
- ``check_sweep_dir``: a sweep dir that exists must hold the same sweep
  (``factory.sweeps.sweep_dir``);
- ``SweepProgress``, the Hydra callback of ``conf/config.yaml``'s ``hydra.callbacks``: at the start
  of a multirun it records the sweep's identity in ``SWEEP_DIR/sweep.yaml`` and notes the state of
  the trials already there; at the end it prints how many trials were skipped, resumed and started;
- ``trial_hparams``: a trial's overrides as the hparams of TensorBoard's HParams dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from factory.config import Config
from factory.errors import ConfigError
from factory.sweeps.optuna_config import DEFAULTS, SWEEPER_TARGET
from factory.sweeps.sweep_dir import (
    SWEEPER,
    check_sweep,
    describe_before,
    record_sweep,
    snapshot,
    sweep_identity,
    tally,
)


def trial_overrides(overrides: list[str]) -> list[list[str]]:
    """Override lists that cover every value of every sweep once (others at their first value)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    base, sweeps = [], []
    for override in parsed:
        if override.is_sweep_override():
            sweep = override.value()
            if isinstance(sweep, IntervalSweep):  # Optuna's interval(): its two ends stand for it
                values = [str(sweep.start), str(sweep.end)]
            else:
                try:
                    values = list(override.sweep_string_iterator())
                except Exception:  # other non-enumerable sweeps: left to the sweeper
                    continue
            sweeps.append((override, values))
            base.append(f"{override.get_key_element()}={values[0]}")
        else:
            base.append(override.input_line)
    trials = [base]
    for override, values in sweeps:
        index = base.index(f"{override.get_key_element()}={values[0]}")
        for value in values[1:]:
            trial = list(base)
            trial[index] = f"{override.get_key_element()}={value}"
            trials.append(trial)
    return trials


def sweep_hydra(base: list[str], config_dir: str, name: str):
    """The ``hydra`` node of the first trial, composed; None on a composition error (the trial checks report it)."""
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            return compose(config_name=name, overrides=base, return_hydra_config=True).hydra
    except Exception:
        return None


def sweeper_params(hydra_cfg, overrides: list[str]) -> list[str]:
    """``hydra.sweeper.params`` set in config files (an ``hparams_search`` overlay, say) as
    overrides, so that a sweep's every parameter is checked, not only those on the command line.
    The command line wins over a parameter of the same key, as in the sweepers."""
    params = OmegaConf.select(hydra_cfg, "sweeper.params") if hydra_cfg is not None else None
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    return [f"{key}={value}" for key, value in (params or {}).items() if key not in given]


def check_sweep_dir(hydra_cfg, overrides: list[str]) -> None:
    """A sweep dir that exists must hold this sweep (``factory.sweeps.sweep_dir.check_sweep``)."""
    if hydra_cfg is None:
        return
    sweep_dir = str(OmegaConf.select(hydra_cfg, "sweep.dir"))
    if Path(sweep_dir).exists() and not Path(sweep_dir).is_dir():
        raise ConfigError(f"hydra.sweep.dir: {sweep_dir} is a file, not a directory; name a directory for the sweep")
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    check_sweep(sweep_dir, identity_of(hydra_cfg, task))


def pruning_problems(hydra_cfg, config: Config) -> list[str]:
    """A pruner needs evaluations to judge: refused for trials that evaluate only at their last step."""
    sweeper = OmegaConf.select(hydra_cfg, "sweeper") if hydra_cfg is not None else None
    if sweeper is None or sweeper.get("_target_") != SWEEPER_TARGET:
        return []
    pruner = str(sweeper.get("pruner", DEFAULTS["pruner"]))
    train = config.train
    if pruner != "none" and config.cluster.backend == "ray":
        return [
            f"hydra.sweeper.pruner: trials trained with cluster=ray do not report to the study, so the {pruner} "
            "pruner could not judge them; set hydra.sweeper.pruner=none, or train the trials without cluster=ray"
        ]
    if pruner == "none" or train.eval_every_steps < train.max_steps:
        return []
    return [
        f"hydra.sweeper.pruner: the {pruner} pruner judges trials at their evaluations, and these evaluate only "
        f"at their last step (train.eval_every_steps={train.eval_every_steps}, train.max_steps={train.max_steps}): "
        "lower train.eval_every_steps, or set hydra.sweeper.pruner=none"
    ]


def trial_hparams(overrides: Sequence[str]) -> dict[str, bool | int | float | str]:
    """A trial's overrides as TensorBoard hparams: numbers and booleans as such, anything else as typed."""
    out = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if not override.is_delete():
            value = override.value()
            scalar = isinstance(value, bool | int | float | str)
            out[override.key_or_group] = value if scalar else override.get_value_element_as_str()
    return out


def identity_of(hydra_cfg: DictConfig, task: list[str] | None = None) -> dict[str, str]:
    """The sweep identity of a composed ``hydra`` node; ``task``: the overrides, if not its ``overrides.task``."""
    params = OmegaConf.select(hydra_cfg, "sweeper.params")
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    task = list(OmegaConf.select(hydra_cfg, "overrides.task") or []) if task is None else task
    return sweep_identity(task, str(OmegaConf.select(hydra_cfg, "runtime.choices")[SWEEPER]), params or {})


class SweepProgress(Callback):
    def __init__(self) -> None:
        self.before: dict = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(config.hydra.sweep.dir)
        self.before = snapshot(sweep_dir)
        record_sweep(sweep_dir, identity_of(config.hydra))
        line = describe_before(self.before)
        if line:
            print(f"sweep {sweep_dir}: {line}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(config.hydra.sweep.dir)
        print(f"sweep {sweep_dir}: {tally(self.before, sweep_dir)}", flush=True)
