"""Monitor, argument checks and saved states, shared by every policy."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from factory.errors import ConfigError, FactoryError
from factory.names import TASK_METRICS
from factory.policies import LatestExport, MetricError, Monitor, PolicyStateError
from factory.policies.monitor import DIRECTIONS
from tests.unit.test_policies_early_stopping import early_stopping
from tests.unit.test_policies_exports import best_export, final_export

NAN = math.nan
INF = math.inf


def json_round_trip(state):
    # Strict JSON, as a checkpoint stores it.
    return json.loads(json.dumps(state, allow_nan=False))


@pytest.mark.parametrize(
    "metrics, fragments",
    [
        (
            {"val_los": 0.3, "val_accuracy": 0.9},
            ["'val_loss' is not among", "(val_accuracy, val_los)", "did you mean 'val_los'?"],
        ),
        ({}, ["'val_loss' is not among the evaluation metrics (none)"]),
        ({"val_loss": None}, ["'val_loss' is not among"]),
        ({"val_loss": "high"}, ["reported 'high' for 'val_loss', which is not a number"]),
    ],
)
def test_missing_monitored_metric_is_an_error(metrics, fragments):
    policy = early_stopping(start_from_eval=3)  # raised even during the warm-up
    with pytest.raises(MetricError) as raised:
        policy.update(metrics)
    assert isinstance(raised.value, FactoryError)
    message = str(raised.value)
    assert message.startswith("early_stop.monitor: ")
    for fragment in fragments:
        assert fragment in message
    assert policy.evals_seen == 0  # nothing changed


def test_missing_metric_for_best_export_leaves_state_unchanged():
    policy = best_export(monitor="val_accuracy")
    policy.update({"val_accuracy": 0.5})
    before = policy.state_dict()
    with pytest.raises(MetricError, match=r"export\.monitor: 'val_accuracy' .*did you mean 'val_acc'"):
        policy.update({"val_acc": 0.9})
    assert policy.state_dict() == before


# (constructor, kwargs, expected problem lines)
BAD_ARGUMENTS = [
    (
        early_stopping,
        dict(patience=-1),
        ["early_stop.patience: -1 is below the minimum of 0 (evaluations without improvement to allow)"],
    ),
    (
        early_stopping,
        dict(patience=1.5),
        ["early_stop.patience: must be a whole number (evaluations without improvement to allow), got 1.5"],
    ),
    (
        early_stopping,
        dict(patience=True),
        ["early_stop.patience: must be a whole number (evaluations without improvement to allow), got True"],
    ),
    (early_stopping, dict(mode="minn"), ["early_stop.mode: 'minn' is not one of auto, min, max (did you mean 'min'?)"]),
    (early_stopping, dict(mode=None), ["early_stop.mode: None is not one of auto, min, max"]),
    (early_stopping, dict(min_delta="0.1"), ["early_stop.min_delta: must be a finite number, got '0.1'"]),
    (early_stopping, dict(min_delta=NAN), ["early_stop.min_delta: must be a finite number, got nan"]),
    (early_stopping, dict(baseline=INF), ["early_stop.baseline: must be a finite number or null, got inf"]),
    (
        early_stopping,
        dict(start_from_eval=-2),
        ["early_stop.start_from_eval: -2 is below the minimum of 0 (evaluations to ignore at first)"],
    ),
    (early_stopping, dict(monitor=""), ["early_stop.monitor: must be a metric name such as 'val_loss', got ''"]),
    (
        early_stopping,
        dict(monitor="val_f2"),
        [
            "early_stop.mode: cannot tell whether 'val_f2' should be minimised or maximised; pass mode='min' to keep the lowest value or mode='max' to keep the highest"
        ],
    ),
    (
        early_stopping,
        dict(patience=-1, mode="maxx", baseline="x"),
        [
            "early_stop.mode: 'maxx' is not one of auto, min, max (did you mean 'max'?)",
            "early_stop.patience: -1 is below the minimum of 0 (evaluations without improvement to allow)",
            "early_stop.baseline: must be a finite number or null, got 'x'",
        ],
    ),
    (best_export, dict(keep=0), ["export.keep: 0 is below the minimum of 1 (exported versions to retain)"]),
    (
        best_export,
        dict(mode="mx", keep=0),
        [
            "export.mode: 'mx' is not one of auto, min, max (did you mean 'max'?)",
            "export.keep: 0 is below the minimum of 1 (exported versions to retain)",
        ],
    ),
    (LatestExport, dict(keep=-1), ["export.keep: -1 is below the minimum of 1 (exported versions to retain)"]),
    (final_export, dict(weights="bset"), ["export.weights: 'bset' is not one of best, last (did you mean 'best'?)"]),
    (
        final_export,
        dict(monitor="val_custom"),
        [
            "export.mode: cannot tell whether 'val_custom' should be minimised or maximised; pass mode='min' to keep the lowest value or mode='max' to keep the highest"
        ],
    ),
]


@pytest.mark.parametrize("cls, kwargs, problems", BAD_ARGUMENTS)
def test_bad_arguments_are_config_errors(cls, kwargs, problems):
    with pytest.raises(ConfigError) as raised:
        cls(**kwargs)
    assert raised.value.problems == problems


@pytest.mark.parametrize(
    "monitor, mode",
    [
        ("val_loss", "min"),
        ("loss", "min"),
        ("val_accuracy", "max"),
        ("val_auc", "max"),
        ("val_mae", "min"),
        ("val_mse", "min"),
    ],
)
def test_auto_mode_direction(monitor, mode):
    assert Monitor(monitor, "auto").mode == mode


def test_auto_mode_knows_exactly_the_metrics_factory_reports():
    assert set(DIRECTIONS) == {name for names in TASK_METRICS.values() for name in names}
    # Names no evaluation of factory produces need an explicit mode.
    with pytest.raises(ConfigError, match="cannot tell whether 'val_sparse_categorical_accuracy'"):
        Monitor("val_sparse_categorical_accuracy", "auto")
    assert Monitor("val_sparse_categorical_accuracy", "max").mode == "max"


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
    saved = early_stopping(monitor="val_loss")
    saved.update({"val_loss": 1.0})
    state = json_round_trip(saved.state_dict())
    with pytest.raises(
        ConfigError,
        match="saved state monitored 'val_loss' \\(mode min\\) but this run monitors 'val_accuracy' \\(mode max\\)",
    ):
        early_stopping(monitor="val_accuracy").load_state_dict(state)
    with pytest.raises(ConfigError, match="mode min"):
        early_stopping(monitor="val_loss", mode="max").load_state_dict(state)
    with pytest.raises(PolicyStateError, match="belongs to 'EarlyStopping', not BestExport"):
        best_export().load_state_dict(state)
    with pytest.raises(PolicyStateError, match="lacks wait"):
        early_stopping().load_state_dict({k: v for k, v in state.items() if k != "wait"})
    with pytest.raises(PolicyStateError, match="best_value must be a number"):
        early_stopping().load_state_dict({**state, "best_value": "low"})
    # A changed patience is fine: it comes from the config, the counters from the state.
    resumed = early_stopping(patience=0)
    resumed.load_state_dict(state)
    assert resumed.update({"val_loss": 1.0}) is True


def test_states_are_strict_json_even_with_infinities():
    policy = best_export(keep=2)
    policy.update({"val_loss": INF})
    policy.update({"val_loss": NAN})
    text = json.dumps(policy.state_dict(), allow_nan=False)
    resumed = best_export(keep=2)
    resumed.load_state_dict(json.loads(text))
    assert resumed.best_value == INF
    assert resumed.update({"val_loss": 1e300}) is True


def test_policies_import_without_tensorflow():
    code = "import sys, factory.policies; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
