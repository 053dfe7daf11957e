"""The schedule without TensorFlow: when it trains, evaluates, checkpoints, stops, rolls back."""

from __future__ import annotations

import math
import signal

import pytest

from factory.config import TrainConfig
from factory.errors import TrainingError
from factory.training.schedule import Schedule, load_run_state, run_state


class Steps:
    """Trains by counting; ``losses`` maps a step reached to the loss reported for it (default 1.0)."""

    def __init__(self, step=0, losses=None, on_train=None):
        self.step, self.losses, self.on_train, self.calls = step, losses or {}, on_train, []

    def train(self, steps):
        self.calls.append((self.step, steps))
        self.step += steps
        if self.on_train:
            self.on_train(self.step)
        return self.losses.get(self.step, 1.0)

    def validate(self):
        return {"val_loss": 1.0 / self.step}


class Checkpoints:
    def __init__(self):
        self.saved = []

    @property
    def latest(self):
        return f"ckpt-{self.saved[-1][0]}" if self.saved else None

    def save(self, step, state):
        self.saved.append((step, dict(state)))


class Summaries:
    def __init__(self):
        self.steps = []

    def training(self, step, loss):
        self.steps.append(step)


class Hook:
    """Records evaluations; stops at ``stop_at``; raises ``fail`` at evaluation ``fail_at``."""

    state_key = "hook"

    def __init__(self, stop_at=None, fail_at=None, fail=KeyboardInterrupt):
        self.seen, self.stop_at, self.fail_at, self.fail = [], stop_at, fail_at, fail

    def after_evaluation(self, evaluation):
        self.seen.append((evaluation.number, evaluation.step))
        if evaluation.number == self.fail_at:
            raise self.fail
        evaluation.stop = evaluation.number == self.stop_at

    def state_dict(self):
        return {"seen": list(self.seen)}

    def load_state_dict(self, state):
        self.seen = [tuple(s) for s in state.get("seen", [])]


def schedule(steps, hooks=(), **train):
    config = TrainConfig(
        **{
            "max_steps": 60,
            "eval_every_steps": 20,
            "steps_per_execution": 7,
            "log_every_steps": 10,
            "progress": "none",
            **train,
        }
    )
    checkpoints = Checkpoints()
    summaries = Summaries()
    return Schedule(config, steps, checkpoints, list(hooks), summaries, evals=0), checkpoints, summaries


def test_calls_stop_at_each_evaluation_and_at_max_steps():
    steps, hook = Steps(), Hook()
    sched, checkpoints, summaries = schedule(steps, [hook], max_steps=50)
    assert sched.run(resumed=False, evaluated=set(), stopped=False) is False
    assert steps.calls == [(0, 7), (7, 7), (14, 6), (20, 7), (27, 7), (34, 6), (40, 7), (47, 3)]
    assert hook.seen == [(1, 20), (2, 40), (3, 50)]
    assert [s for s, _ in checkpoints.saved] == [20, 40, 50]  # at every evaluation
    assert checkpoints.saved[-1][1] == {"evals": 3, "hook": {"seen": [(1, 20), (2, 40), (3, 50)]}}
    assert summaries.steps == [14, 20, 34, 40, 50]  # crossing a multiple of log_every_steps


def test_checkpoint_every_steps_spaces_the_checkpoints_and_the_end_is_always_saved():
    steps = Steps()
    sched, checkpoints, _ = schedule(steps, [], checkpoint_every_steps=30, steps_per_execution=10)
    sched.run(resumed=False, evaluated=set(), stopped=False)
    assert [s for s, _ in checkpoints.saved] == [30, 60]


def test_a_hook_that_stops_ends_the_run_with_a_checkpoint():
    steps, hook = Steps(), Hook(stop_at=2)
    sched, checkpoints, _ = schedule(steps, [hook], checkpoint_every_steps=1000)
    assert sched.run(resumed=False, evaluated=set(), stopped=False) is True
    assert steps.step == 40 and [s for s, _ in checkpoints.saved] == [40]


def test_a_run_that_had_stopped_trains_no_further():
    steps = Steps(step=40)
    sched, checkpoints, _ = schedule(steps, [Hook()])
    assert sched.run(resumed=True, evaluated={20, 40}, stopped=True) is True
    assert steps.calls == [] and checkpoints.saved == []


def test_a_non_finite_loss_raises_without_saving():
    steps = Steps(losses={27: math.nan})
    sched, checkpoints, _ = schedule(steps, [Hook()])
    with pytest.raises(
        TrainingError,
        match=r"the training loss is nan at step 27; stopped without saving. The last good checkpoint is kept: ckpt-20",
    ):
        sched.run(resumed=False, evaluated=set(), stopped=False)
    assert [s for s, _ in checkpoints.saved] == [20]


def test_a_resumed_run_does_the_evaluation_it_missed_first():
    steps, hook = Steps(step=40), Hook()
    sched, checkpoints, _ = schedule(steps, [hook])
    sched.evals = 1
    sched.run(resumed=True, evaluated={20}, stopped=False)
    assert hook.seen == [(2, 40), (3, 60)]
    assert [s for s, _ in checkpoints.saved] == [40, 60]


def test_an_evaluation_cut_short_is_rolled_back_and_the_checkpoint_saved():
    steps, hook = Steps(), Hook(fail_at=2)
    sched, checkpoints, _ = schedule(steps, [hook])
    with pytest.raises(KeyboardInterrupt):
        sched.run(resumed=False, evaluated=set(), stopped=False)
    assert checkpoints.saved[-1] == (40, {"evals": 1, "hook": {"seen": [(1, 20)]}})
    assert sched.evals == 1 and hook.seen == [(1, 20)]


def test_ctrl_c_stops_after_the_current_steps_with_a_checkpoint():
    previous = signal.getsignal(signal.SIGINT)
    steps = Steps(on_train=lambda step: step == 27 and signal.raise_signal(signal.SIGINT))
    sched, checkpoints, _ = schedule(steps, [Hook()])
    with pytest.raises(KeyboardInterrupt):
        sched.run(resumed=False, evaluated=set(), stopped=False)
    assert steps.step == 27 and [s for s, _ in checkpoints.saved] == [20, 27]
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is released


def test_run_state_round_trips_through_the_hooks():
    hook, other = Hook(), Hook()
    hook.seen = [(1, 20)]
    state = run_state(4, [hook])
    assert load_run_state(state, [other]) == 4 and other.seen == [(1, 20)]
