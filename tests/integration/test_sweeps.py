"""Sweeps: joblib and Optuna multiruns of factory-train, and `factory summarize` over their trials."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from factory.cli import main as factory
from factory.sweeps.results import DONE, FAILED, UNFINISHED, read_sweep, read_trial
from tests.helpers import TINY

BIN = Path(sys.executable).parent
# Each trial a few seconds: 20 steps, one evaluation, no test pass, no export.
QUICK = (*TINY, "train.max_steps=20", "data.test=null", "export.best.enabled=false")


def clean_env() -> dict[str, str]:
    """This environment without TF_* variables: factory-train sets its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TF_")}


def factory_train(*args: str, cwd: Path, timeout: float = 600) -> tuple[subprocess.CompletedProcess, int]:
    """Run factory-train; returns the finished process and its pid."""
    with subprocess.Popen(
        [str(BIN / "factory-train"), *args], cwd=cwd, env=clean_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as process:
        out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), process.pid


def trial_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def writer_pid(run_dir: Path) -> int:
    """The pid of the process that trained a run: TensorBoard puts it in its event file names."""
    event = next((run_dir / "tensorboard" / "train").glob("events.out.tfevents.*"))
    return int(event.name.rsplit(".", 3)[1])  # events.out.tfevents.<time>.<host>.<pid>.<n>.v2


def summarize(*args: str, capsys) -> tuple[int, str, str]:
    code = factory(["summarize", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- real sweeps ---------------------------------------------------------------------------------


def test_joblib_multirun_trains_each_trial_in_a_fresh_process_and_summarize_ranks_them(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    result, pid = factory_train(
        "-m", *QUICK, "export.best.enabled=true", "network.hidden=[8],[16],[32]",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stdout
    dirs = trial_dirs(sweep)
    assert [d.name for d in dirs] == ["0", "1", "2"]
    assert all((d / "summary.json").is_file() for d in dirs)
    # Three trials on two reused joblib workers: each trial still trained in a process of its own.
    pids = [writer_pid(d) for d in dirs]
    assert len(set(pids)) == 3 and pid not in pids
    assert all("eval 1 @ step 20" in (d / "train.log").read_text() for d in dirs)  # the trial's log is in its run dir

    code, out, _ = summarize(str(sweep), capsys=capsys)
    assert code == 0
    summaries = {d.name: json.loads((d / "summary.json").read_text()) for d in dirs}
    best_first = sorted(summaries, key=lambda n: -summaries[n]["best_value"])  # val_accuracy: higher is better
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert "best val_accuracy (max)" in lines[header]
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert [r[1] for r in rows] == best_first
    assert {r[3] for r in rows} == {"network.hidden=[8]", "network.hidden=[16]", "network.hidden=[32]"}
    for row in rows:  # the export column names the best export, relative to the working directory or absolute
        assert Path(row[-1]).resolve() == Path(summaries[row[1]]["exports"]["best"]).resolve()
    with open(sweep / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["trial"] for r in table] == best_first
    assert [float(r["best_value"]) for r in table] == [summaries[n]["best_value"] for n in best_first]
    assert [r["export_best"] for r in table] == [summaries[n]["exports"]["best"] for n in best_first]


def test_ctrl_c_during_a_joblib_sweep_leaves_every_trial_with_its_checkpoint(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        *TINY, "train.max_steps=100000", "train.eval_every_steps=50", "data.test=null", "network.hidden=[8],[16]",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
    ]
    logs = [sweep / str(n) / "train.log" for n in range(2)]
    process = subprocess.Popen(
        [str(BIN / "factory-train"), "-m", *args], cwd=tmp_path, env=clean_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,  # its own process group, like a terminal's
    )
    try:
        deadline = time.time() + 300
        while not all(p.exists() and "eval 1 @" in p.read_text() for p in logs) and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    # joblib kills its workers at once; the trials, detached from them, still save.
    deadline = time.time() + 120
    while not all("interrupted at step" in p.read_text() for p in logs) and time.time() < deadline:
        time.sleep(0.05)
    for log in logs:
        step = int(log.read_text().split("interrupted at step ")[1].split(":")[0])
        checkpoints = log.parent / "checkpoints"
        assert (checkpoints / f"ckpt-{step}.index").is_file(), sorted(p.name for p in checkpoints.iterdir())
        assert not list(checkpoints.glob("*_temp*"))


def test_optuna_sweep_minimises_val_loss_and_summarize_reads_its_trials(tmp_path, capsys):
    sweep = tmp_path / "optuna"
    result, _ = factory_train(
        "-m", *QUICK, "early_stop.monitor=val_loss", "+hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Directions: ['minimize']" in result.stdout  # from early_stop.mode=auto on val_loss
    assert "setup plugin alembic" not in result.stdout
    dirs = trial_dirs(sweep)
    assert [d.name for d in dirs] == ["0", "1"]
    values = [json.loads((d / "summary.json").read_text())["best_value"] for d in dirs]
    sampled = [yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) for d in dirs]
    assert all(any(o.startswith("train.optimizer.learning_rate=") for o in s) for s in sampled)
    assert sampled[0] != sampled[1]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(min(values))  # the sweeper optimised what train() returned

    code, out, _ = summarize(str(sweep), "--csv", str(tmp_path / "trials.csv"), capsys=capsys)
    assert code == 0
    assert "best val_loss (min)" in out
    with open(tmp_path / "trials.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["best_value"]) for r in table] == sorted(values)
    assert not (sweep / "summary.csv").exists()


# -- the command-line check and the Optuna direction, before any training ------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["+hparams_search=digits_optuna", "network=mlp", "network.dropuot=interval(0,0.5)"], "network.dropuot: unknown key (did you mean 'dropout'?)"),
        (["+hparams_search=digits_optuna", "train.batch_size=tag(log, interval(0, 64))"], "train.batch_size: 0.0 is below the minimum of 1"),
        (["+hparams_search=digits_optuna", "train.optimizer.name=choice(adam,adamm)"], "train.optimizer.name: 'adamm' is not one of"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.batchsize=3"], "train.batchsize: unknown key (did you mean 'batch_size'?)"),
    ],
    ids=["interval key", "interval end", "choice value", "joblib"],
)
def test_sweep_command_lines_are_checked_before_anything_runs(tmp_path, args, expected):
    start = time.perf_counter()
    result, _ = factory_train("-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sweep").exists()
    assert time.perf_counter() - start < 30  # no TensorFlow, no Optuna: typically under 2 s


@pytest.mark.parametrize(
    ("overrides", "direction"),
    [
        ([], "maximize"),  # the digits experiment monitors val_accuracy
        (["early_stop.monitor=val_loss"], "minimize"),
        (["early_stop.mode=min"], "minimize"),
        (["early_stop.monitor=val_loss", "early_stop.mode=max"], "maximize"),
    ],
)
def test_optuna_direction_follows_the_early_stop_monitor_and_mode(tmp_path, overrides, direction):
    result, _ = factory_train("--cfg", "all", "--resolve", "+hparams_search=digits_optuna", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["hydra"]["sweeper"]["direction"] == direction


# -- reading sweep directories -------------------------------------------------------------------


def make_trial(
    root: Path, name: str, best: float | None = None, *, monitor: str = "val_accuracy", mode: str = "auto",
    overrides: tuple[str, ...] = (), log: str = "", evaluations: list[dict] | None = None,
    exports: dict | None = None, test: dict | None = None, seconds: float = 1.5,
) -> Path:
    """A run directory as factory-train leaves it; ``best=None`` leaves out summary.json (not finished)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (run / "config.yaml").write_text(yaml.safe_dump({"early_stop": {"monitor": monitor, "mode": mode}}))
    (run / "train.log").write_text(log)
    if evaluations:
        (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evaluations))
    if best is not None:
        summary = {
            "monitor": monitor, "best_value": best, "best_eval": 2, "evaluations": 3, "steps": 60,
            "stopped_early": False, "seconds": seconds, "exports": exports or {},
        }
        if test:
            summary["test"] = test
        (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.mark.parametrize(
    ("monitor", "mode", "expected"),
    [
        ("val_accuracy", "auto", ["1", "2", "0"]),
        ("val_loss", "auto", ["0", "2", "1"]),
        ("val_accuracy", "min", ["0", "2", "1"]),
        ("val_loss", "max", ["1", "2", "0"]),
    ],
)
def test_trials_are_ranked_in_the_direction_of_their_monitor(tmp_path, monitor, mode, expected):
    for name, best in (("0", 0.2), ("1", 0.9), ("2", 0.5)):
        make_trial(tmp_path, name, best, monitor=monitor, mode=mode)
    assert [t.name for t in read_sweep(tmp_path)] == expected


def test_ties_keep_job_order_counting_numerically(tmp_path):
    for job in range(12):
        make_trial(tmp_path, str(job), 0.5)
    assert [t.name for t in read_sweep(tmp_path)] == [str(j) for j in range(12)]


def test_failed_and_unfinished_trials_are_listed_last_as_such(tmp_path, capsys):
    make_trial(tmp_path, "0", None, log="[t] error: invalid config: network.dropout: 1.2 is out of range\n")
    make_trial(tmp_path, "1", 0.5)
    make_trial(tmp_path, "2", None, evaluations=[{"eval": 1, "step": 20, "best": 0.3, "seconds": 2.0}, {"eval": 2, "step": 40, "best": 0.4, "seconds": 4.0}])
    make_trial(tmp_path, "3", 0.7)
    trials = read_sweep(tmp_path)
    assert [(t.name, t.status) for t in trials] == [("3", DONE), ("1", DONE), ("0", FAILED), ("2", UNFINISHED)]
    assert trials[2].error == "invalid config: network.dropout: 1.2 is out of range"
    assert (trials[3].best_value, trials[3].evaluations, trials[3].seconds) == (0.4, 2, 4.0)

    code, out, _ = summarize(str(tmp_path), "--no-csv", capsys=capsys)
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:5]]
    assert [r[:3] for r in rows] == [["1", "3", "done"], ["2", "1", "done"], ["-", "0", "failed"], ["-", "2", "unfinished"]]
    assert "  0: invalid config: network.dropout: 1.2 is out of range" in out
    assert "unfinished: no summary.json yet" in out
    assert not (tmp_path / "summary.csv").exists()


def test_a_broken_summary_makes_a_failed_trial_not_an_error(tmp_path):
    run = make_trial(tmp_path, "0", 0.5)
    (run / "summary.json").write_text('{"monitor": "val_')
    trial = read_trial(run)
    assert trial.status == FAILED
    assert trial.error.startswith("summary.json is unreadable")


def test_table_shows_what_differs_and_the_shared_overrides_above(tmp_path, capsys):
    shared = ("network=mlp", "train.max_steps=300")
    make_trial(tmp_path, "0", 0.8, overrides=(*shared, "network.hidden=[32]", "train.optimizer.learning_rate=0.0013922830138102383"))
    make_trial(tmp_path, "1", 0.9, overrides=(*shared, "network.hidden=[64,64]", "train.optimizer.learning_rate=0.01"), seconds=75)
    _, out, _ = summarize(str(tmp_path), capsys=capsys)
    lines = out.splitlines()
    assert lines[0] == "shared overrides: network=mlp train.max_steps=300"
    assert lines[2].split()[:5] == ["1", "1", "done", "network.hidden=[64,64]", "train.optimizer.learning_rate=0.01"]
    assert lines[2].split()[-3:] == ["2", "1m15s", "-"]
    assert "train.optimizer.learning_rate=0.001392 " in lines[3]  # sampled floats shortened in the table
    with open(tmp_path / "summary.csv", newline="") as f:
        _, second = csv.DictReader(f)
    assert second["overrides"].endswith("train.optimizer.learning_rate=0.0013922830138102383")  # in full


def test_csv_has_a_column_per_export_policy_and_test_metric(tmp_path, capsys):
    make_trial(tmp_path, "0", 0.8, exports={"best": "/r/0/export/best/40"}, test={"test_accuracy": 0.81, "test_loss": 0.6})
    make_trial(tmp_path, "1", 0.9, exports={"final": "/r/1/export/final/60"}, test={"test_accuracy": 0.88})
    code, _, _ = summarize(str(tmp_path), "--csv", str(tmp_path / "out.csv"), capsys=capsys)
    assert code == 0
    with open(tmp_path / "out.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[-6:] == ["export_best", "export_final", "test_accuracy", "test_loss", "error", "run_dir"]
    assert [(r["trial"], r["rank"], r["export_best"], r["export_final"], r["test_loss"]) for r in rows] == [
        ("1", "1", "", "/r/1/export/final/60", ""),
        ("0", "2", "/r/0/export/best/40", "", "0.6"),
    ]
    assert rows[0]["run_dir"] == str((tmp_path / "1").resolve())


def test_trials_monitoring_different_metrics_are_ranked_per_metric(tmp_path, capsys):
    make_trial(tmp_path, "0", 0.3, monitor="val_loss", overrides=("early_stop.monitor=val_loss",))
    make_trial(tmp_path, "1", 0.8, overrides=("early_stop.monitor=val_accuracy",))
    make_trial(tmp_path, "2", 0.2, monitor="val_loss", overrides=("early_stop.monitor=val_loss",))
    make_trial(tmp_path, "3", 0.9, overrides=("early_stop.monitor=val_accuracy",))
    assert [t.name for t in read_sweep(tmp_path)] == ["2", "0", "3", "1"]
    _, out, _ = summarize(str(tmp_path), "--no-csv", capsys=capsys)
    assert [line.split()[0] for line in out.splitlines()[1:5]] == ["1", "2", "1", "2"]
    assert "val_loss=0.2" in out and "each metric is ranked on its own" in out


def test_nested_trial_dirs_are_found_and_run_dirs_are_not_searched(tmp_path):
    make_trial(tmp_path / "lr=0.1", "seed=0", 0.5)
    run = make_trial(tmp_path / "lr=0.01", "seed=0", 0.6)
    (run / "export" / "best" / "3").mkdir(parents=True)
    (run / "export" / "best" / "3" / "metrics.jsonl").write_text("{}\n")  # inside a run: not a trial
    assert [t.name for t in read_sweep(tmp_path)] == ["lr=0.01/seed=0", "lr=0.1/seed=0"]


def test_one_run_dir_is_a_sweep_of_one(tmp_path):
    run = make_trial(tmp_path, "run", 0.7, overrides=("network=mlp",))
    [trial] = read_sweep(run)
    assert (trial.name, trial.status, trial.overrides) == ("run", DONE, ("network=mlp",))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("missing", "missing: does not exist; pass the directory a sweep wrote"),
        ("empty", "empty: no trial directories found"),
        ("file.txt", "file.txt: is not a directory"),
    ],
)
def test_a_wrong_directory_is_a_user_error(tmp_path, capsys, target, expected):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("x")
    code, out, err = summarize(str(tmp_path / target), capsys=capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert out == ""


def test_summarize_does_not_import_tensorflow(tmp_path):
    make_trial(tmp_path, "0", 0.5)
    code = f"import sys; from factory.cli import main; rc = main(['summarize', {str(tmp_path)!r}]); print(rc, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stderr
