"""The network registry: registration, lookups, imports:, entry points, parameter checks."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from factory.errors import ConfigError
from factory.networks import registry
from factory.networks.plugins import import_modules
from factory.networks.registry import (
    check_params,
    get_network,
    known_networks,
    register_network,
    split_network_group,
)
from tests import helpers

REPO = helpers.REPO


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Every test sees the built-ins only, and leaves the registry, sys.path and sys.modules as it found them."""
    known_networks()  # load the built-ins before the snapshot
    networks = dict(registry._networks)
    loaded = set(registry._loaded_entry_points)
    failed = dict(registry._failed_entry_points)
    module_eps = dict(registry._module_entry_points)
    modules = set(sys.modules)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    registry._networks.clear()
    registry._networks.update(networks)
    registry._loaded_entry_points.clear()
    registry._loaded_entry_points.update(loaded)
    registry._failed_entry_points.clear()
    registry._failed_entry_points.update(failed)
    registry._module_entry_points.clear()
    registry._module_entry_points.update(module_eps)
    for name in set(sys.modules) - modules:
        if name.startswith(("plug_", "user_nets", "bad_", "dup_", "needs_")):
            del sys.modules[name]


def write_module(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return path


def write_distribution(directory: Path, dist: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution: what `pip install` leaves in site-packages."""
    info = directory / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"{name} = {value}" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("[factory.networks]\n" + "\n".join(lines) + "\n")
    importlib.invalidate_caches()


# -- registration ------------------------------------------------------------------------------


def test_decorator_registers_and_returns_the_function_unchanged():
    def build(features, num_outputs, width=8):
        return features

    assert register_network("tiny")(build) is build
    assert get_network("tiny") is build
    assert "tiny" in known_networks()


def test_builtins_are_registered():
    assert {"linear", "mlp", "cnn"} <= set(known_networks())
    assert get_network("mlp").__module__ == "factory.networks.mlp"


def test_duplicate_name_fails_naming_both_functions():
    @register_network("twice")
    def first(features, num_outputs):
        return features

    def second(features, num_outputs):
        return features

    with pytest.raises(ConfigError) as err:
        register_network("twice")(second)
    message = str(err.value)
    assert f"{first.__module__}.{first.__qualname__}" in message
    assert f"{second.__module__}.{second.__qualname__}" in message
    assert "choose another name" in message
    assert get_network("twice") is first


def test_duplicate_across_modules_names_both_modules(tmp_path, monkeypatch):
    source = """
        from factory.networks.registry import register_network

        @register_network("shared")
        def build(features, num_outputs):
            return features
    """
    write_module(tmp_path, "dup_a", source)
    write_module(tmp_path, "dup_b", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        import_modules(["dup_a", "dup_b"])
    message = str(err.value)
    assert "imports[1]" in message
    assert "dup_a.build" in message and "dup_b.build" in message


def test_registering_the_same_function_again_is_harmless():
    def build(features, num_outputs):
        return features

    register_network("again")(build)
    register_network("again")(build)
    assert get_network("again") is build


@pytest.mark.parametrize("name", ["my-net", "1net", "", "with space", "_hidden", None])
def test_malformed_names_are_refused(name):
    with pytest.raises(ConfigError, match="network name starts with a letter"):
        register_network(name)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def build(features): pass", "must accept (features, num_outputs, **params)"),
        ("def build(features, num_outputs, name='x'): pass", "parameter 'name' cannot be set"),
    ],
)
def test_functions_that_cannot_be_called_as_networks_are_refused(source, problem):
    scope: dict = {}
    exec(source, scope)
    with pytest.raises(ConfigError) as err:
        register_network("odd")(scope["build"])
    assert problem in str(err.value)
    assert "odd" not in registry._networks


def test_unknown_name_lists_the_known_ones_with_did_you_mean():
    with pytest.raises(ConfigError) as err:
        get_network("mpl")
    assert err.value.problems == [
        "network.name: unknown network 'mpl' (did you mean 'mlp'?); known: cnn, linear, mlp; "
        "register yours with @register_network or list its module under imports:"
    ]


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
    with pytest.raises(ConfigError, match=r"imports\[0\]: 'nets/user_nets.py' is a file name; give the module name 'nets.user_nets'"):
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
        with pytest.raises(ConfigError, match=r"plug_odd = plug_bad_signature:build.*must accept \(features, num_outputs"):
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


# -- parameters --------------------------------------------------------------------------------


@pytest.fixture
def wide():
    @register_network("wide_params")
    def build(features, num_outputs, width=64, shape=(1, 2), act="relu", residual=False, extra=None, *, units):
        return features

    return build


@pytest.mark.parametrize(
    ("params", "problems"),
    [
        ({"units": 3}, []),
        ({"units": 3, "width": 32, "shape": [4], "act": "gelu", "residual": True, "extra": {"a": 1}}, []),
        ({"units": 3, "width": 0.5}, []),  # any number for a numeric default
        (
            {"units": 3, "widht": 32},
            ["network.widht: unknown parameter of network 'wide_params' (did you mean 'width'?); "
             "accepted: act, extra, residual, shape, units, width"],
        ),
        ({}, ["network.units: required parameter of network 'wide_params' is missing; set network.units=..."]),
        ({"units": 3, "width": "big"}, ["network.width: expected a number like the default 64, got 'big'"]),
        ({"units": 3, "width": True}, ["network.width: expected a number like the default 64, got True"]),
        ({"units": 3, "residual": 1}, ["network.residual: expected true or false like the default False, got 1"]),
        ({"units": 3, "shape": 4}, ["network.shape: expected a list like the default (1, 2), got 4"]),
        ({"units": 3, "act": 2}, ["network.act: expected a string like the default 'relu', got 2"]),
    ],
)
def test_check_params(wide, params, problems):
    assert check_params("wide_params", params) == problems


def test_check_params_accepts_anything_for_kwargs():
    @register_network("open_params")
    def build(features, num_outputs, **params):
        return features

    assert check_params("open_params", {"whatever": 1}) == []


def test_check_params_of_builtins():
    assert check_params("mlp", {"hidden": [8], "dropout": 0.1}) == []
    assert check_params("cnn", {"filter": [8]}) == [
        "network.filter: unknown parameter of network 'cnn' (did you mean 'filters'?); "
        "accepted: activation, dense, dropout, filters, kernel_size, pool"
    ]
    assert check_params("linear", {"hidden": [8]}) == [
        "network.hidden: unknown parameter of network 'linear'; accepted: none"
    ]


def test_split_network_group():
    assert split_network_group({"name": "mlp", "hidden": [64]}) == ("mlp", {"hidden": [64]})
    with pytest.raises(ConfigError, match=r"network\.name: required key is missing; known networks: cnn, linear, mlp"):
        split_network_group({"hidden": [64]})


# -- cost ---------------------------------------------------------------------------------------


def test_lookups_do_not_import_tensorflow():
    code = textwrap.dedent(
        """
        import json, sys, time
        start = time.perf_counter()
        import factory.networks
        elapsed = time.perf_counter() - start
        import factory.model.builder
        from factory.networks.registry import check_params, get_network, known_networks
        get_network("cnn")
        check_params("mlp", {"hidden": [8]})
        known_networks()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(json.dumps({"heavy": heavy, "seconds": elapsed}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["seconds"] < 1.0  # ~50 ms here; TensorFlow alone would take ~2.5 s
