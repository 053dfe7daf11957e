"""The factory-train Hydra app: config errors, reported before TensorFlow loads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def factory_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    return subprocess.run(
        [str(BIN / "factory-train"), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


BAD_COMMAND_LINES = [
    (["train.batchsize=3"], "train.batchsize: unknown key (did you mean 'batch_size'?)"),
    (
        ["network=mpl"],
        "network: there is no config 'mpl' in the 'network' group (did you mean 'mlp'?); available: cnn, linear, mlp, text, wide_deep",
    ),
    (
        ["network.name=mpl"],
        "network.name: unknown network 'mpl' (did you mean 'mlp'?); known: cnn, linear, mlp, text, wide_deep",
    ),
    (["network=mlp", "network.hiden=[3]"], "network.hiden: unknown key (did you mean 'hidden'?)"),
    (
        ["early_stop.monitor=val_acc"],
        "early_stop.monitor: no evaluation produces 'val_acc' (did you mean 'val_accuracy'?)",
    ),
    (["train.max_steps=abc"], "train.max_steps: expected integer, got string 'abc'"),
    (["train.optimizer.name=adamm"], "train.optimizer.name: 'adamm' is not one of adam, adamw, sgd, rmsprop"),
    (["features.features.image.encoding=gif"], "features.features.image.encoding: 'gif' is not one of png, jpeg"),
    (["-m", "network=mlp,mpl"], "network: there is no config 'mpl'"),
    (["imports=[no_such_module_here]"], "imports[0]: cannot import 'no_such_module_here'"),
    (
        ["train.resume_input=iterator", "train.strategy=mirrored"],
        "train.resume_input: 'iterator' needs train.strategy=default",
    ),
    (
        ["experiment=reviews", "compare_with=[logistic]"],
        "compare_with: the reference models read columns of numbers, but features.review.text.output is `sequence`",
    ),
    (["experiment=reviews", "network=mlp", "features.review.text.max_length=0"], "features.review.text.max_length"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_COMMAND_LINES, ids=[a[-1] for a, _ in BAD_COMMAND_LINES])
def test_config_errors_exit_2_fast_without_traceback_or_tensorflow(tmp_path, args, expected):
    start = time.perf_counter()
    result = factory_train(*args, cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists()  # nothing was run
    assert elapsed < 20  # generous for a loaded machine; typically about 0.5 s


def test_sweep_parameters_in_a_config_file_are_checked_too(tmp_path):
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "mine.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: factory_optuna\n"
        "hydra:\n  sweeper:\n    direction: maximize\n    n_trials: 2\n"
        "    params:\n      train.optimizer.learnin_rate: interval(0.001, 0.01)\n      train.batch_size: choice(32, 64)\n"
    )
    result = factory_train("-m", "--config-dir", str(tmp_path / "conf"), "+hparams_search=mine", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "train.optimizer.learnin_rate: unknown key (did you mean 'learning_rate'?)" in result.stderr
        and "(it comes from hydra.sweeper.params in a config file)" in result.stderr
    )
    assert not (tmp_path / "multirun").exists()
    # The command line wins over a parameter of the same key, as in the sweeper.
    mine = tmp_path / "conf" / "hparams_search" / "mine.yaml"
    mine.write_text(mine.read_text().replace("learnin_rate", "learning_rate"))
    result = factory_train(
        "-m", "--config-dir", str(tmp_path / "conf"), "+hparams_search=mine", "train.batch_size=0", cwd=tmp_path
    )
    assert result.returncode == 2 and "train.batch_size: 0 is below the minimum of 1" in result.stderr
    assert "hydra.sweeper.params" not in result.stderr


def test_config_errors_do_not_import_tensorflow():
    code = "import sys; from factory.cli.train import main; rc = main(['train.batchsize=3']); print(rc, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "2 False", out.stderr
