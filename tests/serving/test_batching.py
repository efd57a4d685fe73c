"""Micro-batching: queued requests share one call, every caller gets its own answer."""

from __future__ import annotations

import threading
import time

import pytest

from serving.batching import MicroBatcher


def test_requests_queued_during_a_batch_are_served_together_and_in_order():
    sizes: list[int] = []
    gate = threading.Event()

    def handle(items):
        gate.wait(5)  # the first batch blocks until every request is queued
        sizes.append(len(items))
        return [x * 10 for x in items]

    batcher = MicroBatcher(handle, max_batch=8)
    futures = [batcher.submit(n) for n in range(20)]
    time.sleep(0.1)
    gate.set()
    assert [f.result(timeout=5) for f in futures] == [n * 10 for n in range(20)]
    assert max(sizes) == 8 and sum(sizes) == 20 and len(sizes) >= 3
    sizes.clear()
    assert batcher.submit(7).result(timeout=5) == 70  # an idle batcher does not wait for company
    assert sizes == [1]
    batcher.close()


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on():
    def handle(items):
        if -1 in items:
            raise ValueError("bad batch")
        return items

    batcher = MicroBatcher(handle, max_batch=1)
    bad = batcher.submit(-1)
    good = batcher.submit(3)
    with pytest.raises(ValueError, match="bad batch"):
        bad.result(timeout=5)
    assert good.result(timeout=5) == 3
    batcher.close()
