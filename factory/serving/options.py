"""What ``factory serve`` is asked for (``factory.cli.serve`` checks it; ``factory.serving.server`` runs it). No TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from factory.names import DEFAULT_MODEL_NAME
from factory.serving.batching import BatchingOptions


@dataclass(frozen=True)
class ServeOptions:
    """What ``factory serve`` was asked for; defaults as the command line's."""

    base: Path
    fixed: Path | None = None
    model_name: str = DEFAULT_MODEL_NAME
    host: str = "127.0.0.1"
    port: int = 8501
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    poll_seconds: float = 1.0
    request_timeout: float = 30.0
    max_body_bytes: int = 64 * 2**20
    access_log: bool = True
