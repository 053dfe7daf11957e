"""``factory write --engine ray``: the blocks of a table file as Ray Data tasks across a Ray cluster.

The work is the local engine's (``factory.features.table_write``): each task reads its
block of the file itself (a byte range of a CSV or JSON Lines file, a Parquet row
group), validates, encodes and frames its records and returns them; this process
appends the results to the shards in file order, as the local engine does, so the shard
set is the same one, and appears all at once or not at all (``RecordWriter``). Ray Data
runs the tasks with its streaming executor: results come back in order
(``preserve_order``) and at most a few blocks ahead of the writer, so the driver's
memory stays bounded as it does locally.

Why not Ray Data's own ``read_csv``/``read_parquet``: their blocks do not say where in
the file a row was, so a bad row could not be named by its line, and the CSV dialect
(vector cells, JSON lists, image paths) is factory's. Each task reads its own range, so
the file must be readable at the same path on every node (a shared file system); on a
local instance it always is.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator

import numpy as np

from factory.cluster.ray_session import ray_session
from factory.errors import FactoryError, RecordError
from factory.features.table_blocks import Block
from factory.features.table_write import BlockResult, Job, encode_block

# The object store of a Ray instance started for a write: the blocks' records pass through it, and
# with less Ray spills them to the disk (1M rows took 40 s with 128 MB, 12 s with this).
OBJECT_STORE_BYTES = 1 << 30


def run_blocks_on_ray(job: Job, workers: int, address: str | None = None) -> Iterator[BlockResult]:
    """The results of ``job``'s blocks in file order, each computed by a Ray Data task (``workers`` at once)."""
    import ray  # deferred: Ray is optional (factory[ray]) and slow to import

    if job.plan.stream:
        raise RecordError(f"--engine ray: {job.plan.path} is not a regular file; its tasks read blocks of a file")
    blocks = list(job.plan.blocks())
    with ray_session(address, cpus=workers, key="--address", object_store_bytes=OBJECT_STORE_BYTES):
        import ray.data  # deferred with ray above

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        items = [{"block": i} for i in range(len(blocks))]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _encode,
            fn_kwargs={"job": job, "blocks": blocks},
            batch_size=1,
            num_cpus=1,
            concurrency=min(workers, len(items)),
        )
        try:
            for batch in dataset.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=workers):
                yield pickle.loads(batch["result"][0])
        except ray.exceptions.RayError as err:
            raise _explained(err) from None


def _encode(batch: dict[str, np.ndarray], job: Job, blocks: list[Block]) -> dict[str, np.ndarray]:
    """A Ray Data task: the blocks of ``batch`` encoded, each result pickled whole."""
    out = np.empty(len(batch["block"]), dtype=object)
    out[:] = [pickle.dumps(encode_block(job, blocks[int(i)]), pickle.HIGHEST_PROTOCOL) for i in batch["block"]]
    return {"result": out}


def _explained(err: BaseException) -> BaseException:
    """A task's own error (a file that cannot be read: ``FactoryError``) as it would be locally; else one line."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, FactoryError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = str(err).strip().splitlines()
    return RecordError(f"--engine ray: a task failed ({text[-1] if text else type(err).__name__})")
