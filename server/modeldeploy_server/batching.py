"""Adaptive micro-batching: concurrent single rows become one vectorized model call."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

import numpy as np

from modeldeploy_server.errors import Overloaded

R = TypeVar("R")

Row = np.ndarray[Any, Any]
BatchFn = Callable[[np.ndarray[Any, Any]], Sequence[R | BaseException]]
"""Results row by row; an exception in place of a result fails that row only."""


class MicroBatcher(Generic[R]):
    """Queues validated rows and runs them through `batch_fn` in an executor, many at a time.

    A batch is dispatched when it holds `max_batch_size` rows or when its oldest row has waited
    `max_latency_s` since it arrived; rows that queued while the previous call ran count that
    time as waited, so under load batches grow with the arrival rate without adding latency.
    Only one batch runs at a time. If the batch call raises, every row is retried alone so that
    one bad row cannot fail its batch-mates; `batch_fn` may also return an exception in place of
    one row's result. At most `max_queue_size` rows wait; more are refused (503, retry later).
    """

    def __init__(
        self,
        batch_fn: BatchFn[R],
        *,
        executor: Executor,
        max_batch_size: int,
        max_latency_s: float,
        max_queue_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._batch_fn = batch_fn
        self._executor = executor
        self._max_batch = max_batch_size
        self._max_latency = max_latency_s
        self._max_queue = max_queue_size
        self._on_batch = on_batch
        self._queue: deque[tuple[Row, asyncio.Future[R], float]] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._wake_at = 1  # queue length at which a submit wakes the dispatcher
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue:
            _, future, _ = self._queue.popleft()
            if not future.done():
                future.set_exception(Overloaded("server is shutting down", reason="shutting_down"))

    async def submit(self, row: Row) -> R:
        """The model's result for one validated row (1-D array)."""
        if self._task is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if len(self._queue) >= self._max_queue:
            raise Overloaded(f"{len(self._queue)} rows are waiting already; retry later")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((row, future, loop.time()))
        wakeup = self._wakeup
        if wakeup is not None and len(self._queue) >= self._wake_at and not wakeup.done():
            wakeup.set_result(None)
        return await future

    async def _wait(self, timeout: float | None, wake_at: int) -> None:
        """Sleep until `wake_at` rows are queued or `timeout` seconds pass."""
        loop = asyncio.get_running_loop()
        self._wake_at = wake_at
        self._wakeup = loop.create_future()
        handle = None
        if timeout is not None:
            handle = loop.call_later(timeout, _resolve, self._wakeup)
        try:
            await self._wakeup
        finally:
            self._wakeup = None
            if handle is not None:
                handle.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            if not queue:
                await self._wait(None, 1)
                continue
            # Let the batch fill until it is full or its oldest row has waited long enough.
            deadline = queue[0][2] + self._max_latency
            while len(queue) < self._max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._wait(remaining, self._max_batch)
            take = min(len(queue), self._max_batch)
            items = [queue.popleft() for _ in range(take)]
            live = [(row, fut) for row, fut, _ in items if not fut.cancelled()]
            if not live:
                continue
            if self._on_batch is not None:
                self._on_batch(len(live))
            rows = np.stack([row for row, _ in live])
            try:
                results = await loop.run_in_executor(self._executor, self._call, rows)
            except asyncio.CancelledError:
                for _, fut in live:
                    fut.cancel()
                raise
            for (_, fut), result in zip(live, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    def _call(self, rows: np.ndarray[Any, Any]) -> Sequence[R | BaseException]:
        """Runs in the executor: the whole batch, or row by row if the batch raised."""
        try:
            return self._batch_fn(rows)
        except Exception as exc:
            if len(rows) == 1:
                return [exc]
        out: list[R | BaseException] = []
        for i in range(len(rows)):
            try:
                out.append(self._batch_fn(rows[i : i + 1])[0])
            except Exception as exc:
                out.append(exc)
        return out


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
