"""factory-train before TensorFlow: bad files and run dirs in one line, a finished run left alone."""

from __future__ import annotations

import json

import yaml

from factory.config import load_config
from tests.helpers import TINY, compose
from tests.helpers.run_dirs import snapshot
from tests.unit.test_cli_train import factory_train


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_yaml_syntax_error_in_a_user_config_names_the_file_and_line(tmp_path):
    mine = tmp_path / "conf" / "features" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("features:\n  x: {dtype: float32, shape: [3]\n labels: oops\n")
    line = one_error_line(factory_train("--config-dir", str(tmp_path / "conf"), "features=mine", cwd=tmp_path))
    assert f"{mine}, line 3: YAML syntax error" in line and "fix the file" in line


def test_a_run_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("")
    line = one_error_line(factory_train(*TINY, "hydra.run.dir=taken", cwd=tmp_path))
    assert "hydra.run.dir: taken is a file, not a directory" in line


def test_data_globs_that_match_nothing_are_named_before_training(tmp_path):
    line = one_error_line(factory_train(*TINY, "data.test=nowhere/test-*.tfrecord", cwd=tmp_path))
    assert f"data.test: 'nowhere/test-*.tfrecord' matches no file (relative to {tmp_path})" in line
    result = factory_train(*TINY, "data.generate=null", "data.eval=/nowhere/eval-*", cwd=tmp_path)
    assert "data.eval: '/nowhere/eval-*' matches no file; fix the path" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_shard_set_matched_in_part_is_named_before_training(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in (0, 2):  # shard 1 of 3 is missing
        (data / f"train-0000{i}-of-00003.tfrecord").write_bytes(b"")
    (data / "eval.tfrecord").write_bytes(b"")
    given = ["data.generate=null", f"data.train={data}/train-*", f"data.eval={data}/eval.tfrecord", "data.test=null"]
    line = one_error_line(factory_train(*TINY, *given, cwd=tmp_path))
    assert f"data.train: {data}/train-*-of-00003.tfrecord: incomplete shard set" in line
    assert "missing shard train-00001-of-00003.tfrecord" in line


def finished_run(run, *overrides: str, steps: int = 60) -> None:
    """A run dir as a finished run of TINY leaves it, as far as the check before Hydra reads it."""
    run.mkdir(parents=True)
    config = load_config({**compose(*TINY, *overrides), "run_dir": str(run)})
    (run / "config.yaml").write_text(yaml.safe_dump(dict(config.raw), sort_keys=False))
    (run / "summary.json").write_text(json.dumps({"steps": steps, "stopped_early": False, "best_value": 0.25}))


def test_a_finished_run_dir_exits_0_and_another_experiment_exits_2_changing_no_file(tmp_path):
    finished_run(tmp_path / "run")
    before = snapshot(tmp_path / "run")
    done = factory_train(*TINY, "early_stop.patience=2", "hydra.run.dir=run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "already finished at step 60; nothing to train (summary: run/summary.json); "
        "to train on, raise train.max_steps (and set early_stop.enabled=false if it stopped early)"
    )
    line = one_error_line(factory_train(*TINY, "train.batch_size=16", "seed=1", "hydra.run.dir=run", cwd=tmp_path))
    assert (
        "run holds another experiment: seed: 0 in config.yaml, 1 now; train.batch_size: 32 in config.yaml, 16 now"
        in line
    )
    assert snapshot(tmp_path / "run") == before
