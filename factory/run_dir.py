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

from factory.errors import FactoryError, disk_full, is_disk_full

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
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename).

    On a full disk nothing is left behind (the old file, if any, is unchanged) and the
    error is ``StorageError``, naming the path and the free space.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise disk_full(path) from None
        raise


def write_json(path: str | os.PathLike, value: Any) -> None:
    """``value`` as indented JSON, atomically."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_json_lines(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``path`` with one JSON object per line, atomically."""
    write_text(path, "".join(json.dumps(dict(r)) + "\n" for r in rows))


def append_json_line(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Append one JSON object as a line. A full disk can leave a torn last line, which
    ``read_json_lines`` leaves out; the error is ``StorageError``."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(dict(row)) + "\n")
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(path) from None
        raise


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """The objects of a JSON Lines file; an empty list when it does not exist.

    A last line that is not whole (a process killed, or a disk full, while appending it)
    is left out: the row was never committed. Any other line that is not a JSON object is
    a ``FactoryError`` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif number == len(lines) and not text.endswith("\n"):
            break  # torn: written in part, never committed
        else:
            raise FactoryError(
                f"{path}, line {number}: not a JSON object; repair or delete the line (each line is one evaluation)"
            )
    return rows


def torn_tail(path: str | os.PathLike) -> bool:
    """True when the last line of ``path`` was cut mid-write (no newline at the end of the file)."""
    path = Path(path)
    return path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
