"""``scan_on_ray``: the statistics pass (``factory.features.scan``) as Ray tasks over the record files.

- **Tasks.** One Ray task per file (1 CPU each), ``workers`` of them running at a time, and at
  most twice ``workers`` files' parts read ahead of the merge. A task runs ``scan_parts`` on
  its file in a Ray worker, which imports TensorFlow itself, and returns the file's part (its
  record count and its ``Column`` objects, pickled). Relative paths are read from the directory
  the command ran in.
- **The same numbers.** This process merges the parts in file order (``merge_parts``) as they
  come back, as the pass in one process merges its own parts: a file's part does not depend on
  which process read it (its batches and its records' sample keys depend on the file alone),
  and the merges happen in the same order on the same values, so the result is the same, bit
  for bit (on machines whose NumPy computes the same float64 sums, as one machine's does).
- **Errors.** A record a task cannot read stops the pass with the ``RecordError`` the pass in
  one process raises (the first bad file's: parts are taken in file order), not Ray's wrapper;
  the tasks still queued are cancelled.
- **Ray.** ``ray_session``: an instance of ``workers`` CPUs of its own on this machine, stopped
  at the end, or the cluster at ``address``; Ray is optional (``factory[ray]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from factory.cluster.preflight import RAY_EXTRA, ray_installed
from factory.cluster.ray_session import ray_session
from factory.errors import FactoryError
from factory.features.reading import resolve_files
from factory.features.scan import Column, merge_parts, scan_parts

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec

log = logging.getLogger("factory")

# Passed on to the workers, wherever they run: TensorFlow reads them when it loads.
_WORKER_ENV = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
# Files read ahead of the merge, per worker: enough to keep every worker busy while a slow file
# holds the merge up, few enough that the parts waiting to be merged stay few.
_AHEAD = 2

Part = tuple[int, int, dict[str, Column]]


def scan_on_ray(
    spec: FeatureSpec,
    files: str | Sequence[str],
    compression: str | None,
    summary: Iterable[str],
    auto: Iterable[str],
    address: str | None = None,
    workers: int = 2,
) -> tuple[list[str], int, dict[str, Column]]:
    """``factory.features.scan.scan`` run as Ray tasks, one per file: the same ``(files, records, {name: Column})``.

    ``address`` None starts a Ray instance of ``workers`` CPUs on this machine for the pass;
    otherwise it runs on the Ray cluster at ``address`` (``FactoryError`` naming ``--address``
    when none answers there). ``workers`` tasks run at a time. A Ray connection this process
    already has is used as it is.

    Raises:
        FactoryError: Ray is not installed, or no cluster answers at ``address``.
        RecordError: as ``scan`` raises it, for the first file (in order) with a bad record.
    """
    if not ray_installed():
        raise FactoryError(f"the statistics pass on Ray needs Ray: {RAY_EXTRA}")
    if workers < 1:
        raise FactoryError(f"--workers: {workers} is below the minimum of 1")
    summary, auto = sorted(set(summary)), sorted(set(auto))
    paths = resolve_files(files)
    with ray_session(address, workers, key="--address") as where:
        if where is not None:
            log.info(f"statistics: {len(paths)} files as Ray tasks on {where}")
        parts = _parts(spec, paths, compression, summary, auto, workers)
        records, columns = merge_parts(spec, summary, auto, parts)
    return paths, records, columns


def _parts(
    spec: FeatureSpec,
    paths: list[str],
    compression: str | None,
    summary: list[str],
    auto: list[str],
    workers: int,
) -> Iterator[Part]:
    """Every file's part, in file order, each read by a Ray task; a task's ``FactoryError`` raised as it is."""
    import ray  # deferred: Ray is optional (factory[ray])
    from ray.exceptions import RayTaskError  # deferred: Ray is optional (factory[ray])

    task = ray.remote(num_cpus=1)(_scan_files)
    env = {key: os.environ[key] for key in _WORKER_ENV if key in os.environ}
    if env:
        task = task.options(runtime_env={"env_vars": env})
    shared = ray.put({"spec": spec, "paths": paths, "compression": compression, "summary": summary, "auto": auto})
    cwd = os.getcwd()
    running: dict[Any, int] = {}  # a task's result: its file's number
    finished: dict[int, Any] = {}  # a file's number: its task's result, not merged yet
    submitted = 0
    try:
        for i in range(len(paths)):
            while i not in finished:
                while submitted < min(len(paths), i + _AHEAD * workers) and len(running) < workers:
                    running[task.remote(shared, [submitted], cwd)] = submitted
                    submitted += 1
                ready, _ = ray.wait(list(running), num_returns=1)
                finished[running.pop(ready[0])] = ready[0]
            try:
                parts = ray.get(finished.pop(i))
            except RayTaskError as err:
                if isinstance(err.cause, FactoryError):  # a bad record: the message the pass in one process gives
                    raise err.cause from None
                raise
            yield from parts
    finally:
        for ref in running:
            ray.cancel(ref)


def _scan_files(shared: dict[str, Any], which: list[int], cwd: str) -> list[Part]:
    """A Ray task: the parts of files ``which`` of ``shared["paths"]`` (``scan_parts``), read from ``cwd``."""
    if os.path.isdir(cwd):  # a worker starts in a directory of its own; the paths may be relative
        os.chdir(cwd)
    return list(
        scan_parts(
            shared["spec"], shared["paths"], shared["compression"], shared["summary"], shared["auto"], which=which
        )
    )
