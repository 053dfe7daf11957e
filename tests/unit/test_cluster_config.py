"""The ``cluster`` group (``cluster=ray``) and its checks, without Ray running or TensorFlow."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from factory.cluster import check_cluster
from factory.cluster.log_relay import RelayHandler, relayed
from factory.cluster.preflight import RAY_EXTRA
from factory.config import ClusterConfig, defaults, load_config
from factory.config.resume import RESUMABLE, covered
from factory.config.settings import CLUSTER_STRATEGY
from factory.errors import ConfigError, FactoryError, TrainingError
from tests.helpers import TINY, compose

BIN = Path(sys.executable).parent


def test_cluster_ray_takes_every_default_from_the_settings_and_sets_the_strategy():
    composed = compose("cluster=ray")
    assert composed["cluster"] == {**defaults(ClusterConfig), "backend": "ray"}
    assert composed["train"]["strategy"] == CLUSTER_STRATEGY
    config = load_config(compose("cluster=ray", "cluster.workers=4", "cluster.address=ray://head:10001"))
    assert config.cluster == ClusterConfig(backend="ray", workers=4, address="ray://head:10001")
    default = load_config(compose())
    assert default.cluster == ClusterConfig() and default.cluster.backend == "local"
    assert default.train.strategy == "default"


CHECKS = [
    ([], []),
    (["train.strategy=mirrored"], []),  # a local run: nothing to check
    (["cluster=ray"], []),
    (["cluster=ray", "cluster.workers=1"], []),
    (
        ["cluster=ray", "train.strategy=mirrored"],
        [
            f"train.strategy: cluster=ray trains every worker under {CLUSTER_STRATEGY} (conf/cluster/ray.yaml "
            "sets it), not 'mirrored'; drop train.strategy from the command line"
        ],
    ),
    (
        ["cluster.backend=ray"],  # the key without the group: the strategy stays the default
        [
            f"train.strategy: cluster=ray trains every worker under {CLUSTER_STRATEGY} (conf/cluster/ray.yaml "
            "sets it), not 'default'; drop train.strategy from the command line"
        ],
    ),
    (
        ["cluster=ray", "cluster.workers=3"],
        ["train.batch_size: 32 examples per step cannot be split evenly across cluster.workers=3; use a multiple of 3"],
    ),
]


@pytest.mark.parametrize(("overrides", "problems"), CHECKS, ids=[" ".join(o) or "local" for o, _ in CHECKS])
def test_check_cluster(overrides, problems):
    config = load_config(compose(*TINY, *overrides))
    if not problems:
        check_cluster(config)
        return
    with pytest.raises(ConfigError) as raised:
        check_cluster(config)
    assert raised.value.problems == problems


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("cluster.workers=0", "cluster.workers: 0 is below the minimum of 1"),
        ("cluster.cpus_per_worker=0", "cluster.cpus_per_worker: 0 is below the minimum of 1"),
        ("cluster.backend=slurm", "cluster.backend: 'slurm' is not one of local, ray"),
    ],
)
def test_bad_cluster_values_are_config_errors(override, problem):
    with pytest.raises(ConfigError) as raised:
        load_config(compose("cluster=ray", override))
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_without_ray_cluster_ray_is_refused_and_a_local_run_is_not(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, find_spec finds nothing
    with pytest.raises(ConfigError) as raised:
        check_cluster(load_config(compose(*TINY, "cluster=ray")))
    assert raised.value.problems == [f"cluster=ray needs Ray: {RAY_EXTRA}"]
    check_cluster(load_config(compose(*TINY)))


def test_factory_train_without_ray_exits_2_before_tensorflow(tmp_path):
    """A Python where Ray cannot be imported (a sitecustomize on PYTHONPATH), running the real command."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import atexit, sys\n"
        "sys.modules['ray'] = None\n"
        "def loaded():\n"
        f"    with open({str(tmp_path / 'loaded.txt')!r}, 'w') as f:\n"
        "        f.write(' '.join(m for m in ('tensorflow', 'ray') if sys.modules.get(m)))\n"
        "atexit.register(loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(shim), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [str(BIN / "factory-train"), "cluster=ray", "network=mlp"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: invalid config: cluster=ray needs Ray: {RAY_EXTRA}"
    assert (tmp_path / "loaded.txt").read_text() == ""  # neither TensorFlow nor Ray was imported
    assert not (tmp_path / "runs").exists()


def test_a_resume_may_change_where_the_workers_run_but_not_how_many_there_are():
    assert covered("cluster.address", RESUMABLE) and covered("cluster.cpus_per_worker", RESUMABLE)
    assert not covered("cluster.workers", RESUMABLE) and not covered("cluster.backend", RESUMABLE)


# -- the chief's log, relayed -------------------------------------------------------------------


def test_relayed_records_arrive_whole_in_order_and_none_is_lost(tmp_path):
    path = tmp_path / "log.jsonl"
    worker = logging.getLogger("test.cluster.worker")
    worker.propagate = False
    worker.setLevel(logging.DEBUG)
    worker.addHandler(RelayHandler(path))  # INFO and above, as the chief relays them
    received: list[tuple[int, str]] = []

    class Collect(logging.Handler):
        def emit(self, record):
            received.append((record.levelno, record.getMessage()))

    here = logging.getLogger("test.cluster.driver")
    here.propagate = False
    here.setLevel(logging.INFO)
    here.addHandler(Collect())
    with relayed(path, here):
        writers = [
            threading.Thread(target=lambda n=n: [worker.info(f"{n}: line {i}") for i in range(50)]) for n in range(2)
        ]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        worker.debug("not relayed")
        worker.warning("a warning\nover two lines")
        with open(path, "a") as f:
            f.write('{"level": 20, "mess')  # a record being written when the block ends: not yet a line
    assert received[-1] == (logging.WARNING, "a warning\nover two lines")
    for n in range(2):
        assert [m for _, m in received if m.startswith(f"{n}:")] == [f"{n}: line {i}" for i in range(50)]
    assert len(received) == 101


# -- failures, as the starting process reports them ---------------------------------------------


class _GroupError(Exception):
    """Ray Train's WorkerGroupError, as far as ``explain_failure`` reads it."""

    def __init__(self, failures):
        super().__init__("Training failed due to worker errors")
        self.worker_failures = failures


def test_a_dead_worker_comes_first_then_a_factory_error_then_the_failure_itself():
    ray_exceptions = pytest.importorskip("ray.exceptions")
    from factory.cluster.ray_train import WorkerError, explain_failure

    died = ray_exceptions.ActorDiedError()
    bug = ValueError("a bug")
    refused = WorkerError("data.train: no file matches 'x'", 2)

    explained = explain_failure(_GroupError({0: bug, 1: died}), 2)
    assert isinstance(explained, TrainingError)
    assert str(explained).startswith("cluster=ray: worker 1 of 2 died during training")

    explained = explain_failure(_GroupError({0: bug, 1: refused}), 2)
    assert isinstance(explained, FactoryError) and explained.exit_code == 2
    assert str(explained) == "data.train: no file matches 'x'"

    group = _GroupError({1: bug})
    assert explain_failure(group, 2) is group


def test_a_config_error_from_another_process_reads_as_it_was_raised():
    """Ray tasks and worker processes send their errors back pickled."""
    import pickle

    error = ConfigError(["train.batch_size: 0 is less than the minimum of 1", "seed: not an integer"], "c.yaml")
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.problems, again.source, again.exit_code) == (
        str(error),
        error.problems,
        "c.yaml",
        2,
    )
