"""Bad rows of an input file (``factory write``, ``factory predict``): stop at the first, or skip them.

With ``--skip-bad-rows`` each bad row is counted and left out, and the first few are
reported, each with its file, row (or record) and reason; without it the first bad row
stops the command (``RecordError``) with that same line.
"""

from __future__ import annotations

import sys

from factory.errors import RecordError

# Reasons printed with --skip-bad-rows; the rest are counted.
SHOWN_REASONS = 5


class BadRows:
    """Stops at the first bad row, or (``skip``) counts them and keeps the first few reasons."""

    def __init__(self, source: str, skip: bool):
        self.source = source
        self.skip = skip
        self.count = 0
        self.reasons: list[str] = []

    def add(self, where: str, message: str) -> None:
        """Row ``where`` (``line 3``, ``record 7``) is bad for ``message``; raises unless skipping."""
        text = f"{self.source} {where}: {message}" if where else f"{self.source}: {message}"
        if not self.skip:
            raise RecordError(text)
        self.count += 1
        if len(self.reasons) < SHOWN_REASONS:
            self.reasons.append(text)

    def report(self) -> None:
        """The reasons kept, and how many more rows were skipped, on standard error."""
        for reason in self.reasons:
            print(f"skipped {reason}", file=sys.stderr)
        if self.count > len(self.reasons):
            print(f"skipped {self.count - len(self.reasons)} more bad rows", file=sys.stderr)
