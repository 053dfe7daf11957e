"""User modules listed under the config's ``imports:``: imported so their ``@register_network`` runs."""

from __future__ import annotations

import importlib
import os
import re
import sys

from factory.errors import ConfigError, FactoryError
from factory.networks import registry

MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def import_modules(names: list[str] | tuple[str, ...], key: str = "imports") -> list[str]:
    """Import the modules a config lists under ``imports:`` so their networks register.

    The current working directory is appended to ``sys.path`` first (after
    everything else, so it never shadows an installed package): a quick script's
    ``my_networks.py`` next to where the run starts is found without packaging.
    Returns the network names that became registered.

    A module that is missing or fails while importing raises ``ConfigError``
    at ``imports[i]`` with the reason; the config never names a callable.
    """
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise ConfigError(f"{key}: expected a list of module names, got {names!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    before = registry.registered_names()
    for i, module in enumerate(names):
        where = f"{key}[{i}]"
        if isinstance(module, str) and module.endswith(".py"):
            raise ConfigError(
                f"{where}: {module!r} is a file name; give the module name '{module[:-3].replace('/', '.')}' "
                "(the file's directory must be on PYTHONPATH or the working directory)"
            )
        if not isinstance(module, str) or not MODULE_NAME.match(module):
            raise ConfigError(
                f"{where}: {module!r} is not a module name; give a dotted module path like "
                "my_networks or my_package.networks (not a file path and not a function)"
            )
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            missing = err.name or ""
            if missing == module or module.startswith(missing + "."):
                raise ConfigError(
                    f"{where}: cannot import '{module}': no module named '{missing}'; "
                    f"check that it is on PYTHONPATH or in the run's working directory ({cwd})"
                ) from None
            raise ConfigError(
                f"{where}: cannot import '{module}': {registry.failure_reason(err)}; install the missing package '{missing}'"
            ) from None
        except FactoryError as err:
            problems = getattr(err, "problems", [str(err)])
            raise ConfigError([f"{where}: importing '{module}': {p}" for p in problems]) from None
        except Exception as err:
            raise ConfigError(f"{where}: cannot import '{module}': {registry.failure_reason(err)}") from None
    return sorted(registry.registered_names() - before)
