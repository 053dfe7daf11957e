"""Export policies: tables of metric sequences in, export and retention decisions out."""

from __future__ import annotations

import json
import math

import pytest

from factory.errors import ConfigError
from factory.policies import EXPORT_POLICIES, BestExport, FinalExport, LatestExport, MetricError

NAN = math.nan


# The arguments the tables leave out (a policy has no defaults of its own).
BEST_ARGS = dict(monitor="val_loss", mode="auto", min_delta=0.0, keep=1)
FINAL_ARGS = dict(weights="best", monitor="val_loss", mode="auto", min_delta=0.0)


def best_export(**kwargs) -> BestExport:
    """``BestExport`` with ``BEST_ARGS`` for the arguments not given."""
    return BestExport(**{**BEST_ARGS, **kwargs})


def final_export(**kwargs) -> FinalExport:
    """``FinalExport`` with ``FINAL_ARGS`` for the arguments not given."""
    return FinalExport(**{**FINAL_ARGS, **kwargs})


def run(policy, values, monitor="val_loss"):
    """Decisions of ``policy`` over one metric sequence."""
    return [policy.update({monitor: value, "other": 0.0}) for value in values]


def json_round_trip(state):
    # Strict JSON, as a checkpoint or manifest stores it.
    return json.loads(json.dumps(state, allow_nan=False))


# BestExport: (id, kwargs, values, decisions, retained after the run (best first), best value)
BEST_EXPORT_CASES = [
    ("first_always_exports", dict(), [5.0], [True], [1], 5.0),
    ("ties_and_worse_do_not_export", dict(), [0.5, 0.5, 0.6, 0.4], [True, False, False, True], [2], 0.4),
    (
        "keep2_non_monotonic",
        dict(keep=2),
        [0.5, 0.6, 0.4, 0.4, 0.45, 0.3, 0.35, 0.2],
        [True, False, True, False, False, True, False, True],
        [4, 3],
        0.2,
    ),
    ("min_delta", dict(min_delta=0.25), [1.0, 0.875, 0.5, 0.375], [True, False, True, False], [2], 0.5),
    ("max_mode", dict(monitor="val_accuracy", keep=3), [0.5, 0.7, 0.6, 0.8], [True, True, False, True], [3, 2, 1], 0.8),
    ("nan_never_exports", dict(keep=2), [NAN, 1.0, NAN, 2.0], [False, True, False, False], [1], 1.0),
]
IDS = [case[0] for case in BEST_EXPORT_CASES]


@pytest.mark.parametrize("kwargs, values, decisions, retained, best", [case[1:] for case in BEST_EXPORT_CASES], ids=IDS)
def test_best_export_table(kwargs, values, decisions, retained, best):
    policy = best_export(**kwargs)
    assert run(policy, values, policy.monitor.name) == decisions
    assert policy.retained() == retained
    assert policy.best_value == best
    exported = sum(decisions)
    assert policy.last_version == exported
    assert policy.next_version == exported + 1
    assert policy.to_delete() == list(range(1, exported - len(retained) + 1))


@pytest.mark.parametrize("kwargs, values", [case[1:3] for case in BEST_EXPORT_CASES], ids=IDS)
def test_best_export_resumes_exactly(kwargs, values):
    reference = best_export(**kwargs)
    name = reference.monitor.name
    expected = run(reference, values, name)
    for cut in range(len(values) + 1):
        first = best_export(**kwargs)
        decisions = run(first, values[:cut], name)
        resumed = best_export(**kwargs)
        resumed.load_state_dict(json_round_trip(first.state_dict()))
        decisions += run(resumed, values[cut:], name)
        assert decisions == expected, f"cut after {cut} evaluations"
        assert resumed.state_dict() == reference.state_dict()


def test_best_export_pending_deletions_and_prune():
    policy = best_export(keep=2)
    deletions = []
    for value in [0.5, 0.4, 0.3, 0.2]:
        policy.update({"val_loss": value})
        deletions.append(policy.to_delete())
    assert deletions == [[], [], [1], [1, 2]]  # accumulate until pruned
    assert policy.prune() == [1, 2]
    assert policy.to_delete() == []
    assert policy.prune() == []
    assert policy.describe() == "export v4: val_loss 0.2 improved (best so far); keeping v4, v3; delete v1, v2"
    policy.update({"val_loss": 0.25})
    assert policy.describe() == "no export: val_loss 0.25 not better than 0.2 (eval 4)"


def test_resumed_best_export_never_exports_worse():
    first = best_export(keep=2)
    for value in [0.5, 0.3]:
        first.update({"val_loss": value})
    resumed = best_export(keep=2)
    resumed.load_state_dict(json_round_trip(first.state_dict()))
    assert resumed.update({"val_loss": 0.4}) is False
    assert resumed.update({"val_loss": 0.3}) is False
    assert resumed.update({"val_loss": 0.29}) is True
    assert resumed.last_version == 3
    assert resumed.retained() == [3, 2]
    assert resumed.to_delete() == [1]


def test_best_export_retention_is_by_metric_value():
    """Given exports out of metric order, the best ones stay, whatever their age."""
    policy = best_export(keep=3)
    for value in [0.5, 0.4, 0.3]:
        policy.update({"val_loss": value})
    state = json_round_trip(policy.state_dict())
    # As if the values had been recorded in another order: version 2 is now the worst.
    state["exports"] = [
        {"version": 1, "eval": 1, "value": 0.2},
        {"version": 2, "eval": 2, "value": 0.9},
        {"version": 3, "eval": 3, "value": 0.3},
    ]
    smaller = best_export(keep=2)
    smaller.load_state_dict(state)
    assert smaller.retained() == [1, 3]
    assert smaller.to_delete() == [2]
    highest = best_export(monitor="val_loss", mode="min", keep=1)
    highest.load_state_dict(state)
    assert highest.retained() == [1]
    assert highest.to_delete() == [2, 3]


def test_shrinking_keep_on_resume_deletes_the_worst():
    first = best_export(keep=3)
    for value in [0.5, 0.4, 0.3]:
        first.update({"val_loss": value})
    assert first.retained() == [3, 2, 1]
    resumed = best_export(keep=1)
    resumed.load_state_dict(json_round_trip(first.state_dict()))
    assert resumed.retained() == [3]
    assert resumed.to_delete() == [1, 2]


def test_latest_export_keeps_the_newest():
    policy = LatestExport(keep=2)
    decisions = [policy.update({"val_loss": v}) for v in [0.1, 0.9, 0.5, 0.7]]
    assert decisions == [True] * 4
    assert policy.retained() == [4, 3]
    assert policy.to_delete() == [1, 2]
    assert policy.describe() == "export v4 (latest); keeping v4, v3; delete v1, v2"
    assert policy.update() is True  # metrics are not needed
    assert policy.prune() == [1, 2, 3]
    resumed = LatestExport(keep=1)
    resumed.load_state_dict(json_round_trip(policy.state_dict()))
    assert resumed.retained() == [5]
    assert resumed.to_delete() == [4]
    assert resumed.update() is True
    assert resumed.last_version == 6
    assert resumed.finish() is False


def test_final_export_best_weights():
    policy = final_export(weights="best")
    kept = []
    for value in [0.5, 0.6, 0.4, 0.4, NAN]:
        assert policy.update({"val_loss": value}) is False  # never during training
        kept.append(policy.keep_current_weights)
    assert kept == [True, False, True, False, False]
    assert (policy.best_value, policy.best_eval) == (0.4, 3)
    saved = json_round_trip(policy.state_dict())
    assert policy.finish() is True
    assert policy.last_version == 1 and policy.retained() == [1]
    assert policy.describe() == "final export v1 (best weights, eval 3)"
    assert policy.finish() is False
    # Resumed before the export: exports; resumed after it: does not export twice.
    before = final_export()
    before.load_state_dict(saved)
    assert before.finish() is True
    after = final_export()
    after.load_state_dict(json_round_trip(policy.state_dict()))
    assert after.finish() is False
    with pytest.raises(ConfigError, match="saved state exports the 'best' weights"):
        final_export(weights="last").load_state_dict(saved)


def test_final_export_last_weights_and_no_best():
    last = final_export(weights="last", monitor="anything_at_all")
    for _ in range(3):
        assert last.update() is False
        assert last.keep_current_weights
    assert last.finish() is True
    assert last.describe() == "final export v1 (last weights, eval 3)"

    broken = final_export(weights="best")
    broken.update({"val_loss": NAN})
    assert broken.finish() is False
    assert broken.describe() == "no final export: no evaluation produced a number for val_loss"
    with pytest.raises(MetricError):
        broken.update({"loss": 1.0})


def test_export_policies_by_config_name():
    assert {name: cls.__name__ for name, cls in EXPORT_POLICIES.items()} == {
        "best": "BestExport",
        "latest": "LatestExport",
        "final": "FinalExport",
    }
