"""A resume continues the same experiment or refuses; a finished run is left alone (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from factory.config import load_config
from factory.config.resume import RESUMABLE, Finished, check_run_dir, differences, flatten
from factory.errors import ConfigError, FactoryError
from tests.helpers import TINY, compose


def config(*overrides: str, run_dir: Path | None = None):
    raw = compose(*TINY, *overrides)
    return load_config({**raw, "run_dir": str(run_dir) if run_dir else None})


def previous_run(run_dir: Path, *overrides: str, summary: dict | None = None) -> None:
    """A run dir as a run of TINY + ``overrides`` leaves it: config.yaml, and summary.json if given."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(config(*overrides, run_dir=run_dir).raw), sort_keys=False))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))


def test_a_new_run_dir_and_the_same_config_pass(tmp_path):
    assert check_run_dir(config(), tmp_path / "new") is None
    previous_run(tmp_path / "run")
    assert check_run_dir(config(run_dir=tmp_path / "elsewhere"), tmp_path / "run") is None  # run_dir is not compared


def test_every_difference_outside_the_allowed_keys_is_named_with_both_values(tmp_path):
    previous_run(tmp_path, "seed=3")
    with pytest.raises(FactoryError) as err:
        check_run_dir(config("seed=4", "train.batch_size=16", "network.hidden=[8]", "network.dropout=0.3"), tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "seed: 3 in config.yaml, 4 now" in message
    assert "train.batch_size: 32 in config.yaml, 16 now" in message
    assert "network.hidden: [32] in config.yaml, [8] now" in message
    assert "network.dropout: 0.0 in config.yaml, 0.3 now" in message
    assert "use another hydra.run.dir" in message


@pytest.mark.parametrize(
    "change",
    [
        "train.max_steps=500",
        "train.eval_every_steps=10",
        "early_stop.patience=50",
        "early_stop.enabled=false",
        "export.latest.enabled=true",
        "train.progress=lines",
        "train.keep_checkpoints=1",
        "data.test=null",
    ],
)
def test_allowed_changes_resume(tmp_path, change):
    previous_run(tmp_path)
    assert check_run_dir(config(change), tmp_path) is None


def test_a_learning_rate_changes_only_when_listed_in_resume_changes(tmp_path):
    previous_run(tmp_path)
    with pytest.raises(FactoryError, match=r"train\.optimizer\.learning_rate: 0\.002 in config\.yaml, 0\.01 now"):
        check_run_dir(config("train.optimizer.learning_rate=0.01"), tmp_path)
    allowed = config("train.optimizer.learning_rate=0.01", "train.resume_changes=[train.optimizer.learning_rate]")
    assert check_run_dir(allowed, tmp_path) is None


def test_resume_changes_names_real_keys():
    with pytest.raises(ConfigError, match=r"train\.resume_changes\[0\]: 'train\.optimizer\.learnin_rate' is not a key"):
        config("train.resume_changes=[train.optimizer.learnin_rate]")
    assert config("train.resume_changes=[network]").train.resume_changes == ("network",)


def test_resumable_keys_are_keys_of_the_config():
    keys = flatten(config().raw)
    for name in RESUMABLE:
        assert any(k == name or k.startswith(name + ".") for k in keys), name


def test_a_key_added_since_the_run_takes_its_default(tmp_path):
    previous_run(tmp_path)
    stored = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del stored["train"]["resume_changes"], stored["early_stop"]["baseline"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(stored))
    assert check_run_dir(config(), tmp_path) is None


def test_an_unreadable_config_yaml_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("train: [\n")
    with pytest.raises(FactoryError, match=r"config\.yaml: cannot be read"):
        check_run_dir(config(), tmp_path)


@pytest.mark.parametrize(
    ("summary", "overrides", "done"),
    [
        ({"steps": 60, "stopped_early": False, "best_value": 0.5}, [], True),
        ({"steps": 60, "stopped_early": False, "best_value": 0.5}, ["train.max_steps=40"], True),
        ({"steps": 60, "stopped_early": False, "best_value": 0.5}, ["train.max_steps=100"], False),
        ({"steps": 40, "stopped_early": True, "best_value": 0.5}, ["train.max_steps=100"], True),
        ({"steps": 40, "stopped_early": True, "best_value": 0.5}, ["early_stop.enabled=false"], False),
        # A sweep's pruner stopped it: finished whatever the config says about steps and early stopping.
        ({"steps": 40, "stopped_early": False, "pruned": True, "best_value": 0.5}, ["train.max_steps=100"], True),
        ({"steps": 40, "pruned": True, "best_value": 0.5}, ["train.max_steps=100", "early_stop.enabled=false"], True),
    ],
)
def test_a_finished_run_is_finished_unless_the_config_trains_further(tmp_path, summary, overrides, done):
    previous_run(tmp_path, summary=summary)
    verdict = check_run_dir(config(*overrides), tmp_path)
    assert (verdict is not None) == done
    if done:
        pruned = summary.get("pruned", False)
        assert verdict == Finished(tmp_path, summary["steps"], 0.5, pruned)
        expected = ": pruned by its sweep" if pruned else "; nothing to train"
        assert verdict.message.startswith(f"already finished at step {summary['steps']}{expected}")


def test_differences_of_nested_values():
    assert differences({"a": {"b": 1, "c": [1]}}, {"a": {"b": 1.0, "c": [2], "d": None}}) == [
        ("a.c", [1], [2]),
        ("a.d", differences.__globals__["_MISSING"], None),
    ]
    assert differences({"x": True}, {"x": 1}) == [("x", True, 1)]
