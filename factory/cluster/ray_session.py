"""``ray_session``: this process joined to Ray for a block, the way every ``factory`` command joins it.

A Ray instance of its own on this machine (no dashboard, quiet, a small object store), or the
cluster at an address; one this process already joined is used as it is, and left joined.
Ray is optional (``factory[ray]``) and imported only when a session starts.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

from factory.errors import FactoryError

# Object store of a Ray instance started here: the tasks exchange configs, results and the pass's parts.
OBJECT_STORE_BYTES = 128 * 2**20


@contextlib.contextmanager
def ray_session(
    address: str | None, cpus: int, key: str = "cluster.address", object_store_bytes: int = OBJECT_STORE_BYTES
) -> Iterator[str | None]:
    """This process joined to Ray for the block; yields where (for a log line), None for the caller's own connection.

    With Ray already initialized (the caller's connection) it is used and not ended. Otherwise,
    ``address`` None starts a Ray instance of its own on this machine (``cpus`` CPUs, no
    dashboard, the workers' output kept out of this process's), stopped after the block; an
    address joins the cluster there, left after the block. ``key`` is the option or config key
    that named the address, for the ``FactoryError`` raised when no cluster answers there;
    ``object_store_bytes`` the object store of an instance started here.
    SIGINT and SIGTERM handlers (``ray.init`` replaces them) are restored afterwards.
    """
    import ray  # deferred: Ray is optional (factory[ray]) and slow to import

    if ray.is_initialized():  # the caller's own connection: used, not ended
        yield None
        return
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # ray.init replaces them
    quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        ray.init(address="local", num_cpus=cpus, object_store_memory=object_store_bytes, **quiet)
        where = f"a Ray instance of its own ({cpus} CPUs)"
    else:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as err:
            _restore(handlers)
            local = f"set {key}=null" if not key.startswith("-") else f"leave {key} out"
            raise FactoryError(
                f"{key}: no Ray cluster answers at {address} ({first_line(err)}); start one "
                f"there (ray start --head), fix the address, or {local} for a local instance"
            ) from None
        where = f"the Ray cluster at {address}"
    try:
        yield where
    finally:
        ray.shutdown()
        _restore(handlers)


def _restore(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
