"""The logging of a ``factory-train`` job, as ``conf/config.yaml``'s ``hydra.job_logging`` sets it up.

- the console: progress and evaluation lines on stdout, errors on stderr (``BelowError``
  keeps errors off stdout, so a failing run prints its one error line once);
- ``RUN_DIR/train.log`` (``RunLog``): everything, time-stamped. When the log cannot be
  written (a full disk), one warning goes to stderr and the log is given up: logging does
  not print a traceback for every later line, and the run's own error says what happened.
"""

from __future__ import annotations

import logging
import sys


class BelowError(logging.Filter):
    """Passes the records below ERROR (the console's stdout handler; errors go to stderr)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


class RunLog(logging.FileHandler):
    """``train.log``: a ``FileHandler`` that gives up with one warning when the file cannot be written."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False):
        self.failed = False
        super().__init__(filename, mode, encoding, delay)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if self.failed or not isinstance(error, OSError):
            return super().handleError(record)
        self.failed = True
        print(
            f"warning: {self.baseFilename} cannot be written ({error.strerror or error}); no more log lines go there",
            file=sys.stderr,
        )
