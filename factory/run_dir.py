"""A run directory: the name of every file a run writes, and writing them whole. No TensorFlow.

``RUN_DIR/``
  ``config.yaml``        the resolved config the run trained with
  ``metrics.jsonl``      one JSON object per evaluation
  ``statistics.json``    the ``auto`` statistics (mean/std, vocabularies) computed from data.train
  ``summary.json``       written when the run ends: best value, evaluations, exports, test metrics
  ``train.log``          the log (written by the Hydra app)
  ``tensorboard/``       train and eval summaries
  ``checkpoints/``       ``ckpt-N`` (resume), ``best/weights`` and ``final/weights``
  ``export/``            ``<policy>/<version>/`` SavedModels
  ``.hydra/``            Hydra's record of the job: ``config.yaml``, ``overrides.yaml``

Files other processes read while the run goes on (sweep summaries, ``factory summarize``)
are written to a temporary name and renamed, so a reader sees them whole or not at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
STATISTICS = "statistics.json"
SUMMARY = "summary.json"
TRAIN_LOG = "train.log"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
EXPORT = "export"
HYDRA = ".hydra"
HYDRA_CONFIG = f"{HYDRA}/config.yaml"  # the job's composed config, as Hydra saved it
HYDRA_OVERRIDES = f"{HYDRA}/overrides.yaml"  # the job's command-line overrides
BEST_WEIGHTS = f"{CHECKPOINTS}/best/weights"
FINAL_WEIGHTS = f"{CHECKPOINTS}/final/weights"


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """``value`` as indented JSON, atomically."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_json_lines(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``path`` with one JSON object per line, atomically."""
    write_text(path, "".join(json.dumps(dict(r)) + "\n" for r in rows))


def append_json_line(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(dict(row)) + "\n")


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """The objects of a JSON Lines file; an empty list when it does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
