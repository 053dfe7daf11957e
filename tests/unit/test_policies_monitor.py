"""Monitor, argument checks and saved states, shared by every policy."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from factory.errors import ConfigError, FactoryError
from factory.policies import (
    BestExport,
    EarlyStopping,
    FinalExport,
    LatestExport,
    MetricError,
    Monitor,
    PolicyStateError,
)

NAN = math.nan
INF = math.inf


def json_round_trip(state):
    # Strict JSON, as a checkpoint stores it.
    return json.loads(json.dumps(state, allow_nan=False))


@pytest.mark.parametrize(
    "metrics, fragments",
    [
        ({"val_los": 0.3, "val_accuracy": 0.9}, ["'val_loss' is not among", "(val_accuracy, val_los)", "did you mean 'val_los'?"]),
        ({}, ["'val_loss' is not among the evaluation metrics (none)"]),
        ({"val_loss": None}, ["'val_loss' is not among"]),
        ({"val_loss": "high"}, ["reported 'high' for 'val_loss', which is not a number"]),
    ],
)
def test_missing_monitored_metric_is_an_error(metrics, fragments):
    policy = EarlyStopping(start_from_eval=3)  # raised even during the warm-up
    with pytest.raises(MetricError) as raised:
        policy.update(metrics)
    assert isinstance(raised.value, FactoryError)
    message = str(raised.value)
    assert message.startswith("early_stop.monitor: ")
    for fragment in fragments:
        assert fragment in message
    assert policy.evals_seen == 0  # nothing changed


def test_missing_metric_for_best_export_leaves_state_unchanged():
    policy = BestExport(monitor="val_accuracy")
    policy.update({"val_accuracy": 0.5})
    before = policy.state_dict()
    with pytest.raises(MetricError, match=r"export\.monitor: 'val_accuracy' .*did you mean 'val_acc'"):
        policy.update({"val_acc": 0.9})
    assert policy.state_dict() == before


# (constructor, kwargs, expected problem lines)
BAD_ARGUMENTS = [
    (EarlyStopping, dict(patience=-1), ["early_stop.patience: -1 is below the minimum of 0 (evaluations without improvement to allow)"]),
    (EarlyStopping, dict(patience=1.5), ["early_stop.patience: must be a whole number (evaluations without improvement to allow), got 1.5"]),
    (EarlyStopping, dict(patience=True), ["early_stop.patience: must be a whole number (evaluations without improvement to allow), got True"]),
    (EarlyStopping, dict(mode="minn"), ["early_stop.mode: 'minn' is not one of auto, min, max (did you mean 'min'?)"]),
    (EarlyStopping, dict(mode=None), ["early_stop.mode: None is not one of auto, min, max"]),
    (EarlyStopping, dict(min_delta="0.1"), ["early_stop.min_delta: must be a finite number, got '0.1'"]),
    (EarlyStopping, dict(min_delta=NAN), ["early_stop.min_delta: must be a finite number, got nan"]),
    (EarlyStopping, dict(baseline=INF), ["early_stop.baseline: must be a finite number or null, got inf"]),
    (EarlyStopping, dict(start_from_eval=-2), ["early_stop.start_from_eval: -2 is below the minimum of 0 (evaluations to ignore at first)"]),
    (EarlyStopping, dict(monitor=""), ["early_stop.monitor: must be a metric name such as 'val_loss', got ''"]),
    (
        EarlyStopping,
        dict(monitor="val_f2"),
        ["early_stop.mode: cannot tell whether 'val_f2' should be minimised or maximised; pass mode='min' to keep the lowest value or mode='max' to keep the highest"],
    ),
    (EarlyStopping, dict(monitor="val_f2", directions={"f2": "upp"}), ["early_stop.directions.f2: 'upp' is not one of min, max, down, up (did you mean 'up'?)"]),
    (
        EarlyStopping,
        dict(patience=-1, mode="maxx", baseline="x"),
        [
            "early_stop.mode: 'maxx' is not one of auto, min, max (did you mean 'max'?)",
            "early_stop.patience: -1 is below the minimum of 0 (evaluations without improvement to allow)",
            "early_stop.baseline: must be a finite number or null, got 'x'",
        ],
    ),
    (BestExport, dict(keep=0), ["export.keep: 0 is below the minimum of 1 (exported versions to retain)"]),
    (BestExport, dict(mode="mx", keep=0), ["export.mode: 'mx' is not one of auto, min, max (did you mean 'max'?)", "export.keep: 0 is below the minimum of 1 (exported versions to retain)"]),
    (LatestExport, dict(keep=-1), ["export.keep: -1 is below the minimum of 1 (exported versions to retain)"]),
    (FinalExport, dict(weights="bset"), ["export.weights: 'bset' is not one of best, last (did you mean 'best'?)"]),
    (FinalExport, dict(monitor="val_custom"), ["export.mode: cannot tell whether 'val_custom' should be minimised or maximised; pass mode='min' to keep the lowest value or mode='max' to keep the highest"]),
]


@pytest.mark.parametrize("cls, kwargs, problems", BAD_ARGUMENTS)
def test_bad_arguments_are_config_errors(cls, kwargs, problems):
    with pytest.raises(ConfigError) as raised:
        cls(**kwargs)
    assert raised.value.problems == problems


@pytest.mark.parametrize(
    "monitor, directions, mode",
    [
        ("val_loss", None, "min"),
        ("loss", None, "min"),
        ("val_accuracy", None, "max"),
        ("val_sparse_categorical_accuracy", None, "max"),
        ("val_auc", None, "max"),
        ("val_mae", None, "min"),
        ("val_mean_squared_error", None, "min"),
        ("val_f2", {"f2": "up"}, "max"),
        ("val_f2", {"f2": "min"}, "min"),
        ("val_accuracy", {"accuracy": "down"}, "min"),  # the caller's metric objects know best
    ],
)
def test_auto_mode_direction(monitor, directions, mode):
    assert Monitor(monitor, directions=directions).mode == mode


def test_monitor_improvement_rule():
    low = Monitor("val_loss", "min", min_delta=0.5)
    assert low.min_delta == 0.5
    assert low.is_improvement(1.0, None)
    assert not low.is_improvement(NAN, None)
    assert low.is_improvement(3.25, 4.0)
    assert not low.is_improvement(3.5, 4.0)  # exactly min_delta better: not enough
    high = Monitor("val_accuracy", "max", min_delta=-0.25)
    assert high.min_delta == 0.25
    assert high.is_improvement(1.5, 1.0)
    assert not high.is_improvement(1.25, 1.0)
    assert not high.is_improvement(NAN, 1.0)


def test_load_state_refuses_another_metric_or_policy():
    saved = EarlyStopping(monitor="val_loss")
    saved.update({"val_loss": 1.0})
    state = json_round_trip(saved.state_dict())
    with pytest.raises(ConfigError, match="saved state monitored 'val_loss' \\(mode min\\) but this run monitors 'val_accuracy' \\(mode max\\)"):
        EarlyStopping(monitor="val_accuracy").load_state_dict(state)
    with pytest.raises(ConfigError, match="mode min"):
        EarlyStopping(monitor="val_loss", mode="max").load_state_dict(state)
    with pytest.raises(PolicyStateError, match="belongs to 'EarlyStopping', not BestExport"):
        BestExport().load_state_dict(state)
    with pytest.raises(PolicyStateError, match="lacks wait"):
        EarlyStopping().load_state_dict({k: v for k, v in state.items() if k != "wait"})
    with pytest.raises(PolicyStateError, match="best_value must be a number"):
        EarlyStopping().load_state_dict({**state, "best_value": "low"})
    # A changed patience is fine: it comes from the config, the counters from the state.
    resumed = EarlyStopping(patience=0)
    resumed.load_state_dict(state)
    assert resumed.update({"val_loss": 1.0}) is True


def test_states_are_strict_json_even_with_infinities():
    policy = BestExport(keep=2)
    policy.update({"val_loss": INF})
    policy.update({"val_loss": NAN})
    text = json.dumps(policy.state_dict(), allow_nan=False)
    resumed = BestExport(keep=2)
    resumed.load_state_dict(json.loads(text))
    assert resumed.best_value == INF
    assert resumed.update({"val_loss": 1e300}) is True


def test_policies_import_without_tensorflow():
    code = "import sys, factory.policies; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
