"""The batcher of ``factory serve`` with real threads: what merges, what does not, and what is refused."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from factory.serving.batching import Batcher, BatchingOptions, QueueFull, TooLarge


class Model:
    """Doubles ``x``; the first call waits for ``release`` so that others queue behind it meanwhile."""

    def __init__(self, hold: bool = True):
        self.calls: list[int] = []
        self.started, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, signature, inputs):
        self.started.set()
        assert self.release.wait(30)
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative input")
        self.calls.append(len(x))
        return {"y": x * 2}


def rows(*values) -> dict:
    return {"x": np.array(values, dtype=np.float32).reshape(len(values), 1)}


def test_requests_that_queue_during_a_call_are_merged_into_the_next_and_answered_with_their_own_rows():
    model = Model()
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1))
    first = batcher.submit("s", rows(1))
    assert model.started.wait(30)
    later = [batcher.submit("s", rows(i, i + 0.5)) for i in range(2, 6)]
    assert batcher.queued_rows == 8
    model.release.set()
    assert first.result(30)["y"].ravel().tolist() == [2]
    for i, future in enumerate(later, start=2):
        assert future.result(30)["y"].ravel().tolist() == [2 * i, 2 * i + 1]
    assert model.calls == [1, 8]
    batcher.close()


def test_a_bad_request_merged_with_good_ones_fails_alone():
    model = Model()
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1))
    batcher.submit("s", rows(1))
    assert model.started.wait(30)
    good, bad, other = batcher.submit("s", rows(2)), batcher.submit("s", rows(-1)), batcher.submit("s", rows(3))
    model.release.set()
    assert good.result(30)["y"].item() == 4 and other.result(30)["y"].item() == 6
    with pytest.raises(ValueError, match="negative"):
        bad.result(30)
    batcher.close()


def test_signatures_and_shapes_that_differ_are_not_merged_and_the_batch_size_is_a_limit():
    model = Model()
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1, max_batch_size=3))
    batcher.submit("s", rows(1))
    assert model.started.wait(30)
    wide = batcher.submit("s", {"x": np.ones((1, 2), np.float32)})
    other = batcher.submit("t", rows(1))
    same = [batcher.submit("s", rows(1)) for _ in range(4)]
    model.release.set()
    for future in [wide, other, *same]:
        future.result(30)
    assert sorted(model.calls) == [1, 1, 1, 1, 3]  # the first, wide, other, four rows of "s" in 3 + 1
    with pytest.raises(TooLarge, match="maximum batch size 3"):
        batcher.submit("s", rows(1, 2, 3, 4))
    batcher.close()


def test_a_full_queue_refuses_at_once_and_batching_off_runs_each_request_alone():
    model = Model()
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1, max_batch_size=2, max_enqueued_batches=1))
    batcher.submit("s", rows(1))
    assert model.started.wait(30)
    batcher.submit("s", rows(1, 2))
    with pytest.raises(QueueFull, match="full"):
        batcher.submit("s", rows(3))
    model.release.set()
    batcher.close()

    model = Model(hold=False)
    batcher = Batcher(model, BatchingOptions(enabled=False, num_batch_threads=1))
    futures = [batcher.submit("s", rows(i)) for i in range(5)]
    assert [f.result(30)["y"].item() for f in futures] == [0, 2, 4, 6, 8]
    assert model.calls == [1] * 5
    batcher.close()


def test_drain_runs_what_waits_for_a_fuller_batch_at_once_and_a_cancelled_request_leaves_the_queue():
    model = Model(hold=False)
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1, batch_timeout_micros=600_000_000))
    given_up, waiting = batcher.submit("s", rows(1)), batcher.submit("s", rows(2))
    assert given_up.cancel() and batcher.queued_rows == 1
    batcher.drain()
    assert waiting.result(30)["y"].item() == 4 and model.calls == [1]
    with pytest.raises(QueueFull, match="unloading or the server is shutting down"):
        batcher.submit("s", rows(3))
    batcher.close()


def test_options_name_what_is_wrong():
    assert BatchingOptions().problems() == []
    problems = BatchingOptions(max_batch_size=0, batch_timeout_micros=-1, num_batch_threads=0).problems()
    assert [p.split(":")[0] for p in problems] == ["--max-batch-size", "--num-batch-threads", "--batch-timeout-micros"]
