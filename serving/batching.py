"""Micro-batching: requests that arrive while a batch is being computed are served together.

The event loop hands each request to :meth:`MicroBatcher.submit` and awaits its future; worker
threads take everything queued (up to ``max_batch``) and compute it in one call, so that one L1
search and one L2 forward pass serve the whole batch. An idle server computes batches of one: no
request ever waits for others to arrive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_STOP = object()


class MicroBatcher(Generic[T, R]):
    def __init__(
        self, handle: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 32, threads: int = 1
    ) -> None:
        self.handle = handle
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"tandem-batch-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: T) -> Future[R]:
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)  # let this thread finish its batch, then stop
                    break
                batch.append(nxt)
            items = [item for item, _ in batch]
            try:
                results = self.handle(items)
            except BaseException as exc:  # the batch failed as a whole: every caller hears it
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
