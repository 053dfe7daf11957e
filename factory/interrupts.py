"""Ctrl-C as a request the training loop honours between steps."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("factory")


class CtrlC:
    """While installed, the first Ctrl-C only sets ``pressed``; the loop then saves a checkpoint and stops.

    Acting between steps means an interrupt never lands mid-evaluation, mid-export
    or inside one of TensorFlow's finalizers (where Python drops it). A second
    Ctrl-C interrupts at once. Off the main thread nothing is installed.
    """

    def __init__(self):
        self.pressed = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self, signum, frame) -> None:
        if self.pressed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.pressed = True
        log.info("interrupt: saving a checkpoint after the current steps (Ctrl-C again to stop at once)")

    def release(self) -> None:
        """Put the previous handler back."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
