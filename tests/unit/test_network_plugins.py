"""Networks from outside the package: modules listed under ``imports:``, and ``factory.networks`` entry points."""

from __future__ import annotations

import sys

import pytest

from factory.errors import ConfigError
from factory.networks.plugins import import_modules
from factory.networks.registry import check_params, get_network, known_networks
from tests.helpers.registry import isolated_registry, write_distribution, write_module


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Every test sees the built-ins only, and leaves the registry, sys.path and sys.modules as it found them."""
    with isolated_registry(monkeypatch):
        yield


# -- imports: ----------------------------------------------------------------------------------


def test_imports_registers_the_networks_of_a_user_module(tmp_path, monkeypatch):
    write_module(
        tmp_path,
        "user_nets",
        """
        from factory.networks.registry import register_network

        @register_network("wide")
        def wide(features, num_outputs, width=256):
            return features
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_modules(["user_nets"]) == ["wide"]
    assert get_network("wide").__module__ == "user_nets"
    assert import_modules(["user_nets"]) == []  # imported once; a second run finds it registered


def test_imports_finds_modules_in_the_working_directory(tmp_path, monkeypatch):
    write_module(
        tmp_path,
        "user_nets_cwd",
        """
        from factory.networks.registry import register_network

        @register_network("here")
        def here(features, num_outputs):
            return features
        """,
    )
    monkeypatch.chdir(tmp_path)
    sys.path[:] = [p for p in sys.path if p not in ("", ".", str(tmp_path))]
    assert import_modules(["user_nets_cwd"]) == ["here"]
    assert sys.path[-1] == str(tmp_path)  # appended: never shadows an installed package


def test_a_missing_module_names_the_config_key_and_the_search_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        import_modules(["plug_no_such_module"])
    (problem,) = err.value.problems
    assert problem.startswith("imports[0]: cannot import 'plug_no_such_module': no module named 'plug_no_such_module'")
    assert "PYTHONPATH" in problem and str(tmp_path) in problem


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x = 1\nraise RuntimeError('boom')\n", "RuntimeError: boom ("),
        ("def broken(:\n", "SyntaxError: "),
        ("import plug_missing_dependency\n", "install the missing package 'plug_missing_dependency'"),
    ],
)
def test_a_module_that_fails_to_import_names_the_config_key_and_the_reason(tmp_path, monkeypatch, source, expected):
    write_module(tmp_path, "user_nets_ok", "X = 1\n")
    path = write_module(tmp_path, "bad_module", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        import_modules(["user_nets_ok", "bad_module"])
    (problem,) = err.value.problems
    assert problem.startswith("imports[1]: cannot import 'bad_module': ")
    assert expected in problem
    if "install" not in expected:
        assert str(path) in problem  # the file (and line) at fault


@pytest.mark.parametrize("entry", ["user_nets:build", "", 3, "my nets"])
def test_imports_entries_must_be_module_names(entry):
    with pytest.raises(ConfigError, match=r"imports\[0\]: .* is not a module name"):
        import_modules([entry])


def test_imports_of_a_file_name_suggests_the_module_name():
    with pytest.raises(
        ConfigError, match=r"imports\[0\]: 'nets/user_nets.py' is a file name; give the module name 'nets.user_nets'"
    ):
        import_modules(["nets/user_nets.py"])


def test_imports_must_be_a_list():
    with pytest.raises(ConfigError, match="imports: expected a list of module names"):
        import_modules("user_nets")


# -- entry points ------------------------------------------------------------------------------


def test_entry_points_are_found_lazily(tmp_path, monkeypatch):
    write_module(
        tmp_path,
        "plug_functions",
        """
        def build(features, num_outputs, depth=2):
            return features
        """,
    )
    write_module(
        tmp_path,
        "plug_module",
        """
        from factory.networks.registry import register_network

        @register_network("plugged")
        def plugged(features, num_outputs):
            return features
        """,
    )
    write_distribution(
        tmp_path,
        "factory-demo-plugin",
        {"plug_net": "plug_functions:build", "plug_mod": "plug_module"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    # Listing names does not import the plugin.
    assert {"plug_net", "plug_mod"} <= set(known_networks())
    assert "plug_functions" not in sys.modules

    # A callable entry point is registered under the entry point's name.
    build = get_network("plug_net")
    assert build.__module__ == "plug_functions"
    assert check_params("plug_net", {"depth": 3}) == []

    # A module entry point registers whatever its decorators say ...
    assert get_network("plugged").__module__ == "plug_module"
    # ... and from then on is known by those names, not by its own.
    assert "plug_mod" not in known_networks() and "plugged" in known_networks()
    with pytest.raises(ConfigError, match="the entry point 'plug_mod' is a module that registers plugged"):
        get_network("plug_mod")


def test_an_entry_point_with_a_bad_function_is_reported_every_time(tmp_path, monkeypatch):
    write_module(tmp_path, "plug_bad_signature", "def build(features):\n    return features\n")
    write_distribution(tmp_path, "factory-odd-plugin", {"plug_odd": "plug_bad_signature:build"})
    monkeypatch.syspath_prepend(str(tmp_path))
    for _ in range(2):
        with pytest.raises(
            ConfigError, match=r"plug_odd = plug_bad_signature:build.*must accept \(features, num_outputs"
        ):
            get_network("plug_odd")


def test_a_broken_entry_point_names_itself_and_its_distribution(tmp_path, monkeypatch):
    write_distribution(tmp_path, "factory-broken-plugin", {"plug_broken": "plug_not_installed:build"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        get_network("plug_broken")
    message = str(err.value)
    assert "entry point 'plug_broken = plug_not_installed:build' of the distribution 'factory-broken-plugin'" in message
    assert "ModuleNotFoundError" in message

    # An unrelated lookup still says what is wrong, and mentions the broken plugin.
    with pytest.raises(ConfigError) as err:
        get_network("nothing_like_this")
    assert "unknown network 'nothing_like_this'" in str(err.value)
    assert "failed to load" in str(err.value)
