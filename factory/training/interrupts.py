"""Ctrl-C (and SIGTERM) as a request the training loop honours between steps."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("factory")


class CtrlC:
    """While installed, the first Ctrl-C only sets ``pressed``; the loop then saves a checkpoint and stops.

    Acting between steps means an interrupt never lands mid-evaluation, mid-export
    or inside one of TensorFlow's finalizers (where Python drops it). A second
    Ctrl-C interrupts at once. SIGTERM (a scheduler preempting the job, or a sweep
    worker going away) asks for the same orderly stop, however often it comes.
    Off the main thread nothing is installed.
    """

    def __init__(self):
        self.pressed = False
        self._previous = None
        self._previous_term = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
            self._previous_term = signal.signal(signal.SIGTERM, self._on_terminate)

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

    def release(self) -> None:
        """Put the previous handlers back."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if self._previous_term is not None:
            signal.signal(signal.SIGTERM, self._previous_term)
            self._previous_term = None
