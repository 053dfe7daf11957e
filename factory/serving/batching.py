"""Dynamic batching for ``factory serve``: concurrent requests merged into one signature call.

The knobs and their defaults are TF Serving's (``BatchingParameters``, with the defaults of
TensorFlow's ``BasicBatchScheduler``):

- ``max_batch_size`` (1000): the most rows one call takes; a request with more is refused.
- ``batch_timeout_micros`` (0): how long the oldest queued request may wait for others to fill
  a batch. At 0 a batch is formed as soon as a thread is free, from whatever has queued up
  meanwhile: under load, requests that arrive while a call runs are merged into the next one.
- ``num_batch_threads`` (the number of cores): batches run at once.
- ``max_enqueued_batches`` (10): queued rows beyond ``max_enqueued_batches * max_batch_size``
  are refused at once (HTTP 503, as TF Serving's "queue is full") rather than left to time out.

Only requests for the same signature whose inputs have the same dtypes and the same shapes
after the batch dimension are merged (TF Serving would need ``pad_variable_length_inputs``
for the others); the rest wait for a batch of their own, in arrival order. When a merged call
fails, each request in it is run alone, so one bad request (an undecodable image, say) fails
alone. No TensorFlow here: the call is any function of numpy arrays.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

Arrays = dict[str, np.ndarray]
# Runs one signature on a batch: (signature name, inputs) -> outputs, all with the batch dimension first.
Run = Callable[[str, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


class QueueFull(Exception):
    """The batching queue holds ``max_enqueued_batches`` batches' worth of rows already."""


class TooLarge(Exception):
    """One request has more rows than ``max_batch_size``."""


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's batching parameters (see the module docstring); ``enabled=False`` runs each request alone."""

    enabled: bool = True
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = os.cpu_count() or 1
    max_enqueued_batches: int = 10

    def problems(self) -> list[str]:
        """What is wrong with these options, one line each naming the option (none: ``[]``)."""
        out = []
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                out.append(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
        if not isinstance(self.batch_timeout_micros, int) or self.batch_timeout_micros < 0:
            out.append(f"--batch-timeout-micros: expected 0 or more, got {self.batch_timeout_micros}")
        return out


@dataclass(eq=False)  # compared by identity
class _Task:
    signature: str
    inputs: Arrays
    rows: int
    key: tuple
    queued: float
    future: Future


def _key(signature: str, inputs: Mapping[str, np.ndarray]) -> tuple:
    return (signature, *sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))


def _rows(inputs: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(inputs.values())).shape[0]) if inputs else 0


class Batcher:
    """Queues requests and runs them in merged batches on ``num_batch_threads`` threads.

    ``submit`` returns a ``concurrent.futures.Future`` of the request's outputs (its rows only).
    ``on_batch(signature, rows, requests)`` is called after each call, for metrics.
    ``close`` lets the queued requests finish and stops the threads.
    """

    def __init__(self, run: Run, options: BatchingOptions, on_batch: Callable[[str, int, int], None] | None = None):
        self.run, self.options = run, options
        self.on_batch = on_batch or (lambda signature, rows, requests: None)
        self._tasks: deque[_Task] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"batch-{i}", daemon=True)
            for i in range(max(1, options.num_batch_threads))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def submit(self, signature: str, inputs: Arrays) -> Future:
        rows = _rows(inputs)
        limit = self.options.max_batch_size
        if self.options.enabled and rows > limit:
            raise TooLarge(f"Task size {rows} is larger than maximum batch size {limit} (--max-batch-size)")
        task = _Task(signature, dict(inputs), rows, _key(signature, inputs), time.monotonic(), Future())
        with self._cond:
            if self._closed:
                raise QueueFull("this version is unloading or the server is shutting down; send the request again")
            if self._queued_rows + rows > self.options.max_enqueued_batches * limit and self._tasks:
                raise QueueFull(
                    "The batch scheduling queue to which this task was submitted is full "
                    f"({self._queued_rows} rows queued; --max-enqueued-batches {self.options.max_enqueued_batches})"
                )
            self._tasks.append(task)
            self._queued_rows += rows
            self._cond.notify()
        task.future.add_done_callback(lambda f: f.cancelled() and self._forget(task))
        return task.future

    def _forget(self, task: _Task) -> None:
        """A request given up before its batch (timed out): out of the queue."""
        with self._cond:
            try:
                self._tasks.remove(task)
            except ValueError:  # taken into a batch meanwhile
                return
            self._queued_rows -= task.rows

    def drain(self) -> None:
        """Run the queued requests without waiting for fuller batches; refuse new ones."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued requests, then stop the threads."""
        self.drain()
        for thread in self._threads:
            thread.join(timeout)

    # -- the batch threads ------------------------------------------------------------------------

    def _take(self) -> list[_Task] | None:
        """The next batch: the oldest task and the later ones that merge with it (None: closed and empty)."""
        options = self.options
        timeout = options.batch_timeout_micros / 1e6 if options.enabled else 0.0
        with self._cond:
            while True:
                if self._tasks:
                    first = self._tasks[0]
                    if not options.enabled:
                        break
                    waited = time.monotonic() - first.queued
                    same = sum(t.rows for t in self._tasks if t.key == first.key)
                    if self._closed or waited >= timeout or same >= options.max_batch_size:
                        break
                    self._cond.wait(timeout - waited)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()
            batch = [self._tasks.popleft()]
            if options.enabled:
                rows, keep = batch[0].rows, deque()
                while self._tasks:
                    task = self._tasks.popleft()
                    if task.key == batch[0].key and rows + task.rows <= options.max_batch_size:
                        batch.append(task)
                        rows += task.rows
                    else:
                        keep.append(task)
                self._tasks = keep
            self._queued_rows -= sum(t.rows for t in batch)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self._execute(batch)

    def _execute(self, batch: list[_Task]) -> None:
        live = [t for t in batch if t.future.set_running_or_notify_cancel()]
        if not live:
            return
        signature = live[0].signature
        try:
            if len(live) == 1:
                merged = live[0].inputs
            else:
                merged = {k: np.concatenate([t.inputs[k] for t in live], axis=0) for k in live[0].inputs}
            outputs = self.run(signature, merged)
        except BaseException as err:  # handed to the waiting requests
            if len(live) == 1:
                live[0].future.set_exception(err)
                self.on_batch(signature, live[0].rows, 1)
                return
            for task in live:  # one bad request must not fail the others merged with it
                self._alone(task)
            return
        self.on_batch(signature, sum(t.rows for t in live), len(live))
        start = 0
        for task in live:
            end = start + task.rows
            task.future.set_result({k: v[start:end] for k, v in outputs.items()})
            start = end

    def _alone(self, task: _Task) -> None:
        try:
            result = dict(self.run(task.signature, task.inputs))
        except BaseException as err:
            task.future.set_exception(err)
        else:
            task.future.set_result(result)
        self.on_batch(task.signature, task.rows, 1)
