"""Ctrl-C, SIGTERM and a scheduler's preemption signal as a request the training loop honours between steps."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("factory")

# What batch schedulers send shortly before they stop a job: SLURM's ``--signal`` (submitit
# asks for SIGUSR2 ahead of the time limit and on preemption; SIGUSR1 in its older releases).
PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class CtrlC:
    """While installed, the first Ctrl-C only sets ``pressed``; the loop then saves a checkpoint and stops.

    Acting between steps means an interrupt never lands mid-evaluation, mid-export
    or inside one of TensorFlow's finalizers (where Python drops it). A second
    Ctrl-C interrupts at once. SIGTERM (a scheduler preempting the job, or a sweep
    worker going away) asks for the same orderly stop, however often it comes.

    A preemption signal (``PREEMPTION_SIGNALS``) asks for the orderly stop too, and is then
    handed on: ``release`` puts the previous handlers back and raises the first such signal
    again, so whatever handled it before (submitit's requeue, or the default action of
    ending the process) acts on it once the checkpoint is saved. A preemption signal that
    was ignored, or handled outside Python, is left alone. Off the main thread nothing is
    installed.
    """

    def __init__(self):
        self.pressed = False
        self._previous: dict[int, object] = {}
        self._deferred: int | None = None
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_interrupt)
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_terminate)
        for signum in PREEMPTION_SIGNALS:
            previous = signal.getsignal(signum)
            if previous is not None and previous is not signal.SIG_IGN:  # None: a handler set outside Python
                self._previous[signum] = signal.signal(signum, self._on_preemption)

    def _on_interrupt(self, signum, frame) -> None:
        if self.pressed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.pressed = True
        log.info("interrupt: saving a checkpoint after the current steps (Ctrl-C again to stop at once)")

    def _on_terminate(self, signum, frame) -> None:
        if not self.pressed:
            self.pressed = True
            log.info("terminated: saving a checkpoint after the current steps")

    def _on_preemption(self, signum, frame) -> None:
        if self._deferred is not None:
            return
        self._deferred = signum
        self.pressed = True
        log.info(
            f"{signal.Signals(signum).name}: saving a checkpoint after the current steps, "
            "then passing the signal on (preemption or time limit)"
        )

    def release(self) -> None:
        """Put the previous handlers back, then raise a preemption signal received meanwhile again.

        The signal reaches the handler that was there before ``CtrlC``: it may end the process
        (``SystemExit`` from submitit's requeue, or the signal's default action) from this call.
        """
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            signal.raise_signal(deferred)
