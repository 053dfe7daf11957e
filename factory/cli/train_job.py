"""Around a ``factory-train`` job: its command line's parts and its run dir, checked, owned and recorded.

Before Hydra starts a single run, ``single_run`` pins its ``hydra.run.dir`` (as the command-line
check composed it), compares the config with the previous run's there (``factory.config.resume``) and takes the run dir's lock
(``factory.run_dir.owning``): a finished run is reported without Hydra writing anything. Every
job (a sweep's trials too) records Hydra's files itself, with ``record_job``, once it knows it
will train (``conf/config.yaml`` sets ``hydra.output_subdir: null``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from factory.config import Config
from factory.config.resume import check_run_dir
from factory.errors import ConfigError
from factory.run_dir import HYDRA, owning, write_text

CONFIG_NAME = "config"
_HYDRA_FLAGS_WITH_VALUE = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--info",
    "-i",
    "--package",
    "-p",
}


def split_argv(argv: Sequence[str]) -> tuple[list[str], bool, str, list[str]]:
    """``(overrides, multirun, config_name, extra config dirs)`` from a Hydra command line."""
    overrides, multirun, name, dirs = [], False, CONFIG_NAME, []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        key, _, inline = arg.partition("=") if arg.startswith("-") else (arg, "", "")
        if arg in ("-m", "--multirun"):
            multirun = True
        elif key in _HYDRA_FLAGS_WITH_VALUE:
            value = inline or (args[i + 1] if i + 1 < len(args) else "")
            if not inline:
                i += 1
            if key in ("--config-name", "-cn"):
                name = value
            elif key in ("--config-dir", "-cd"):
                dirs.append(value)
        elif not arg.startswith("-"):
            overrides.append(arg)
        i += 1
    return overrides, multirun, name, dirs


def config_dir_overrides(overrides: list[str], dirs: list[str]) -> list[str]:
    """``overrides`` plus the ``hydra.searchpath`` that ``--config-dir`` adds."""
    if not dirs:
        return overrides
    return [*overrides, f"hydra.searchpath=[{','.join('file://' + os.path.abspath(d) for d in dirs)}]"]


def record_job(cfg, hydra_cfg, run_dir: str) -> None:
    """Hydra's record of the job in ``RUN_DIR/.hydra/`` (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``).

    ``conf/config.yaml`` sets ``hydra.output_subdir: null``, so Hydra writes nothing before the
    job; the job writes these files itself once it knows it will train: a finished run dir
    run again is left as it was.
    """
    directory = Path(run_dir) / HYDRA
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text(directory / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    write_text(directory / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))


def single_run(argv: list[str], held: contextlib.ExitStack, config: Config, run_dir: str) -> list[str] | str:
    """Before Hydra starts a single run: its run dir, owned by this process from now on.

    ``config`` and ``run_dir`` are the run's as ``check_command_line`` composed them. Checks
    the config against the run dir's previous run (``factory.config.resume``) and takes the
    run dir's lock. Returns the command line for Hydra, with ``hydra.run.dir`` pinned (so a
    ``${now:...}`` in it names the same directory), or the line to print when the run is
    finished (then nothing is written at all).
    """
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise ConfigError(f"hydra.run.dir: {run_dir} is a file, not a directory; name a directory for the run")
    if config.train.strategy != "multi_worker_mirrored":  # its workers share the run dir
        held.enter_context(owning(run_dir, record=False))
    done = check_run_dir(config, run_dir)
    if done is not None:
        held.close()
        return done.message
    if config.train.strategy != "multi_worker_mirrored":
        held.enter_context(owning(run_dir))
    quoted = "'" + run_dir.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return [*(a for a in argv if not a.startswith("hydra.run.dir=")), f"hydra.run.dir={quoted}"]
