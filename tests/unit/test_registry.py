"""The network registry: registration, lookups by name, parameter checks, and what a lookup costs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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
from tests.helpers.registry import isolated_registry, write_module

REPO = helpers.REPO


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Every test sees the built-ins only, and leaves the registry, sys.path and sys.modules as it found them."""
    with isolated_registry(monkeypatch):
        yield


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
        "network.name: unknown network 'mpl' (did you mean 'mlp'?); known: cnn, linear, mlp, text, wide_deep; "
        "register yours with @register_network or list its module under imports:"
    ]


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
            [
                "network.widht: unknown parameter of network 'wide_params' (did you mean 'width'?); "
                "accepted: act, extra, residual, shape, units, width"
            ],
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
    with pytest.raises(
        ConfigError, match=r"network\.name: required key is missing; known networks: cnn, linear, mlp, text, wide_deep"
    ):
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
