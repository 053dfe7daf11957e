"""Sweeps without training: reading and ranking trial dirs, `factory summarize`, sweep command-line checks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from factory.cli import main as factory
from factory.run_dir import owning
from factory.sweeps.results import read_sweep
from factory.sweeps.trials import DONE, FAILED, INTERRUPTED, PRUNED, RUNNING, read_trial

BIN = Path(sys.executable).parent


def clean_env() -> dict[str, str]:
    """This environment without TF_* variables: factory-train sets its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TF_")}


def factory_train(*args: str, cwd: Path, timeout: float = 600) -> tuple[subprocess.CompletedProcess, int]:
    """Run factory-train; returns the finished process and its pid."""
    with subprocess.Popen(
        [str(BIN / "factory-train"), *args],
        cwd=cwd,
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), process.pid


def summarize(*args: str, capsys) -> tuple[int, str, str]:
    code = factory(["summarize", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["+hparams_search=digits_optuna", "network=mlp", "network.dropuot=interval(0,0.5)"],
            "network.dropuot: unknown key (did you mean 'dropout'?)",
        ),
        (
            ["+hparams_search=digits_optuna", "train.batch_size=tag(log, interval(0, 64))"],
            "train.batch_size: 0.0 is below the minimum of 1",
        ),
        (
            ["+hparams_search=digits_optuna", "train.optimizer.name=choice(adam,adamm)"],
            "train.optimizer.name: 'adamm' is not one of",
        ),
        (
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.batchsize=3"],
            "train.batchsize: unknown key (did you mean 'batch_size'?)",
        ),
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


def make_trial(
    root: Path,
    name: str,
    best: float | None = None,
    *,
    monitor: str = "val_accuracy",
    mode: str = "auto",
    overrides: tuple[str, ...] = (),
    log: str = "",
    evaluations: list[dict] | None = None,
    exports: dict | None = None,
    test: dict | None = None,
    seconds: float = 1.5,
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
            "monitor": monitor,
            "best_value": best,
            "best_eval": 2,
            "evaluations": 3,
            "steps": 60,
            "stopped_early": False,
            "seconds": seconds,
            "exports": exports or {},
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


def test_pruned_failed_running_and_interrupted_trials_are_listed_last_as_such(tmp_path, capsys):
    make_trial(tmp_path, "0", None, log="[t] error: invalid config: network.dropout: 1.2 is out of range\n")
    make_trial(tmp_path, "1", 0.5)
    partial = [
        {"eval": 1, "step": 20, "best": 0.3, "seconds": 2.0},
        {"eval": 2, "step": 40, "best": 0.4, "seconds": 4.0},
    ]
    make_trial(tmp_path, "2", None, evaluations=partial)
    make_trial(tmp_path, "3", 0.7)
    pruned = make_trial(tmp_path, "4", 0.9)  # the best value, of a shorter run: not ranked
    summary = json.loads((pruned / "summary.json").read_text())
    (pruned / "summary.json").write_text(json.dumps({**summary, "pruned": True}))
    running = make_trial(tmp_path, "5", None, evaluations=partial[:1])
    with owning(running):  # a process training it
        trials = read_sweep(tmp_path)
        code, out, _ = summarize(str(tmp_path), "--no-csv", capsys=capsys)
    assert [(t.name, t.status) for t in trials] == [
        ("3", DONE),
        ("1", DONE),
        ("4", PRUNED),
        ("0", FAILED),
        ("5", RUNNING),
        ("2", INTERRUPTED),
    ]
    assert trials[3].error == "invalid config: network.dropout: 1.2 is out of range"
    assert (trials[5].best_value, trials[5].evaluations, trials[5].seconds) == (0.4, 2, 4.0)
    assert trials[2].pruned and not trials[0].pruned

    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:7]]
    assert [r[:3] for r in rows] == [
        ["1", "3", "done"],
        ["2", "1", "done"],
        ["-", "4", "pruned"],
        ["-", "0", "failed"],
        ["-", "5", "running"],
        ["-", "2", "interrupted"],
    ]
    assert "  0: invalid config: network.dropout: 1.2 is out of range" in out
    assert "interrupted: stopped before the end" in out and "same hydra.sweep.dir to resume" in out
    assert "running: still training" in out
    assert not (tmp_path / "summary.csv").exists()
    # Nobody holds it any more: the same trial reads as interrupted.
    assert read_trial(running).status == INTERRUPTED


def test_a_broken_summary_makes_a_failed_trial_not_an_error(tmp_path):
    run = make_trial(tmp_path, "0", 0.5)
    (run / "summary.json").write_text('{"monitor": "val_')
    trial = read_trial(run)
    assert trial.status == FAILED
    assert trial.error.startswith("summary.json is unreadable")


def test_table_shows_what_differs_and_the_shared_overrides_above(tmp_path, capsys):
    shared = ("network=mlp", "train.max_steps=300")
    make_trial(
        tmp_path,
        "0",
        0.8,
        overrides=(*shared, "network.hidden=[32]", "train.optimizer.learning_rate=0.0013922830138102383"),
    )
    make_trial(
        tmp_path,
        "1",
        0.9,
        overrides=(*shared, "network.hidden=[64,64]", "train.optimizer.learning_rate=0.01"),
        seconds=75,
    )
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
    make_trial(
        tmp_path, "0", 0.8, exports={"best": "/r/0/export/best/40"}, test={"test_accuracy": 0.81, "test_loss": 0.6}
    )
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
