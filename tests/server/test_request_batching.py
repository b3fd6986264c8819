"""Concurrent multi-row requests share model calls; every request still gets exactly its own rows' outputs."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from modeldeploy_server.formats import Outputs
from modeldeploy_server.request_batching import RequestBatcher


class SlowModel:
    """Doubles its input; slow enough that requests queue behind a running call; counts calls."""

    def __init__(self, poison: float | None = None) -> None:
        self.calls: list[int] = []
        self.poison = poison
        self.lock = threading.Lock()

    def __call__(self, rows: np.ndarray[Any, Any]) -> Outputs:
        time.sleep(0.02)
        with self.lock:
            self.calls.append(len(rows))
        if self.poison is not None and np.any(rows == self.poison):
            raise ValueError("poisoned row")
        return Outputs(labels=rows[:, 0] * 2, proba=np.column_stack([rows[:, 0], 1 - rows[:, 0]]))


async def run(model: SlowModel, requests: list[np.ndarray[Any, Any]], max_rows: int = 1000) -> list[Any]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        batcher = RequestBatcher(model, executor, max_rows)
        return await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)


def request(i: int, n: int) -> np.ndarray[Any, Any]:
    return np.full((n, 3), float(i)) + np.arange(n)[:, None] / 1000


def test_concurrent_requests_are_merged_and_split_back_exactly() -> None:
    model = SlowModel()
    reqs = [request(i, 100) for i in range(20)]
    results = asyncio.run(run(model, reqs))
    for req, out in zip(reqs, results, strict=True):
        assert isinstance(out, Outputs)
        np.testing.assert_array_equal(out.labels, req[:, 0] * 2)
        assert out.proba is not None and out.proba.shape == (100, 2)
        np.testing.assert_array_equal(out.proba[:, 0], req[:, 0])
    assert len(model.calls) < len(reqs)  # merged: fewer model calls than requests
    assert sum(model.calls) == 20 * 100 and max(model.calls) <= 1000


def test_row_budget_bounds_a_merged_call_but_never_splits_a_request() -> None:
    model = SlowModel()
    results = asyncio.run(run(model, [request(i, 300) for i in range(6)] + [request(9, 1500)], max_rows=700))
    assert all(isinstance(r, Outputs) for r in results)
    assert max(model.calls) == 1500 and all(c <= 700 for c in model.calls if c != 1500)


def test_a_failing_request_does_not_fail_its_batch_mates() -> None:
    model = SlowModel(poison=7.0)
    reqs = [request(i, 10) for i in range(12)]
    results = asyncio.run(run(model, reqs))
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [7]
    assert isinstance(results[7], ValueError)
    for i, out in enumerate(results):
        if i != 7:
            np.testing.assert_array_equal(out.labels, reqs[i][:, 0] * 2)


def test_an_idle_model_answers_a_lone_request_at_once() -> None:
    model = SlowModel()
    (out,) = asyncio.run(run(model, [request(1, 5)]))
    assert isinstance(out, Outputs) and model.calls == [5]  # alone, not held back for batch-mates


@pytest.mark.parametrize("n", [1, 3])
def test_cancelled_requests_are_dropped(n: int) -> None:
    async def scenario() -> list[int]:
        model = SlowModel()
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = RequestBatcher(model, executor, 1000)
            first = asyncio.ensure_future(batcher.submit(request(0, 4)))
            await asyncio.sleep(0)
            doomed = [asyncio.ensure_future(batcher.submit(request(1, 4))) for _ in range(n)]
            await asyncio.sleep(0)
            for d in doomed:
                d.cancel()
            await first
            return model.calls

    assert asyncio.run(scenario()) == [4]
