"""A tiny run on a table of columns: records written with the spec's own writer, then ``train``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers import TINY, compose


def write_parts(spec_dict: Mapping[str, Any], columns: Mapping[str, np.ndarray], train_rows: int, data: Path) -> dict:
    """The first ``train_rows`` rows of ``columns`` as ``data/train-*`` records, the rest as ``data/eval-*``;
    the ``data`` config that reads them."""
    from factory import FeatureSpec

    spec = FeatureSpec.from_dict(dict(spec_dict)).without_auto()
    for part, rows in (("train", slice(0, train_rows)), ("eval", slice(train_rows, None))):
        with spec.writer(data / part) as writer:
            writer.write_many({name: values[rows] for name, values in columns.items()})
    return {part: str(data / f"{part}-*") for part in ("train", "eval")}


def train_table(
    tmp_path: Path,
    spec_dict: Mapping[str, Any],
    columns: Mapping[str, np.ndarray],
    train_rows: int,
    *overrides: str,
    monitor: str = "val_accuracy",
) -> Path:
    """Write the table (``write_parts``) and train a tiny run on it with Hydra ``overrides`` (a ``network=``
    among them replaces the tiny mlp); returns the run dir, ``tmp_path / "run"``."""
    from factory.training.runner import train

    data = write_parts(spec_dict, columns, train_rows, tmp_path / "data")
    tiny = [o for o in TINY if not o.startswith("network")] if any(o.startswith("network") for o in overrides) else TINY
    config = compose(*tiny, *overrides)
    config["early_stop"]["monitor"] = monitor
    config["features"] = dict(spec_dict)
    config["data"] = data
    train(config, run_dir=tmp_path / "run")
    return tmp_path / "run"
