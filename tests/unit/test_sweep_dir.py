"""A sweep dir run again: the record of the sweep, the refusal of another sweep, and the tally of its trials."""

from __future__ import annotations

import json
import os

import pytest

from factory.cli.train import check_command_line
from factory.errors import ConfigError
from factory.sweeps.sweep_dir import (
    SWEEP_RECORD,
    check_sweep,
    describe_before,
    record_sweep,
    snapshot,
    sweep_identity,
    tally,
)
from tests.unit.test_sweeps import factory_train

SWEEP = ["-m", "network=mlp", "network.hidden=[8],[16]", "train.max_steps=20"]


def test_the_identity_holds_the_overrides_the_sweeper_and_its_search_space_without_what_a_resume_may_change():
    identity = sweep_identity(
        ["network=mlp", "+foo=1", "network.hidden=[8], [16]", "train.max_steps=20", "hydra.launcher.n_jobs=2"],
        "basic",
        {"train.optimizer.learning_rate": "tag(log, interval(0.001, 0.1))"},
    )
    assert identity == {
        "network": "mlp",
        "foo": "1",
        "network.hidden": "[8],[16]",
        "hydra/sweeper": "basic",
        "hydra.sweeper.params.train.optimizer.learning_rate": "tag(log,interval(0.001,0.1))",
    }


def test_a_recorded_sweep_refuses_another_one_naming_each_differing_override(tmp_path):
    check_sweep(tmp_path / "new", {"network": "mlp"})  # nothing recorded: passes
    record_sweep(tmp_path, {"network": "mlp", "network.hidden": "[8],[16]", "hydra/sweeper": "basic"})
    check_sweep(tmp_path, {"network": "mlp", "network.hidden": "[8],[16]", "hydra/sweeper": "basic"})
    with pytest.raises(ConfigError) as err:
        check_sweep(tmp_path, {"network": "mlp", "network.hidden": "[8],[32]", "seed": "3", "hydra/sweeper": "basic"})
    message = str(err.value)
    assert f"hydra.sweep.dir: {tmp_path} holds another sweep" in message
    assert "network.hidden: [8],[16] there, [8],[32] now" in message
    assert "seed: (absent) there, 3 now" in message
    assert str(tmp_path / SWEEP_RECORD) in message


def _record_as_the_sweep_does(tmp_path, argv):
    """Record the sweep of ``argv`` in its sweep dir as the Hydra callback does at the start of a multirun."""
    from hydra import compose, initialize_config_dir

    from factory.cli.train_sweep import identity_of, trial_overrides
    from factory.validation import resource_dir

    overrides = [a for a in argv if a != "-m"]
    with initialize_config_dir(config_dir=str(resource_dir("conf")), version_base="1.3"):
        cfg = compose(config_name="config", overrides=trial_overrides(overrides)[0], return_hydra_config=True)
    record_sweep(tmp_path / "sweep", identity_of(cfg.hydra, [o for o in overrides if not o.startswith("hydra")]))


def test_factory_train_refuses_a_sweep_dir_of_another_sweep_before_anything_runs(tmp_path):
    sweep = tmp_path / "sweep"
    _record_as_the_sweep_does(tmp_path, [*SWEEP, f"hydra.sweep.dir={sweep}"])
    recorded = (sweep / SWEEP_RECORD).read_bytes()
    # The same sweep, training longer and on another launcher: it resumes.
    assert (
        check_command_line([*SWEEP[:-1], "train.max_steps=40", "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}"])
        is None
    )
    result, _ = factory_train(
        "-m", "network=mlp", "network.hidden=[8],[32]", "train.max_steps=20", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "holds another sweep (network.hidden: [8],[16] there, [8],[32] now)" in result.stderr
    assert (sweep / SWEEP_RECORD).read_bytes() == recorded
    assert sorted(p.name for p in sweep.iterdir()) == [SWEEP_RECORD]


def _trial(root, name, *, summary=False, checkpoint=False):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    if checkpoint:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "ckpt-20.index").write_bytes(b"")
    if summary:
        (run / "summary.json").write_text(json.dumps({"steps": 40}))
    return run


def test_the_tally_tells_skipped_resumed_and_started_trials_apart(tmp_path):
    assert snapshot(tmp_path / "absent") == {}
    done = _trial(tmp_path, "0", summary=True, checkpoint=True)
    longer = _trial(tmp_path, "1", summary=True, checkpoint=True)  # trained further this time
    cut = _trial(tmp_path, "2", checkpoint=True)
    early = _trial(tmp_path, "3")  # killed before its first checkpoint: starts again
    before = snapshot(tmp_path)
    assert describe_before(before) == (
        "2 finished trial(s) are skipped, 1 interrupted trial(s) resume from their checkpoints"
    )
    os.utime(longer / "summary.json", (1, 1))
    (cut / "summary.json").write_text("{}")
    (early / "summary.json").write_text("{}")
    _trial(tmp_path, "4", summary=True)
    assert str(tally(before, tmp_path)) == "1 skipped (finished before), 2 resumed, 2 started"
    assert done.is_dir() and describe_before({}) is None


def test_a_pruner_over_trials_that_evaluate_only_at_their_end_is_refused_before_anything_runs(tmp_path):
    once = ["-m", "+hparams_search=digits_optuna", "train.max_steps=100", "train.eval_every_steps=100"]
    with pytest.raises(ConfigError) as err:
        check_command_line([*once, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert "hydra.sweeper.pruner: the median pruner judges trials at their evaluations" in str(err.value)
    assert "train.eval_every_steps=100, train.max_steps=100" in str(err.value)
    assert check_command_line([*once, "hydra.sweeper.pruner=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"]) is None
    assert check_command_line([*once[:-1], "train.eval_every_steps=20", f"hydra.sweep.dir={tmp_path / 's'}"]) is None
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match="trials trained with cluster=ray do not report to the study"):
        check_command_line([*once[:-1], "train.eval_every_steps=20", "cluster=ray", f"hydra.sweep.dir={tmp_path}/r"])
