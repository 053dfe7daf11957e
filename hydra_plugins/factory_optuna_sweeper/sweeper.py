"""factory's Optuna sweeper for Hydra: ``hydra/sweeper=factory_optuna``.

A thin adapter: its config (``factory.sweeps.optuna_config``, registered here in Hydra's
ConfigStore as ``hydra/sweeper`` ``factory_optuna``) and a ``Sweeper`` that hands its search space
(``factory.sweeps.search_space``) and a way to launch trials to ``factory.sweeps.optimize``.
The study lives in a journal file (``factory.sweeps.study``): running the same sweep again
continues it. Hydra imports this module whenever it starts, so Optuna is loaded only when a
sweep runs.
"""

import importlib.util
import sys
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from factory.errors import FactoryError
from factory.sweeps.optuna_config import FactoryOptunaSweeperConf

ConfigStore.instance().store(
    group="hydra/sweeper", name="factory_optuna", node=FactoryOptunaSweeperConf, provider="factory"
)


class FactoryOptunaSweeper(Sweeper):
    """Hydra's end of the sweep: the launcher, and each job's outcome for ``factory.sweeps.optimize``."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        """Run the sweep; a problem the user can fix is one ``error:`` line on stderr and exit status 2."""
        assert self.config is not None
        if importlib.util.find_spec("optuna") is None:
            print("error: hydra/sweeper=factory_optuna needs optuna: pip install 'optuna>=4'", file=sys.stderr)
            raise SystemExit(2)
        # optuna is optional (factory[sweeps]): loaded when a sweep of this sweeper runs
        from factory.sweeps.optimize import optimize, sweep_settings
        from factory.sweeps.search_space import parse_search_space

        sweep_dir = str(self.config.hydra.sweep.dir)
        params = self.settings.get("params")
        params = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else params or {}
        try:
            settings = sweep_settings(self.settings, sweep_dir, str(self.config.hydra.runtime.cwd))
            space = parse_search_space([*(f"{k}={v}" for k, v in params.items()), *arguments])
            objective = OmegaConf.select(self.config, "early_stop.monitor", default=None)
            return optimize(settings, space, sweep_dir, self._launch, objective=objective)
        except FactoryError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(err.exit_code) from None

    def _launch(self, batch: list[list[str]], first: int) -> list:
        from factory.sweeps.optimize import Outcome  # loaded with optuna, as in sweep()

        assert self.launcher is not None
        try:
            returns = self.launcher.launch(batch, initial_job_idx=first)
        except KeyboardInterrupt:
            raise
        except (Exception, SystemExit) as err:  # a job's error exit ends its batch's launch
            error = f"{type(err).__name__}: {err}"
            return [Outcome(self._output_dir(o, first + i), error=error, aborted=True) for i, o in enumerate(batch)]
        outcomes = []
        for job in returns:
            output_dir = Path(str(job.hydra_cfg.hydra.runtime.output_dir))
            try:
                outcomes.append(Outcome(output_dir, value=job.return_value))
            except Exception as err:  # the job raised: Hydra kept the exception for us
                outcomes.append(Outcome(output_dir, error=f"{type(err).__name__}: {err}"))
        return outcomes

    def _output_dir(self, overrides: list[str], number: int) -> Path:
        """The output dir of job ``number`` (composed as the launcher composes it)."""
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.num = number
                cfg.hydra.job.id = number
            return sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        except Exception:  # a subdir that needs more than the job number: Hydra's default layout
            return sweep_dir / str(number)
