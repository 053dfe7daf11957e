"""The factory-train Hydra app training for real: overrides, the run dir, multirun."""

from __future__ import annotations

import json

from tests.helpers import TINY
from tests.unit.test_cli_train import factory_train


def test_single_run_with_overrides_writes_into_the_hydra_run_dir(tmp_path):
    result = factory_train(*TINY, "train.max_steps=20", "hydra.run.dir=out/one", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "out" / "one"
    assert (
        (run / "metrics.jsonl").exists() and (run / "train.log").exists() and (run / ".hydra" / "config.yaml").exists()
    )
    assert "eval 1 @ step 20: val_loss" in result.stdout
    assert "test (best weights): test_loss" in result.stdout
    assert "Traceback" not in result.stderr and "oneDNN" not in result.stderr


def test_multirun_produces_one_run_dir_per_value(tmp_path):
    result = factory_train(
        "-m", *TINY, "train.max_steps=20", "network.hidden=[16],[32]", "hydra.sweep.dir=sweep", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    dirs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in dirs] == ["0", "1"]
    hidden = [
        json.loads(json.dumps(__import__("yaml").safe_load((d / "config.yaml").read_text())["network"]["hidden"]))
        for d in dirs
    ]
    assert hidden == [[16], [32]]
    assert all((d / "summary.json").exists() for d in dirs)
