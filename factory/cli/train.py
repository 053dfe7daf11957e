"""``factory-train``: the Hydra app around ``factory.training.runner.train``.

With ``factory.cli.train_job`` (the command line's parts, the run dir before and around
the job) and ``factory.cli.train_sweep`` (a sweep's checks, its resume, its callback), the
modules that import Hydra (besides the Optuna sweeper's grammar, ``factory.sweeps.search_space``).
Importing it registers, in Hydra's ConfigStore, the ``train``, ``early_stop``, ``export`` and
``cluster`` groups' defaults from ``factory.config.settings`` (``conf/`` holds no copy of them)
and the ``factory_direction`` resolver. Before Hydra runs the job, the command
line is checked by composing the config with Hydra's compose API and
validating it (``factory.config.load_config``), all without TensorFlow: a
misspelt key or network name is reported in a fraction of a second, with a
suggestion, and exit status 2. Overrides, ``-m`` multirun, sweepers and
launchers then work as in any Hydra app; each run writes everything into its
``hydra.run.dir`` (or the sweep's subdirectory).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from factory.cli.train_job import CONFIG_NAME, config_dir_overrides, record_job, single_run, split_argv
from factory.cli.train_sweep import (
    check_sweep_dir,
    pruning_problems,
    sweep_hydra,
    sweeper_params,
    trial_hparams,
    trial_overrides,
)
from factory.cluster import check_cluster, train_on_ray
from factory.config import DEFAULTED_GROUPS, Config, defaults, load_config
from factory.config.globs import missing_data
from factory.config.resume import check_run_dir
from factory.errors import ConfigError, FactoryError
from factory.networks.registry import default_params, registered_names
from factory.policies import Monitor
from factory.run_dir import owning
from factory.sweeps.hparams import write_trial_hparams
from factory.sweeps.study import TrialReporter, trial_report_spec
from factory.sweeps.trial_process import run_in_child
from factory.training.runner import train
from factory.validation import did_you_mean, resource_dir


def _explain_hydra_error(err: Exception, overrides: list[str], config_dir: str, name: str) -> list[str]:
    """A Hydra composition error as our one-line problems, with suggestions."""
    message = str(err)
    missing = re.search(r"Could not find '([^']+)/([^']+)'", message)
    if missing:
        group, choice = missing.groups()
        options = re.findall(r"^\t(\S+)$", message, re.MULTILINE)
        known = f"; available: {', '.join(options)}" if options else ""
        return [f"{group}: there is no config '{choice}' in the '{group}' group{did_you_mean(choice, options)}{known}"]
    key = re.search(r"full_key: (\S+)", message) or re.search(r"Could not override '([^']+)'", message)
    if key and ("not in struct" in message or "Could not override" in message):
        dotted = key.group(1)
        parent, _, leaf = dotted.rpartition(".")
        siblings = _keys_at(parent, overrides, config_dir, name)
        hint = did_you_mean(leaf, siblings)
        allowed = f"; allowed keys: {', '.join(sorted(siblings))}" if siblings else ""
        return [f"{dotted}: unknown key{hint}{allowed} (to add a new key on purpose, write +{dotted}=...)"]
    first = message.strip().splitlines()[0] if message.strip() else type(err).__name__
    return [f"command line: {first}"]


def _keys_at(parent: str, overrides: list[str], config_dir: str, name: str) -> list[str]:
    """Keys under ``parent`` in the config composed with only the group choices of ``overrides``."""
    groups = [
        o
        for o in overrides
        if "=" in o and ("." not in o.split("=", 1)[0].lstrip("+~") or o.startswith("hydra.searchpath="))
    ]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name=name, overrides=groups)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return [str(k) for k in node] if node is not None and hasattr(node, "keys") else []
    except Exception:
        return []


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML syntax error in a config file as one line: the file, the line, what is wrong."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a config file"
    what = " ".join(str(getattr(err, "problem", None) or err).split())
    context = getattr(err, "context", None)
    return f"{where}: YAML syntax error: {what}{f' ({context})' if context else ''}; fix the file"


def check_command_line(argv: Sequence[str]) -> tuple[Config, str] | None:
    """Compose and validate the config of every trial the command line describes; ConfigError if any is bad.

    For a single run (no ``-m``), its ``Config`` and ``hydra.run.dir`` (as composed, ``${now:...}``
    resolved once), so that ``single_run`` need not compose it again; None for a multirun.
    """
    overrides, multirun, name, dirs = split_argv(argv)
    config_dir = str(resource_dir("conf"))
    overrides = config_dir_overrides(overrides, dirs)
    sampling = any(o.startswith(("hydra/sweeper=", "+hparams_search=", "hparams_search=")) for o in overrides)
    for o in overrides:
        if "interval(" in o and not sampling:
            raise ConfigError(
                f"{o.split('=', 1)[0]}: interval() needs a sampling sweeper (+hparams_search=digits_optuna, "
                "or hydra/sweeper=factory_optuna); the basic sweeper takes lists, range() or choice()"
            )
    try:
        trials = trial_overrides(overrides)
        composed_hydra = sweep_hydra(trials[0], config_dir, name) if multirun else None
        from_config = sweeper_params(composed_hydra, overrides)
        if from_config:
            trials = trial_overrides([*overrides, *from_config])
    except HydraException as err:
        raise ConfigError(f"command line: {str(err).strip().splitlines()[0]}") from None
    config_keys = {p.split("=", 1)[0] for p in from_config}
    seen: set[str] = set()
    single = None
    for trial in trials:
        try:
            with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
                cfg = compose(config_name=name, overrides=trial, return_hydra_config=not multirun)
            if not multirun:
                run_dir = str(OmegaConf.select(cfg, "hydra.run.dir"))
                with open_dict(cfg):
                    cfg.pop("hydra")
            raw = OmegaConf.to_container(cfg, resolve=True)
        except (HydraException, OmegaConfBaseException) as err:
            problems = _explain_hydra_error(err, trial, config_dir, name)
        except yaml.YAMLError as err:
            raise ConfigError(_yaml_problem(err)) from None
        else:
            try:
                config = load_config(raw)
                check_cluster(config)
                problems = [*missing_data(config), *pruning_problems(composed_hydra, config)]
                single = None if multirun else (config, run_dir)
            except ConfigError as err:
                problems = err.problems
        fresh = [p for p in problems if p not in seen]
        seen.update(fresh)
        fresh = [
            f"{p} (it comes from hydra.sweeper.params in a config file)" if p.split(":", 1)[0] in config_keys else p
            for p in fresh
        ]
        if fresh:
            sweep = f" (in the trial {' '.join(trial)})" if len(trials) > 1 else ""
            raise ConfigError([*fresh[:-1], fresh[-1] + sweep])
    check_sweep_dir(composed_hydra, overrides)
    return single


def _job(cfg) -> float:
    raw = OmegaConf.to_container(cfg, resolve=True)
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    raw["run_dir"] = run_dir
    try:
        config = load_config(raw)
        held = contextlib.ExitStack()
        with held:
            if config.train.strategy != "multi_worker_mirrored":
                held.enter_context(owning(run_dir, record=False))
            done = check_run_dir(config, run_dir)
            if done is not None:  # printed, not logged: the log is a file of the run dir
                print(f"{run_dir}: {done.message}", flush=True)
                return done.best_value
            record_job(cfg, hydra_cfg, run_dir)
            if hydra_cfg.mode == RunMode.MULTIRUN:
                trial = f"{Path(hydra_cfg.sweep.dir).name}/{hydra_cfg.job.num}"
                write_trial_hparams(run_dir, trial_hparams(hydra_cfg.overrides.task), trial_id=trial)
            if config.cluster.backend == "ray":
                return train_on_ray(config, run_dir)
            report = trial_report_spec(hydra_cfg)
            if "joblib" not in str(hydra_cfg.launcher.get("_target_", "")).lower():
                return train(config, run_dir=run_dir, reporter=TrialReporter(report) if report else None)
        # joblib's workers live on from trial to trial: one fresh process per trial, so
        # TensorFlow and the trial's memory go when the trial ends. It takes the run dir itself.
        n_jobs = hydra_cfg.launcher.get("n_jobs") or 1
        parallel = max(1, (os.cpu_count() or 1) + 1 + n_jobs) if n_jobs < 0 else n_jobs  # joblib: -1 is one per core
        logging_config = OmegaConf.to_container(hydra_cfg.job_logging, resolve=True)
        return run_in_child(raw, run_dir, logging_config, parallel, report=report)
    except FactoryError as err:
        logging.getLogger("factory").error(f"error: {err}")
        raise SystemExit(err.exit_code) from None


def register_with_hydra() -> None:
    """Put what ``conf/`` composes from Python into Hydra; runs when this module is imported.

    - ``<group>/default`` for ``train``, ``early_stop``, ``export`` and ``cluster``: plain dicts of
      the defaults in ``factory.config.settings`` (not structured configs, so a bad
      value reaches ``load_config`` and its messages). ``conf/config.yaml`` picks them
      in its defaults list like any YAML option, and ``train.batch_size=128`` overrides
      without ``+``.
    - ``network/<name>`` for every built-in network: its name and the defaults of its build
      function's parameters (``conf/`` holds no copy of them either).
    - ``${factory_direction:MONITOR,MODE}``: ``maximize`` or ``minimize``, for Optuna's
      ``direction``; ``MODE`` ``auto`` is resolved by ``factory.policies.Monitor``
      exactly as the early-stop policy resolves it, so a sweep optimises the metric
      the way the runs themselves judge it.
    """
    store = ConfigStore.instance()
    for group, settings in DEFAULTED_GROUPS.items():
        store.store(group=group, name="default", node=defaults(settings), provider="factory")
    for name in registered_names():  # the built-in networks: `network=mlp network.dropout=0.1`
        store.store(group="network", name=name, node={"name": name, **default_params(name)}, provider="factory")

    def direction(monitor: str, mode: str = "auto") -> str:
        return "maximize" if Monitor(monitor, mode, config_key="early_stop").mode == "max" else "minimize"

    if not OmegaConf.has_resolver("factory_direction"):
        OmegaConf.register_new_resolver("factory_direction", direction)


register_with_hydra()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``factory-train``; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    argv = list(sys.argv[1:] if argv is None else argv)
    informational = {
        "--help",
        "-h",
        "--hydra-help",
        "--info",
        "-i",
        "--cfg",
        "-c",
        "--version",
        "--shell-completion",
        "-sc",
    }
    held = contextlib.ExitStack()
    try:
        if not informational.intersection(a.partition("=")[0] for a in argv):
            composed = check_command_line(argv)
            if composed is not None:
                single = single_run(argv, held, *composed)
                if isinstance(single, str):
                    print(single)
                    return 0
                argv = single
    except FactoryError as err:
        held.close()
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code

    app = hydra.main(config_path=str(resource_dir("conf")), config_name=CONFIG_NAME, version_base="1.3")(_job)
    saved = sys.argv
    sys.argv = [saved[0] if saved else "factory-train", *argv]
    try:
        with held:
            app()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except KeyboardInterrupt:
        print("interrupted: the checkpoint is saved; run the same command to resume", file=sys.stderr)
        return 130
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
