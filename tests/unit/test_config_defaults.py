"""Every default is declared once (``factory/config/settings.py``): ``factory-train`` composes
it, ``load_config`` fills it in and the policies receive it, so a drifted default fails here."""

from __future__ import annotations

import inspect

import pytest

from factory.config import (
    DEFAULTED_GROUPS,
    Config,
    EarlyStopConfig,
    ExportConfig,
    defaults,
    load_config,
)
from factory.errors import ConfigError
from factory.networks.registry import accepted_params, default_params
from factory.policies import EXPORT_POLICIES, EarlyStopping
from factory.validation import load_yaml, resource_dir
from tests.helpers import compose

REQUIRED_GROUPS = ("features", "network", "data")


def _overlay() -> dict:
    """The keys the default experiment overlay (conf/experiment/digits.yaml) sets."""
    overlay = load_yaml(resource_dir("conf") / "experiment" / "digits.yaml")
    overlay.pop("defaults", None)
    return overlay


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_load_config_fills_in_what_factory_train_composes():
    composed = compose()
    partial = {**{key: composed[key] for key in REQUIRED_GROUPS}, **_overlay()}
    assert set(partial) & set(DEFAULTED_GROUPS) == {"early_stop"}  # the overlay's keys only
    assert load_config(partial) == load_config(composed)


def test_composed_groups_are_the_declared_defaults():
    composed, overlay = compose(), _overlay()
    for group, settings in DEFAULTED_GROUPS.items():
        assert composed[group] == _merged(defaults(settings), overlay.get(group, {})), group
    for key, value in defaults(Config).items():
        if key not in DEFAULTED_GROUPS and key != "run_dir":  # the Hydra app sets run_dir
            assert composed[key] == overlay.get(key, value), key


def test_the_cli_values_are_the_ones_that_win():
    config = load_config({key: compose()[key] for key in REQUIRED_GROUPS})
    assert config.train.optimizer.learning_rate == 0.002
    assert (config.early_stop.monitor, config.early_stop.patience) == ("val_loss", 5)
    assert config.export.policies == {"best": {"monitor": "val_loss", "mode": "auto", "min_delta": 0.0, "keep": 2}}


def test_load_config_of_nothing_names_the_groups_without_defaults():
    with pytest.raises(ConfigError) as raised:
        load_config({})
    assert raised.value.problems == [f"{group}: required key is missing" for group in REQUIRED_GROUPS]


def test_groups_override_without_plus():
    config = compose("train.batch_size=128", "early_stop.patience=3", "export.latest.enabled=true")
    assert (config["train"]["batch_size"], config["early_stop"]["patience"]) == (128, 3)
    assert load_config(config).export.policies["latest"] == {"keep": 1}


def test_export_monitors_follow_early_stopping_unless_set():
    config = load_config(compose("early_stop.monitor=val_loss", "early_stop.mode=min", "export.final.enabled=true"))
    assert config.export.policies["best"]["monitor"] == config.export.policies["final"]["monitor"] == "val_loss"
    assert config.export.policies["best"]["mode"] == "min"
    config = load_config(compose("export.best.monitor=val_loss", "export.best.mode=max"))
    assert (config.early_stop.monitor, config.export.policies["best"]["monitor"]) == ("val_accuracy", "val_loss")
    assert config.export.policies["best"]["mode"] == "max"


@pytest.mark.parametrize("name", list(EXPORT_POLICIES))
def test_export_policies_take_every_value_from_the_config(name):
    params = inspect.signature(EXPORT_POLICIES[name]).parameters
    assert all(p.default is p.empty for p in params.values())
    assert set(params) == set(defaults(type(getattr(ExportConfig(), name)))) - {"enabled"}


def test_early_stopping_takes_every_value_from_the_config():
    params = inspect.signature(EarlyStopping).parameters
    assert all(p.default is p.empty for p in params.values())
    assert set(params) == set(defaults(EarlyStopConfig)) - {"enabled"}


@pytest.mark.parametrize("name", ["cnn", "mlp", "linear"])
def test_network_groups_are_the_build_functions_defaults(name):
    """``network=<name>`` composes the defaults of the build function's signature: every
    parameter, overridable without ``+``, and no second copy in conf/ to drift."""
    composed = compose(f"network={name}")["network"]
    assert composed == {"name": name, **default_params(name)}
    assert set(composed) - {"name"} == set(accepted_params(name))
    assert not (resource_dir("conf") / "network").exists()


def test_a_network_parameter_without_yaml_is_overridden_without_plus():
    assert compose("network=mlp", "network.batch_norm=true")["network"]["batch_norm"] is True
