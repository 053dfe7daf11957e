"""The Optuna sweeper's ask-launch-tell loop, and its errors on the command line (no TensorFlow).

``optimize`` runs real studies in real journal files here; its jobs are a small function that
writes each trial's ``summary.json`` as a training run does, so that the loop's rules (trial
numbers, resuming, telling, failures) are checked in a fraction of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from factory.errors import ConfigError
from factory.sweeps.optimize import NoTrialCompleted, Outcome, make_sampler, optimize, sweep_settings
from factory.sweeps.search_space import parse_search_space
from factory.sweeps.study import journal_storage

SPACE = parse_search_space(["x=interval(0.0, 1.0)", "fixed=1"])


class Jobs:
    """Runs each launched batch as trials do: one dir per job number, ``summary.json`` at the end.

    ``fate(number, x)``: ``("done", value)``, ``("pruned", value)``, ``("error", message)`` (the
    job raised), ``("exit", message)`` (the job exits: the launch of its batch raises) or
    ``("kill", None)`` (the sweep is killed: nothing more runs).
    """

    def __init__(self, sweep: Path, fate=None):
        self.sweep = sweep
        self.fate = fate or (lambda number, x: ("done", x))
        self.launches: list[tuple[int, list[list[str]]]] = []

    def __call__(self, batch: list[list[str]], first: int) -> list[Outcome]:
        self.launches.append((first, batch))
        outcomes = []
        for number, overrides in enumerate(batch, start=first):
            run = self.sweep / str(number)
            run.mkdir(parents=True, exist_ok=True)
            x = float(next(o for o in overrides if o.startswith("x=")).split("=")[1])
            kind, value = self.fate(number, x)
            if kind == "kill":
                raise KeyboardInterrupt
            if kind == "exit":
                (run / "train.log").write_text(f"error: {value}\n")
                return [*outcomes, *(self._aborted(n) for n in range(number, first + len(batch)))]
            if kind == "error":
                outcomes.append(Outcome(run, error=value))
                continue
            (run / "summary.json").write_text(json.dumps({"best_value": value, "pruned": kind == "pruned"}))
            outcomes.append(Outcome(run, value=value))
        return outcomes

    def _aborted(self, number: int) -> Outcome:
        return Outcome(self.sweep / str(number), error="SystemExit: 2", aborted=True)

    @property
    def firsts(self) -> list[tuple[int, int]]:
        return [(first, len(batch)) for first, batch in self.launches]


def settings(tmp_path: Path, **values):
    return sweep_settings(
        {"direction": "minimize", "study_name": "s", "seed": 1, "pruner": "none", **values}, "sw", tmp_path
    )


def run(tmp_path: Path, jobs: Jobs, space=SPACE, objective: str | None = None, **values) -> None:
    """``optimize`` as the sweeper runs it in ``tmp_path``, its sweep dir ``tmp_path/sw``."""
    optimize(settings(tmp_path, **values), space, str(tmp_path / "sw"), jobs, objective=objective)


def trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = journal_storage(tmp_path / "sw" / "optuna.journal")
    return optuna.load_study(study_name="s", storage=storage).trials


def test_trial_numbers_are_job_numbers_and_n_trials_counts_the_whole_study(tmp_path, capsys):
    jobs = Jobs(tmp_path / "sw")
    run(tmp_path, jobs, n_trials=5, n_jobs=2, objective="val_loss")
    assert jobs.firsts == [(0, 2), (2, 2), (4, 1)]
    assert all(batch[i][0] == "fixed=1" for _, batch in jobs.launches for i in range(len(batch)))
    done = trials(tmp_path)
    assert [(t.number, t.state) for t in done] == [(n, TrialState.COMPLETE) for n in range(5)]
    assert [t.value for t in done] == [t.params["x"] for t in done]  # the value each job returned
    assert [t.user_attrs["overrides"] for t in done] == [[f"x={t.params['x']!r}"] for t in done]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"sweep {tmp_path}/sw: study 's' has 0 of 5 trials; 5 to start (tpe sampler, no pruner)"
    best = min(done, key=lambda t: t.value)
    shown = f"val_loss {best.value:.4g} (x={best.params['x']!r})"
    assert out[-1] == f"sweep {tmp_path}/sw: best trial {best.number}: {shown}; 5 trials: 5 complete"
    results = (tmp_path / "sw" / "optimization_results.yaml").read_text()
    assert f"best_trial: {best.number}\n" in results

    again = Jobs(tmp_path / "sw")
    run(tmp_path, again, n_trials=5, n_jobs=2)  # a finished study: nothing runs
    run(tmp_path, again, n_trials=7, n_jobs=2)
    assert again.firsts == [(5, 2)]
    assert capsys.readouterr().out.splitlines()[2] == (
        f"sweep {tmp_path}/sw: study 's' has 5 of 7 trials (5 complete); 2 to start (tpe sampler, no pruner)"
    )
    assert [t.number for t in trials(tmp_path)] == list(range(7))


def test_a_killed_sweep_resumes_its_running_trials_with_their_parameters_then_asks_new_ones(tmp_path, capsys):
    killed = Jobs(tmp_path / "sw", fate=lambda n, x: ("kill", None) if n == 2 else ("done", x))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, killed, n_trials=6, n_jobs=2)
    before = trials(tmp_path)
    assert [t.state for t in before] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING] * 2
    capsys.readouterr()

    jobs = Jobs(tmp_path / "sw")
    run(tmp_path, jobs, n_trials=6, n_jobs=2)
    assert capsys.readouterr().out.splitlines()[0] == (
        f"sweep {tmp_path}/sw: study 's' has 4 of 6 trials (2 complete, 2 interrupted: resumed); 2 to start (tpe sampler, no pruner)"
    )
    assert jobs.launches[0] == (2, [["fixed=1", f"x={t.params['x']!r}"] for t in before[2:]])
    assert jobs.firsts == [(2, 2), (4, 2)]
    after = trials(tmp_path)
    assert [(t.number, t.state) for t in after] == [(n, TrialState.COMPLETE) for n in range(6)]
    assert [t.params for t in after[:4]] == [t.params for t in before]
    assert len({t.params["x"] for t in after}) == 6  # the seed moved on: no start-up point drawn twice


def test_a_batch_of_trial_numbers_with_gaps_goes_in_one_launch_per_run_of_numbers(tmp_path):
    study = optuna.create_study(storage=journal_storage(tmp_path / "sw" / "optuna.journal"), study_name="s")
    study.ask(SPACE.distributions)  # trial 0: left running
    study.tell(study.ask(SPACE.distributions), 0.5)  # trial 1: complete
    study.ask(SPACE.distributions)  # trial 2: left running
    jobs = Jobs(tmp_path / "sw")
    run(tmp_path, jobs, n_trials=5, n_jobs=4)
    assert jobs.firsts == [(0, 1), (2, 3)]  # 0 and 2 resumed, 3 and 4 asked
    assert [(t.number, t.state) for t in trials(tmp_path)] == [(n, TrialState.COMPLETE) for n in range(5)]


def test_pruned_failed_and_nan_trials_are_told_so_and_the_sweep_goes_on(tmp_path, capsys):
    fates = {0: ("done", 0.5), 1: ("pruned", 0.9), 2: ("error", "ValueError: boom"), 3: ("done", float("nan"))}
    jobs = Jobs(tmp_path / "sw", fate=lambda n, x: fates.get(n, ("done", 0.4)))
    run(tmp_path, jobs, n_trials=5)
    states = [t.state for t in trials(tmp_path)]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith("; 5 trials: 2 complete, 1 pruned, 2 failed")
    assert "best trial 4: 0.4 " in last


def test_a_batch_cut_short_by_a_job_that_exits_fails_that_trial_and_runs_the_others_again(tmp_path):
    jobs = Jobs(tmp_path / "sw", fate=lambda n, x: ("exit", "invalid config") if n == 1 else ("done", x))
    run(tmp_path, jobs, n_trials=3, n_jobs=3)
    assert jobs.firsts == [(0, 3), (2, 1)]  # trial 2 never ran: launched again, alone
    assert [t.state for t in trials(tmp_path)] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def test_a_study_without_a_complete_trial_and_failures_ends_with_status_1(tmp_path):
    jobs = Jobs(tmp_path / "sw", fate=lambda n, x: ("error", "ValueError: boom"))
    with pytest.raises(NoTrialCompleted) as err:
        run(tmp_path, jobs, n_trials=2)
    assert err.value.exit_code == 1
    assert "no trial of study 's' completed (2 trials: 2 failed)" in str(err.value)


def test_a_study_made_for_the_other_direction_is_refused(tmp_path):
    run(tmp_path, Jobs(tmp_path / "sw"), n_trials=1)
    with pytest.raises(ConfigError, match="study 's' in .* was created to minimize, this sweep would maximize"):
        run(tmp_path, Jobs(tmp_path / "sw"), n_trials=2, direction="maximize")


def test_the_grid_sampler_runs_each_point_once_and_caps_n_trials(tmp_path, capsys):
    space = parse_search_space(["x=range(1, 4)", "y=choice(a, b)"])
    jobs = Jobs(tmp_path / "sw")
    run(tmp_path, jobs, space, n_trials=10, sampler="grid")
    assert "has 0 of 6 trials; 6 to start (grid sampler" in capsys.readouterr().out
    assert sorted((t.params["x"], t.params["y"]) for t in trials(tmp_path)) == sorted(
        (x, y) for x in (1, 2, 3) for y in ("a", "b")
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [("tpe", "TPESampler"), ("random", "RandomSampler"), ("cmaes", "CmaEsSampler")],
)
def test_samplers_by_name(tmp_path, name, kind):
    assert type(make_sampler(settings(tmp_path, sampler=name), SPACE)).__name__ == kind


def test_cmaes_without_its_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)  # the package is not importable
    with pytest.raises(ConfigError, match="cmaes needs the cmaes package, which is not installed: pip install cmaes"):
        make_sampler(settings(tmp_path, sampler="cmaes"), SPACE)


def test_every_bad_setting_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, n_trials=-1, n_jobs=0, sampler="tpee", direction="up", pruner="x")
    assert [p.split(":")[0] for p in err.value.problems] == [
        "hydra.sweeper.n_trials",
        "hydra.sweeper.n_jobs",
        "hydra.sweeper.direction",
        "hydra.sweeper.sampler",
        "hydra.sweeper.pruner",
    ]


# -- on the command line: one line, exit status 2, nothing trained ---------------------------------

BAD = {
    "unknown tag": (["network.dropout=tag(foo, interval(0, 0.5))"], "network.dropout: unknown tag 'foo'"),
    "glob": (["network=glob(*)"], "network: glob(*) is not a distribution a sampler can draw from; allowed:"),
    "grid and interval": (["hydra.sweeper.sampler=grid"], "network.dropout: the grid sampler"),
    "sampler": (["hydra.sweeper.sampler=tpee"], "hydra.sweeper.sampler: 'tpee' is not one of tpe, random, grid, cmaes"),
    "cmaes missing": (["hydra.sweeper.sampler=cmaes"], "pip install cmaes"),
    "storage dir": (["hydra.sweeper.storage=."], "is a directory; name the study's journal file in it"),
    "storage url": (["hydra.sweeper.storage=sqlite:///x.db"], "sqlite:///x.db is a database URL"),
    "pruner": (["hydra.sweeper.pruner=medain"], "(did you mean 'median'?)"),
    "optuna missing": ([], "hydra/sweeper=factory_optuna needs optuna: pip install 'optuna>=4'"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory) -> dict[str, tuple[int, str, float]]:
    """Every BAD command line run through factory-train's main(), one after another in one fresh process
    (the last one without Optuna)."""
    cwd = tmp_path_factory.mktemp("bad")
    cases = {name: args for name, (args, _) in BAD.items()}
    code = f"""
import contextlib, io, json, sys, time
from factory.cli.train import main
results = {{}}
for name, args in {cases!r}.items():
    if name.endswith(" missing"):
        sys.modules[name.split()[0]] = None  # as if it were not installed
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["-m", "+hparams_search=digits_optuna", "network=mlp", *args, "hydra.sweep.dir=sw-" + name.replace(" ", "-")])
    results[name] = (code, err.getvalue(), time.perf_counter() - start)
print(json.dumps({{"results": results, "tensorflow": "tensorflow" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert not answer["tensorflow"]
    assert not any(cwd.glob("sw-*/optuna.journal")) and not any(cwd.glob("sw-*/0"))
    return answer["results"]


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_sweep_exits_2_with_one_error_line_before_any_trial(bad_runs, name):
    code, err, seconds = bad_runs[name]
    assert code == 2, err
    assert err.startswith("error: ") and BAD[name][1] in err
    assert "Traceback" not in err
    assert seconds < 30  # no TensorFlow: typically well under a second
