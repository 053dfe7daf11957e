"""EarlyStopping: tables of metric sequences in, stop decisions out, checked against Keras."""

from __future__ import annotations

import json
import math

import pytest

from factory.policies import EarlyStopping

NAN = math.nan
INF = math.inf


# The arguments the tables leave out; a policy has no defaults of its own (the config's are
# in factory.config.settings), so these are the tables' own.
EARLY_STOP_ARGS = dict(monitor="val_loss", mode="auto", patience=3, min_delta=0.0, baseline=None, start_from_eval=0)


def early_stopping(**kwargs) -> EarlyStopping:
    """``EarlyStopping`` with ``EARLY_STOP_ARGS`` for the arguments not given."""
    return EarlyStopping(**{**EARLY_STOP_ARGS, **kwargs})


def run(policy, values, monitor="val_loss"):
    """Decisions of ``policy`` over one metric sequence, up to the first stop (as the runner does)."""
    decisions = []
    for value in values:
        decisions.append(policy.update({monitor: value, "other": 0.0}))
        if decisions[-1]:
            break
    return decisions


def json_round_trip(state):
    # Strict JSON, as a checkpoint stores it.
    return json.loads(json.dumps(state, allow_nan=False))


# (id, EarlyStopping kwargs, values, stop eval, best value, best eval, wait, same as Keras)
# Evaluations are counted from 1. The last column marks the rows where Keras 3 decides
# the same (it takes a first NaN as its best value; we never call NaN an improvement).
EARLY_STOP_CASES = [
    ("patience0_stops_at_first_non_improvement", dict(patience=0), [1.0, 0.9, 0.95, 0.5], 3, 0.9, 2, 1, True),
    ("patience0_never_at_first_eval", dict(patience=0), [1.0], None, 1.0, 1, 0, True),
    ("patience1", dict(patience=1), [1.0, 0.9, 0.8, 0.85, 0.1], 4, 0.8, 3, 1, True),
    (
        "patience3_count_resets_on_improvement",
        dict(patience=3),
        [0.5, 0.4, 0.45, 0.41, 0.39, 0.42, 0.43, 0.44, 0.3],
        8,
        0.39,
        5,
        3,
        True,
    ),
    ("patience3_keeps_improving", dict(patience=3), [1.0, 0.9, 0.8, 0.7], None, 0.7, 4, 0, True),
    (
        "patience_none_follows_and_never_stops",
        dict(patience=None),
        [0.5, 0.4, 0.45, 0.42, 0.41, 0.3, 0.35],
        None,
        0.3,
        6,
        1,
        False,
    ),
    ("patience3_not_enough_evals", dict(patience=3), [1.0, 1.1, 1.2], None, 1.0, 1, 2, True),
    ("ties_are_not_improvements", dict(patience=2), [1.0, 1.0, 1.0], 3, 1.0, 1, 2, True),
    ("min_delta_exact_step_is_not_enough", dict(patience=1, min_delta=0.5), [4.0, 3.5, 3.0], 2, 4.0, 1, 1, True),
    ("min_delta_larger_step_improves", dict(patience=1, min_delta=0.5), [4.0, 3.25, 3.0], 3, 3.25, 2, 1, True),
    ("min_delta_sign_is_ignored", dict(patience=1, min_delta=-0.5), [4.0, 3.5, 3.0], 2, 4.0, 1, 1, True),
    ("mode_max", dict(monitor="val_accuracy", mode="max", patience=2), [0.5, 0.6, 0.6, 0.55], 4, 0.6, 2, 2, True),
    ("mode_auto_accuracy_is_max", dict(monitor="val_accuracy", patience=2), [0.5, 0.6, 0.6, 0.55], 4, 0.6, 2, 2, True),
    ("mode_auto_loss_is_min", dict(monitor="val_loss", patience=1), [0.5, 0.6], 2, 0.5, 1, 1, True),
    ("mode_min_on_accuracy", dict(monitor="val_accuracy", mode="min", patience=1), [0.5, 0.6], 2, 0.5, 1, 1, True),
    (
        "mode_max_min_delta",
        dict(monitor="val_accuracy", mode="max", patience=1, min_delta=0.25),
        [1.0, 1.25, 1.5],
        2,
        1.0,
        1,
        1,
        True,
    ),
    # With a baseline the first evaluation already counts, and only beating the baseline resets.
    ("baseline_never_reached_flat", dict(patience=2, baseline=0.5), [1.0, 1.0, 1.0], 2, 1.0, 1, 2, True),
    ("baseline_never_reached_improving", dict(patience=2, baseline=0.5), [1.0, 0.9, 0.8, 0.7], None, 0.7, 4, 4, True),
    (
        "baseline_never_reached_then_stall",
        dict(patience=2, baseline=0.5),
        [1.0, 0.9, 0.8, 0.7, 0.75],
        5,
        0.7,
        4,
        5,
        True,
    ),
    ("baseline_reached", dict(patience=2, baseline=0.5), [1.0, 0.4, 0.45, 0.42, 0.41], 4, 0.4, 2, 2, True),
    (
        "baseline_needs_min_delta_too",
        dict(patience=1, baseline=0.5, min_delta=0.25),
        [0.375, 0.375],
        2,
        0.375,
        1,
        2,
        True,
    ),
    (
        "start_from_eval_ignores_warm_up",
        dict(patience=1, start_from_eval=2),
        [0.1, 0.1, 1.0, 1.1, 0.0],
        4,
        1.0,
        3,
        1,
        True,
    ),
    (
        "start_from_eval_longer_than_run",
        dict(patience=0, start_from_eval=5),
        [1.0, 2.0, 3.0],
        None,
        None,
        None,
        0,
        True,
    ),
    ("nan_in_the_middle", dict(patience=2), [1.0, NAN, 0.9, NAN, NAN], 5, 0.9, 3, 2, True),
    ("nan_first_is_not_best", dict(patience=0), [NAN, 1.0, 1.1], 3, 1.0, 2, 1, False),
    ("all_nan", dict(patience=1), [NAN, NAN, NAN], 2, None, None, 2, False),
    ("infinite_first_value", dict(patience=1), [INF, 1.0, 1.0], 3, 1.0, 2, 1, True),
]
IDS = [case[0] for case in EARLY_STOP_CASES]


@pytest.mark.parametrize(
    "kwargs, values, stop, best, best_eval, wait", [case[1:7] for case in EARLY_STOP_CASES], ids=IDS
)
def test_early_stopping_table(kwargs, values, stop, best, best_eval, wait):
    policy = early_stopping(**kwargs)
    decisions = run(policy, values, policy.monitor.name)

    expected = [False] * (len(values) if stop is None else stop)
    if stop is not None:
        expected[-1] = True
    assert decisions == expected
    assert policy.stopped_eval == stop
    assert policy.best_value == best
    assert policy.best_eval == best_eval
    assert policy.wait == wait
    assert policy.evals_seen == len(decisions)


@pytest.mark.parametrize("kwargs, values", [case[1:3] for case in EARLY_STOP_CASES], ids=IDS)
def test_early_stopping_resumes_exactly(kwargs, values):
    """Saving and restoring at every cut point gives the uninterrupted run's decisions and state."""
    reference = early_stopping(**kwargs)
    name = reference.monitor.name
    expected = run(reference, values, name)
    for cut in range(len(expected) + 1):
        first = early_stopping(**kwargs)
        decisions = run(first, values[:cut], name)
        resumed = early_stopping(**kwargs)
        resumed.load_state_dict(json_round_trip(first.state_dict()))
        assert resumed.describe() == first.describe()
        if not any(decisions):
            decisions += run(resumed, values[cut:], name)
        assert decisions == expected, f"cut after {cut} evaluations"
        if cut == len(expected):
            assert resumed.state_dict() == reference.state_dict()


def test_early_stopping_describe():
    policy = early_stopping(patience=2)
    assert policy.describe() == "val_loss: no evaluation yet"
    lines = []
    for value in [0.5, 0.39812, 0.412, NAN, 0.45]:
        policy.update({"val_loss": value})
        lines.append(policy.describe())
    assert lines == [
        "val_loss 0.5 improved (best so far)",
        "val_loss 0.3981 improved (best so far)",
        "val_loss 0.412 (best 0.3981 @ eval 2) no improvement 1/2",
        "val_loss nan (best 0.3981 @ eval 2) stop: no improvement in 2 evaluations",
        "val_loss 0.45 (best 0.3981 @ eval 2) stop: no improvement in 3 evaluations",
    ]


def test_early_stopping_describe_warm_up_and_baseline():
    policy = early_stopping(patience=1, baseline=0.25, start_from_eval=1)
    notes = []
    for value in [0.1, 1234567.0, 1234567.0]:
        policy.update({"val_loss": value})
        notes.append(policy.describe())
    assert notes == [
        "val_loss 0.1 warm-up 1/1, not monitored yet",
        "val_loss 1.235e+06 improved (best so far) but not beyond baseline 0.25: no improvement 1/1",
        "val_loss 1.235e+06 (best 1.235e+06 @ eval 2) stop: no improvement beyond baseline 0.25 in 2 evaluations",
    ]
