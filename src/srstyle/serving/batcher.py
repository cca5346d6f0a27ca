"""Adaptive batching of model calls across concurrent requests, inside one worker process.

Request threads decode, tile and encode in parallel; every model call goes through :meth:`Batcher.run`.
One batching thread takes the oldest waiting input and everything queued with the same key (model and
input shape), concatenates them along N, makes one onnxruntime call and hands each request its own slice
back (its own future: a tile never reaches another request). It waits for more inputs only while other
requests are in flight in this process, and never longer than ``max_latency_ms`` after the oldest input
arrived, so a lone request is never delayed and a busy server fills its batches. Nothing is ever refused:
past the latency budget the batch simply runs with what it has (no 503 under load).

``max_batch_size=1`` turns batching off: each request thread calls the model itself (onnxruntime releases
the GIL, so calls of concurrent requests still overlap).
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Hashable

import numpy as np


@dataclass
class _Item:
    key: Hashable
    fn: Callable[[np.ndarray], np.ndarray]
    x: np.ndarray
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


class _Ticket:
    def __init__(self, batcher: "Batcher"):
        self.batcher, self.pending = batcher, True

    def done(self) -> None:
        if self.pending:
            self.pending = False
            self.batcher._arrived()

    def run_many(self, key: Hashable, fn, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Submit (no longer expected: batches stop waiting for this request), then wait for the outputs."""
        if not self.batcher.enabled:
            self.done()
            return self.batcher.run_many(key, fn, xs)
        items = [_Item((key, x.shape[1:]), fn, x) for x in xs]
        with self.batcher._cond:
            self.batcher._waiting.extend(items)
            if self.pending:
                self.pending = False
                self.batcher._expected -= 1
            self.batcher._cond.notify_all()
        return [it.future.result() for it in items]


class Batcher:
    def __init__(self, max_batch_size: int = 8, max_latency_ms: float = 50):
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_latency = max_latency_ms / 1000.0
        self._cond = threading.Condition()
        self._waiting: list[_Item] = []
        self._expected = 0  # requests in this process that will submit inputs soon (decoding, tiling)
        self.calls = 0    # model calls made (batches), and inputs run: for /models and the benchmark
        self.inputs = 0
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="srstyle-batcher", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1

    @contextlib.contextmanager
    def expecting(self):
        """A request that is decoding/tiling and will submit inputs: waiting batches may wait for it."""
        ticket = _Ticket(self)
        with self._cond:
            self._expected += 1
        try:
            yield ticket
        finally:
            ticket.done()

    def _arrived(self) -> None:
        with self._cond:
            self._expected -= 1
            self._cond.notify_all()

    def run_many(self, key: Hashable, fn: Callable[[np.ndarray], np.ndarray], xs: list[np.ndarray]) -> list[np.ndarray]:
        """``[fn(x) for x in xs]`` (each x [1, ...]), the calls possibly batched with other requests' inputs."""
        if not self.enabled:
            with self._cond:
                self.calls += len(xs)
                self.inputs += len(xs)
            return [fn(x) for x in xs]
        items = [_Item((key, x.shape[1:]), fn, x) for x in xs]
        with self._cond:
            self._waiting.extend(items)
            self._cond.notify_all()
        return [it.future.result() for it in items]

    def _take(self) -> list[_Item]:
        with self._cond:
            while not self._waiting:
                self._cond.wait()
            head = self._waiting[0]
            deadline = head.arrived + self.max_latency
            while True:
                same = [it for it in self._waiting if it.key == head.key][: self.max_batch_size]
                # requests still decoding may add an input of this key: wait for them, within the budget
                remaining = deadline - time.monotonic()
                if len(same) >= self.max_batch_size or self._expected <= 0 or remaining <= 0:
                    break
                self._cond.wait(remaining)
            taken = set(map(id, same))
            self._waiting = [it for it in self._waiting if id(it) not in taken]
            return same

    def _loop(self) -> None:
        while True:
            batch = self._take()
            try:
                if len(batch) == 1:
                    outputs = [batch[0].fn(batch[0].x)]
                else:
                    result = batch[0].fn(np.concatenate([it.x for it in batch], axis=0))
                    outputs = [result[i : i + 1] for i in range(len(batch))]
            except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error, the loop lives on
                for it in batch:
                    it.future.set_exception(exc)
                continue
            with self._cond:
                self.calls += 1
                self.inputs += len(batch)
            for it, out in zip(batch, outputs):
                it.future.set_result(out)
