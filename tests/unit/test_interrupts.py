"""Ctrl-C, SIGTERM and preemption signals during training, without TensorFlow (``factory.training.interrupts``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from factory.config import TrainConfig
from factory.training.interrupts import PREEMPTION_SIGNALS, CtrlC
from factory.training.schedule import Schedule


@pytest.fixture
def previous_handler():
    """A Python handler on SIGUSR2 (as submitit installs one) that records each call and the handler then in place."""
    calls = []

    def handler(signum, frame):
        calls.append((signum, signal.getsignal(signum)))

    before = signal.signal(signal.SIGUSR2, handler)
    yield handler, calls
    signal.signal(signal.SIGUSR2, before)


def test_a_preemption_signal_asks_for_the_stop_and_reaches_the_previous_handler_once_at_release(previous_handler):
    handler, calls = previous_handler
    ctrl_c = CtrlC()
    signal.raise_signal(signal.SIGUSR2)
    signal.raise_signal(signal.SIGUSR2)
    assert ctrl_c.pressed and calls == []
    ctrl_c.release()
    assert calls == [(signal.SIGUSR2, handler)]  # once, with the previous handlers back in place
    ctrl_c.release()
    assert len(calls) == 1


def test_a_preemption_signal_after_sigterm_is_still_handed_on(previous_handler):
    handler, calls = previous_handler
    ctrl_c = CtrlC()
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGUSR2)
    ctrl_c.release()
    assert calls == [(signal.SIGUSR2, handler)]


def test_without_a_signal_release_only_restores_the_handlers(previous_handler):
    handler, calls = previous_handler
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, *PREEMPTION_SIGNALS)}
    ctrl_c = CtrlC()
    assert signal.getsignal(signal.SIGUSR2) is not handler
    ctrl_c.release()
    assert {s: signal.getsignal(s) for s in before} == before and calls == []


def test_an_ignored_preemption_signal_stays_ignored():
    before = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        ctrl_c = CtrlC()
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        signal.raise_signal(signal.SIGUSR1)
        ctrl_c.release()
        assert not ctrl_c.pressed and signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_off_the_main_thread_nothing_is_installed(previous_handler):
    handler, _ = previous_handler
    made = []
    thread = threading.Thread(target=lambda: made.append(CtrlC()))
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGUSR2) is handler
    made[0].release()


def test_with_the_default_action_the_process_ends_by_the_signal_after_the_stop_was_asked_for():
    script = textwrap.dedent(
        """
        import signal
        from factory.training.interrupts import CtrlC
        ctrl_c = CtrlC()
        signal.raise_signal(signal.SIGUSR2)
        print("pressed", ctrl_c.pressed, flush=True)
        ctrl_c.release()
        print("still running", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGUSR2, done.stderr
    assert done.stdout == "pressed True\n"


class _Steps:
    """Counts steps; SIGUSR2 arrives during the call that reaches step 27."""

    step = 0

    def train(self, steps):
        self.step += steps
        if self.step == 27:
            signal.raise_signal(signal.SIGUSR2)
        return 1.0

    def validate(self):
        return {"val_loss": 1.0}


class _Checkpoints:
    def __init__(self):
        self.saved = []

    @property
    def latest(self):
        return None

    def save(self, step, state):
        self.saved.append(step)


class _Summaries:
    def training(self, step, loss):
        pass


def test_the_schedule_saves_its_checkpoint_before_the_previous_handler_gets_the_signal():
    checkpoints = _Checkpoints()
    seen_at_call = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: seen_at_call.append(list(checkpoints.saved)))
    try:
        train = TrainConfig(max_steps=60, eval_every_steps=20, steps_per_execution=7, progress="none")
        schedule = Schedule(train, _Steps(), checkpoints, [], _Summaries(), evals=0)
        with pytest.raises(KeyboardInterrupt):
            schedule.run(resumed=False, evaluated=set(), stopped=False)
    finally:
        signal.signal(signal.SIGUSR2, before)
    assert seen_at_call == [[20, 27]]  # the interrupted step's checkpoint is saved when submitit's handler runs
