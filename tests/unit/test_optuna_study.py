"""A sweep's Optuna study in its journal file, and a trial's reports to it (real studies, no TensorFlow)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import open_dict
from optuna.trial import TrialState

import factory.cli.train  # noqa: F401  (registers factory's groups and resolvers with Hydra)
from factory.errors import ConfigError, FactoryError
from factory.sweeps.study import (
    TrialReporter,
    journal_path,
    journal_storage,
    make_pruner,
    pruner_settings,
    running_study,
    trial_report_spec,
)
from factory.validation import resource_dir

MEDIAN = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def new_study(tmp_path, direction="maximize", pruner=MEDIAN):
    journal = tmp_path / "optuna.journal"
    storage = journal_storage(journal)
    study = optuna.create_study(storage=storage, study_name="s", direction=direction, pruner=make_pruner(pruner))
    return journal, study


def reporter(journal, number, pruner=MEDIAN) -> TrialReporter:
    return TrialReporter({"journal": str(journal), "study": "s", "trial": number, "pruner": pruner})


def finish(study, journal, values: dict[int, float], pruner=MEDIAN) -> int:
    """A trial that reports ``values`` ({step: value}) and completes with the best; returns its number."""
    trial = study.ask()
    line = reporter(journal, trial.number, pruner)
    assert [line.report(step, v) for step, v in values.items()] == [None] * len(values)
    study.tell(trial.number, max(values.values()))
    return trial.number


# -- the job side's spec ---------------------------------------------------------------------------


def hydra_node(*overrides: str, mode=RunMode.MULTIRUN, num=3):
    """The ``hydra`` node a job of ``factory-train -m`` sees (composed from conf/, as Hydra composes it)."""
    with initialize_config_dir(config_dir=str(resource_dir("conf")), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg.hydra):
        cfg.hydra.mode = mode
        cfg.hydra.job.num = num
    return cfg.hydra


def test_a_trial_of_the_sweeper_gets_a_json_spec_naming_its_journal_study_and_number(tmp_path):
    node = hydra_node(
        "+hparams_search=digits_optuna", "hydra.sweeper.pruner_n_startup_trials=2", f"hydra.sweep.dir={tmp_path}/sw"
    )
    spec = trial_report_spec(node)
    assert json.loads(json.dumps(spec)) == spec
    assert spec == {"journal": f"{tmp_path}/sw/optuna.journal", "study": "digits", "trial": 3, "pruner": MEDIAN}


def test_a_relative_storage_is_taken_from_where_the_sweep_started(tmp_path):
    node = hydra_node("hydra/sweeper=factory_optuna", "hydra.sweeper.storage=studies/x.journal", "hydra.sweep.dir=sw")
    with open_dict(node):
        node.runtime.cwd = str(tmp_path)  # the job itself may run elsewhere (hydra.job.chdir)
    assert trial_report_spec(node)["journal"] == str(tmp_path / "studies" / "x.journal")


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [
        (["hydra/sweeper=factory_optuna", "hydra.sweeper.pruner=none"], RunMode.MULTIRUN),  # pruning off
        (["hydra/sweeper=factory_optuna"], RunMode.RUN),  # not a sweep's trial
        ([], RunMode.MULTIRUN),  # Hydra's basic sweeper
    ],
    ids=["pruner none", "single run", "basic sweeper"],
)
def test_no_spec_without_a_study_that_prunes(overrides, mode):
    assert trial_report_spec(hydra_node(*overrides, mode=mode)) is None


def test_pruner_settings_defaults_and_every_bad_value_at_once():
    assert pruner_settings({}) == {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 0}
    assert pruner_settings({"pruner": "none"}) is None
    assert pruner_settings({"pruner": "hyperband"}) == {
        "name": "hyperband",
        "min_resource": "auto",
        "reduction_factor": 3,
        "max_resource": "auto",
    }
    with pytest.raises(ConfigError, match=r"'medain' is not one of median, .*, none \(did you mean 'median'\?\)"):
        pruner_settings({"pruner": "medain"})
    with pytest.raises(ConfigError) as err:
        pruner_settings({"pruner": "successive_halving", "pruner_min_resource": 0, "pruner_reduction_factor": 1})
    assert err.value.problems == [
        "hydra.sweeper.pruner_min_resource: 0 is not an integer >= 1 or auto",
        "hydra.sweeper.pruner_reduction_factor: 1 is not an integer >= 2",
    ]


def test_each_pruner_is_built_from_its_settings():
    median = make_pruner(MEDIAN)
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_startup_trials == 2
    halving = make_pruner({"name": "successive_halving", "min_resource": 10, "reduction_factor": 2})
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner) and halving._min_resource == 10
    hyperband = make_pruner({"name": "hyperband", "min_resource": "auto", "max_resource": 40, "reduction_factor": 2})
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner) and hyperband._max_resource == 40
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)


# -- the reporter ----------------------------------------------------------------------------------


def test_the_median_pruner_stops_a_trial_below_the_median_and_says_why(tmp_path):
    journal, study = new_study(tmp_path)
    finish(study, journal, {10: 0.5, 20: 0.6})  # no trial complete yet: nothing is pruned
    finish(study, journal, {10: 0.7, 20: 0.8})
    low, fair = study.ask().number, study.ask().number
    assert reporter(journal, low).report(10, 0.3) == (
        "pruned by the median pruner (trial 2 at step 10: its best so far, 0.3, is below 0.6, "
        "the median of the 2 complete trial(s) at that step)"
    )
    line = reporter(journal, fair)
    assert line.report(10, 0.65) is None
    assert line.report(20, 0.66) == (
        "pruned by the median pruner (trial 3 at step 20: its best so far, 0.66, is below 0.7, "
        "the median of the 2 complete trial(s) at that step)"
    )
    assert study.trials[fair].intermediate_values == {10: 0.65, 20: 0.66}


def test_a_resumed_trial_reports_a_step_again_without_error_and_is_judged_again(tmp_path):
    journal, study = new_study(tmp_path, direction="minimize")
    finish(study, journal, {10: 1.0})
    finish(study, journal, {10: 2.0})
    number = study.ask().number
    assert reporter(journal, number).report(10, 1.2) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns about a step reported twice: not from us
        again = reporter(journal, number)  # the resumed job: a new process, a new reporter
        assert again.report(10, 9.9) is None
        assert again.report(10, 9.9) is None
        assert again.report(20, 3.0) is None  # its best so far is still 1.2, and no trial reported step 20
    assert study.trials[number].intermediate_values == {10: 1.2, 20: 3.0}


def test_values_all_nan_are_pruned_and_a_finished_trial_is_left_alone(tmp_path):
    journal, study = new_study(tmp_path, direction="minimize")
    finish(study, journal, {10: 1.0})
    finish(study, journal, {10: 2.0})
    number = study.ask().number
    line = reporter(journal, number)
    reason = line.report(10, math.nan)
    assert reason == "pruned by the median pruner (trial 2 at step 10: every value it reported is NaN)"
    study.tell(number, state=TrialState.PRUNED)
    assert line.report(20, 0.5) is None
    assert study.trials[number].intermediate_values.keys() == {10}


def test_successive_halving_keeps_the_best_of_each_rung(tmp_path):
    halving = {"name": "successive_halving", "min_resource": 10, "reduction_factor": 2}
    journal, study = new_study(tmp_path, pruner=halving)
    numbers = [study.ask().number for _ in range(3)]
    verdicts = [reporter(journal, n, halving).report(10, v) for n, v in zip(numbers, (0.5, 0.7, 0.6), strict=True)]
    assert verdicts == [
        None,
        None,
        "pruned by successive halving (trial 2 at step 10: 0.6 at rung 0 is not among the best 1 of the 3 trial(s) there)",
    ]


def test_hyperband_judges_a_trial_within_its_bracket(tmp_path):
    hyperband = {"name": "hyperband", "min_resource": 10, "max_resource": 40, "reduction_factor": 2}
    journal, study = new_study(tmp_path, pruner=hyperband)
    first, second = study.ask().number, study.ask().number
    assert reporter(journal, first, hyperband).report(10, 0.5) is None
    assert reporter(journal, second, hyperband).report(10, 0.4) == (
        "pruned by hyperband (trial 1 at step 10: 0.4 at rung 0 is not in the best 1/2 of its bracket's trials there)"
    )


def test_a_report_from_another_process_reaches_the_study(tmp_path):
    journal, study = new_study(tmp_path)
    finish(study, journal, {10: 0.5})
    finish(study, journal, {10: 0.7})
    number = study.ask().number
    spec = {"journal": str(journal), "study": "s", "trial": number, "pruner": MEDIAN}
    code = f"from factory.sweeps.study import TrialReporter; print(TrialReporter({spec!r}).report(10, 0.2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("pruned by the median pruner (trial 2 at step 10: its best so far, 0.2, is below 0.6")
    assert study.trials[number].intermediate_values == {10: 0.2}


def test_a_trial_the_study_does_not_hold_is_a_clear_error(tmp_path):
    journal, _ = new_study(tmp_path)
    with pytest.raises(FactoryError, match="study 's' has no trial 7 to report to"):
        reporter(journal, 7)


# -- the journal and the sweep's lock --------------------------------------------------------------


def test_the_journal_is_the_storage_file_or_sits_in_the_sweep_dir(tmp_path):
    assert journal_path(None, "sw", tmp_path) == tmp_path / "sw" / "optuna.journal"
    assert journal_path("s.journal", "sw", tmp_path) == tmp_path / "s.journal"
    assert journal_path(str(tmp_path / "a" / "b.journal"), "sw", "/elsewhere") == tmp_path / "a" / "b.journal"
    with pytest.raises(ConfigError, match=r"hydra.sweeper.storage: sqlite:///x.db is a database URL"):
        journal_path("sqlite:///x.db", "sw", tmp_path)
    with pytest.raises(ConfigError, match=rf"{tmp_path} is a directory; name the study's journal file in it"):
        journal_path(str(tmp_path), "sw", tmp_path)


def test_a_file_that_is_no_journal_is_a_config_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ConfigError, match=r"notes.txt is not an Optuna journal file"):
        journal_storage(tmp_path / "notes.txt")


def test_a_torn_last_line_is_cut_by_the_sweep_that_opens_the_study(tmp_path):
    journal, study = new_study(tmp_path)
    study.ask()
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 4, "worker_id": "x"')  # an append cut short: no newline
    storage = journal_storage(journal, mend=True)
    study = optuna.load_study(study_name="s", storage=storage)
    study.ask()
    assert [t.number for t in optuna.load_study(study_name="s", storage=journal_storage(journal)).trials] == [0, 1]


def test_one_sweep_at_a_time_holds_a_study_until_its_process_ends(tmp_path):
    journal = tmp_path / "optuna.journal"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from factory.sweeps.study import running_study\n"
            f"with running_study({str(journal)!r}):\n    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(FactoryError) as err:
            with running_study(journal):
                pass
        assert f"is in use by process {holder.pid} (" in str(err.value)
        assert f"one sweep runs a study at a time; wait for it to end, stop it (kill {holder.pid})" in str(err.value)
    finally:
        holder.kill()  # kill -9: the kernel releases the lock
        holder.wait()
    with running_study(journal):
        assert (tmp_path / "optuna.journal.sweep").read_text().split("\n")[0] == str(os.getpid())
        with pytest.raises(FactoryError, match="is in use by process"):  # within one process too
            with running_study(journal):
                pass
