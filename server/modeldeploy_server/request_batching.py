"""Concurrent multi-row requests share one model call.

A model call has a fixed cost (a RandomForest's ~4 ms per call whatever the row count), so batch
requests that arrive while the model is busy are stacked into one call of at most `max_rows` rows
and the outputs are split back. Nothing waits when the model is idle: a request goes at once, and
only what queued behind a running call is merged. If a merged call raises, each request runs
alone, so one bad request never fails the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from modeldeploy_server.formats import Outputs

Call = Callable[[np.ndarray[Any, Any]], Outputs]


def split(outputs: Outputs, sizes: list[int]) -> list[Outputs]:
    out, start = [], 0
    for n in sizes:
        proba = outputs.proba[start:start + n] if outputs.proba is not None else None
        out.append(Outputs(labels=outputs.labels[start:start + n], proba=proba))
        start += n
    return out


class RequestBatcher:
    def __init__(self, call: Call, executor: Executor, max_rows: int,
                 on_call: Callable[[int], None] | None = None) -> None:
        self._call = call
        self._executor = executor
        self._max_rows = max_rows
        self._on_call = on_call
        self._queue: deque[tuple[np.ndarray[Any, Any], asyncio.Future[Outputs]]] = deque()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, rows: np.ndarray[Any, Any]) -> Outputs:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.append((rows, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="request-batcher")
        return await future

    def _take(self) -> list[tuple[np.ndarray[Any, Any], asyncio.Future[Outputs]]]:
        items = [self._queue.popleft()]
        total = len(items[0][0])
        while self._queue and total + len(self._queue[0][0]) <= self._max_rows:
            rows, fut = self._queue.popleft()
            items.append((rows, fut))
            total += len(rows)
        return [(rows, fut) for rows, fut in items if not fut.cancelled()]

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            items = self._take()
            if not items:
                continue
            stacked = items[0][0] if len(items) == 1 else np.concatenate([rows for rows, _ in items])
            if self._on_call is not None:
                self._on_call(len(stacked))
            try:
                outputs = await loop.run_in_executor(self._executor, self._call, stacked)
            except Exception as exc:
                if len(items) == 1:
                    _settle(items[0][1], exc)
                    continue
                for rows, fut in items:  # isolate the request that made the merged call fail
                    try:
                        _settle(fut, await loop.run_in_executor(self._executor, self._call, rows))
                    except Exception as alone:
                        _settle(fut, alone)
                continue
            for (_, fut), part in zip(items, split(outputs, [len(rows) for rows, _ in items]), strict=True):
                _settle(fut, part)


def _settle(future: asyncio.Future[Outputs], result: Outputs | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
