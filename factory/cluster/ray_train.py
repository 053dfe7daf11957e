"""``train_on_ray``: one run trained by ``cluster.workers`` Ray workers together (``factory-train cluster=ray``).

- **Workers.** Ray Train (its v2 ``DataParallelTrainer``, the class ``ray.train.tensorflow.TensorflowTrainer``
  specialises) starts ``cluster.workers`` workers of ``cluster.cpus_per_worker`` CPUs each. Its backend
  here does what ``TensorflowTrainer``'s does: before training, every worker gets ``TF_CONFIG`` naming
  all the workers' addresses and its own index (its rank). ``TensorflowTrainer`` itself is not used:
  importing it imports TensorFlow in this process and in Ray Train's controller, which made each run
  about 10 s slower on two cores, and it sets ``TF_USE_LEGACY_KERAS=1`` (``tf.keras`` as Keras 2).
- **The run.** Each worker calls ``factory.training.runner.train`` with the run's resolved config (a
  plain dict, validated again in the worker, which also imports its ``imports:``; the seed is in it,
  the same for all) and the run dir, under ``train.strategy=multi_worker_mirrored``: exactly a run whose
  ``TF_CONFIG`` was set by hand. The chief (rank 0) writes the run dir, worker N ``RUN_DIR/worker-N``;
  the run dir must be on storage every worker reaches. Relative paths in the config are read from the
  directory the command ran in. The chief's return value, the best monitored value, is the result.
- **Failures.** No retries (``FailureConfig(max_failures=0)``): a worker that fails or dies ends the run
  and Ray Train stops the others. A factory error in a worker comes back with its message and exit
  status; a worker that died (``kill -9``, out of memory) is a ``TrainingError`` naming it. Checkpoints
  are kept, and the same command resumes from them.
- **Logs.** The chief's ``factory`` log is relayed here (``log_relay``): the console and ``train.log``
  show what a run in one process shows. Ray's and the workers' other output stays in Ray's log files.
- **Scratch.** ``RUN_DIR/.ray/`` holds the relayed log and Ray Train's storage during the run, locked by
  this process (``run_dir.owning``: one process starts a run's workers at a time); removed after it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from factory.cluster.log_relay import RelayHandler, relayed
from factory.cluster.preflight import check_cluster
from factory.cluster.ray_session import first_line, ray_session
from factory.config import Config
from factory.errors import FactoryError, TrainingError
from factory.features.bundled import ensure_generated
from factory.run_dir import LOCK, owning
from factory.training.runner import train

log = logging.getLogger("factory")

SCRATCH = ".ray"  # in the run dir, while the workers run
RELAY_LOG = "log.jsonl"  # in SCRATCH: the chief's log records
STORAGE = "storage"  # in SCRATCH: Ray Train's run storage
# Passed on to the workers, wherever they run: TensorFlow reads them when it loads.
_WORKER_ENV = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")


def train_on_ray(config: Config, run_dir: str | os.PathLike) -> float:
    """Train ``config`` across ``config.cluster.workers`` Ray workers into ``run_dir``; the best monitored value.

    With ``cluster.address`` null, a Ray instance of its own is started on this machine (``workers``
    x ``cpus_per_worker`` CPUs, no dashboard) and stopped at the end; otherwise the run joins the Ray
    cluster at that address (an instance this process already joined is used as it is). Runs
    ``check_cluster`` first.

    Raises:
        ConfigError: ``check_cluster``'s problems.
        FactoryError: a worker's factory error, with its message and exit status.
        TrainingError: a worker died (the run dir keeps its checkpoints: run again to resume).
    """
    check_cluster(config)
    run_dir = Path(os.path.abspath(run_dir))
    cluster = config.cluster
    try:
        with (
            _scratch(run_dir) as scratch,
            ray_session(cluster.address, cluster.workers * cluster.cpus_per_worker) as where,
            relayed(scratch / RELAY_LOG),
        ):
            if where is not None:  # not when the caller joined Ray itself
                log.info(f"cluster=ray: {cluster.workers} workers on {where}")
            _statistics(config, run_dir, cluster.workers)
            return _fit(config, run_dir, scratch)
    except KeyboardInterrupt:  # after the relayed lines: the workers are stopped by now
        log.info("cluster=ray: interrupted; the workers were stopped, and a rerun resumes from their last checkpoint")
        raise


@contextlib.contextmanager
def _scratch(run_dir: Path) -> Iterator[Path]:
    """``RUN_DIR/.ray``, emptied and held by this process for the block, removed after it."""
    scratch = run_dir / SCRATCH
    held = contextlib.ExitStack()
    held.enter_context(owning(scratch))  # held by another process: its FactoryError, and nothing removed
    try:
        with held:
            for path in scratch.iterdir():  # left by a run whose process was killed
                if path.name != LOCK:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _statistics(config: Config, run_dir: Path, workers: int) -> None:
    """The statistics pass before training, as Ray tasks over the training files (``scan_on_ray``):
    once, into ``run_dir``, where every worker then finds it (a resumed run's are reused)."""
    # deferred: the pass loads TensorFlow, which this process needs for nothing else
    from factory.cluster.ray_scan import scan_on_ray
    from factory.features.scan import resolve_statistics  # deferred: as above
    from factory.training.checkpointing import statistics_from_checkpoint  # deferred: as above

    data = config.data
    if data.generate and ensure_generated(data.generate, data.dir, config.features):
        log.info(f"wrote the {data.generate} records to {Path(data.dir).expanduser()}")
    statistics_from_checkpoint(run_dir)
    scan_with = functools.partial(scan_on_ray, workers=workers)
    resolve_statistics(config.features, list(data.train), data.compression, run_dir, scan_with=scan_with)


def _fit(config: Config, run_dir: Path, scratch: Path) -> float:
    """Ray Train's run of ``_work`` on every worker; the chief's result, or the failure explained."""
    from ray.train.v2.api.config import FailureConfig, LoggingConfig, RunConfig, ScalingConfig  # deferred: optional
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer  # deferred: Ray is optional
    from ray.train.v2.api.exceptions import TrainingFailedError  # deferred: Ray is optional

    cluster = config.cluster
    trainer = DataParallelTrainer(
        _work,
        train_loop_config={
            "config": dict(config.raw),
            "run_dir": str(run_dir),
            "cwd": os.getcwd(),
            "relay": str(scratch / RELAY_LOG),
        },
        backend_config=_tf_config_backend()(),
        scaling_config=ScalingConfig(
            num_workers=cluster.workers, use_gpu=False, resources_per_worker={"CPU": cluster.cpus_per_worker}
        ),
        run_config=RunConfig(
            name="train",
            storage_path=str(scratch / STORAGE),
            failure_config=FailureConfig(max_failures=0),
            logging_config=LoggingConfig(log_level="ERROR"),
            worker_runtime_env={"env_vars": {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}},
        ),
    )
    try:
        result = _off_the_main_thread(trainer.fit)
    except TrainingFailedError as err:
        raise explain_failure(err, cluster.workers) from None
    if result.return_value is None:
        raise TrainingError("cluster=ray: the workers were stopped before the run ended; run again to resume")
    return float(result.return_value)


def _off_the_main_thread(fit: Callable[[], Any]) -> Any:
    """``fit()`` in a thread of its own, this thread waiting for it: Ctrl-C stays this process's.

    On the main thread, Ray Train's ``fit`` puts a SIGINT handler of its own in place (and leaves
    it there); here Ctrl-C raises ``KeyboardInterrupt`` as usual, and stopping Ray stops the workers.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fit()
        except BaseException as err:  # handed to the waiting thread
            outcome["error"] = err

    thread = threading.Thread(target=run, name="factory-ray-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class WorkerError(Exception):
    """A ``FactoryError`` raised in a worker, as it travels back: its message and exit status."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message, exit_code)
        self.message = message
        self.exit_code = exit_code


def _work(args: dict[str, Any]) -> float:
    """One worker's part of the run (in the worker's process, with ``TF_CONFIG`` set by the backend)."""
    if os.path.isdir(args["cwd"]):  # Ray Train starts each worker in a directory of its own
        os.chdir(args["cwd"])
    logger = logging.getLogger("factory")
    logger.setLevel(logging.INFO)
    if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0:  # the chief speaks for the run
        logger.addHandler(RelayHandler(args["relay"]))
    try:
        return train(args["config"], run_dir=args["run_dir"])
    except FactoryError as err:
        raise WorkerError(str(err), err.exit_code) from None


def explain_failure(err: Exception, workers: int) -> BaseException:
    """The error to raise for Ray Train's ``TrainingFailedError``: one line, or the error itself for a bug.

    A worker that died explains the others' failures (their collectives broke), so it comes first;
    then a factory error raised in a worker (the lowest rank's); anything else is a bug, raised as
    Ray Train reports it (its message holds the worker's traceback).
    """
    failures: dict[int, Exception] | None = getattr(err, "worker_failures", None)
    if failures is None:  # Ray Train's controller failed, not a worker
        cause = getattr(err, "controller_failure", err)
        return TrainingError(f"cluster=ray: Ray Train failed: {first_line(cause)}")
    for rank in sorted(failures):
        failure = failures[rank]
        if _died(failure):
            pid = re.search(r"\bpid[=:]\s*(\d+)", str(failure))
            which = f"worker {rank} of {workers}" + (f" (pid {pid.group(1)})" if pid else "")
            return TrainingError(
                f"cluster=ray: {which} died during training (killed, out of memory, or its machine was lost); "
                "the checkpoints are kept: run the same command to resume"
            )
        if type(failure).__name__ == "WorkerHealthCheckTimeoutError":
            return TrainingError(
                f"cluster=ray: worker {rank} of {workers} stopped answering Ray; the checkpoints are kept: "
                "run the same command to resume"
            )
    for rank in sorted(failures):
        if isinstance(failures[rank], WorkerError):
            error = FactoryError(failures[rank].message)
            error.exit_code = failures[rank].exit_code
            return error
    return err


def _died(failure: Exception) -> bool:
    """A worker whose process ended (as Ray's health check found it), rather than one that raised."""
    from ray.exceptions import RayActorError  # deferred: Ray is optional (factory[ray])

    return isinstance(failure, RayActorError) or isinstance(
        getattr(failure, "health_check_failure", None), RayActorError
    )


# -- the backend: TF_CONFIG in every worker ------------------------------------------------------


def _address() -> str:
    """This worker's address for ``TF_CONFIG``: its node's IP and a free port."""
    import ray  # deferred: Ray is optional (factory[ray])

    host = ray.util.get_node_ip_address()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def _set_tf_config(addresses: list[str], index: int) -> None:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


@functools.cache
def _tf_config_backend() -> type:
    """Ray Train's ``BackendConfig`` whose backend sets ``TF_CONFIG`` in every worker (rank = task index)."""
    import ray  # deferred: Ray is optional (factory[ray])
    from ray.train.backend import Backend, BackendConfig  # deferred: Ray is optional (factory[ray])

    class TFConfigBackend(Backend):
        def on_start(self, worker_group, backend_config) -> None:
            addresses = worker_group.execute(_address)
            ray.get([worker_group.execute_single_async(i, _set_tf_config, addresses, i) for i in range(len(addresses))])

    class TFConfig(BackendConfig):
        @property
        def backend_cls(self):
            return TFConfigBackend

    return TFConfig
