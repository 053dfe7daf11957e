"""One progress display: a bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("factory")


class Progress:
    """Shows step, loss and examples/s. ``mode``: auto | bar | lines | none."""

    def __init__(self, total: int, batch_size: int, mode: str = "auto", every: int = 100, start: int = 0):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.total, self.batch_size, self.every = mode, total, batch_size, every
        self._t0, self._s0 = time.perf_counter(), start
        self._last_line = start
        self._bar_shown = False

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self._t0
        return (step - self._s0) * self.batch_size / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, loss: float) -> None:
        if self.mode == "none":
            return
        rate = self.rate(step)
        text = f"step {step}/{self.total}  loss {loss:.4g}  {rate:,.0f} examples/s"
        if self.mode == "bar":
            width = 24
            done = int(width * step / max(self.total, 1))
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {text}\033[K")
            sys.stderr.flush()
            self._bar_shown = True
        elif step - self._last_line >= self.every or step == self.total:
            log.info(text)
            self._last_line = step

    def clear(self) -> None:
        """Remove the bar before another line is printed."""
        if self._bar_shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._bar_shown = False
