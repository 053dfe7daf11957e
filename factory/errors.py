"""User-facing errors.

Every error a user can fix (a bad config, a bad record, a missing file) is a
``FactoryError``: the command-line entry points print its message and exit with
status 2 instead of showing a traceback. Anything else is a bug in factory.
"""

from __future__ import annotations


class FactoryError(Exception):
    """An error the user can fix; the message says where and how."""

    exit_code = 2


class ConfigError(FactoryError, ValueError):
    """One or more problems in a config or feature spec.

    ``problems`` holds one line per problem, each starting with the dotted path
    of the key at fault (``features.image.encoding: 'gif' is not one of ...``).
    """

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            message = f"invalid config{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} problems in config{where}:\n{lines}"
        super().__init__(message)


class RecordError(FactoryError, ValueError):
    """A record (to be written, or read from a file) that does not match the feature spec."""


class TrainingError(FactoryError):
    """Training cannot go on (a NaN loss, a broken checkpoint); the message says why and what is kept."""
