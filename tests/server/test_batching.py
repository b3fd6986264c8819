"""Micro-batching: coalescing, bounds, per-request errors, and correctness under real concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from modeldeploy_server.app import create_app
from modeldeploy_server.batching import MicroBatcher
from modeldeploy_server.errors import Overloaded

from tests.fixtures.models import SavedModel

from .conftest import running, serve_http, settings_for, wait_ready

pytestmark = pytest.mark.anyio


class Recorder:
    """A batch function that sums each row and records the size of every call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, rows: np.ndarray[Any, Any]) -> Sequence[float | BaseException]:
        self.sizes.append(len(rows))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if (rows < 0).any() and len(rows) > 1:
            raise ValueError("negative row in batch")
        return [ValueError(f"negative row {row.tolist()}") if (row < 0).any() else float(row.sum()) for row in rows]


def batcher(fn: Recorder, **kwargs: Any) -> MicroBatcher[float]:
    options: dict[str, Any] = {
        "max_batch_size": 64,
        "max_latency_s": 0.05,
        "max_queue_size": 1000,
        "executor": ThreadPoolExecutor(1, thread_name_prefix="predict"),
    }
    options.update(kwargs)
    return MicroBatcher(fn, **options)


async def test_concurrent_rows_become_one_call() -> None:
    fn = Recorder()
    b = batcher(fn)
    b.start()
    rows = [np.array([i, i + 1.0]) for i in range(20)]
    results = await asyncio.gather(*(b.submit(r) for r in rows))
    await b.stop()
    assert results == [float(r.sum()) for r in rows]
    assert fn.sizes == [20]
    assert fn.threads == {"predict_0"}  # off the event loop


async def test_batches_never_exceed_max_batch_size() -> None:
    fn = Recorder()
    b = batcher(fn, max_batch_size=8)
    b.start()
    rows = [np.array([float(i)]) for i in range(30)]
    results = await asyncio.gather(*(b.submit(r) for r in rows))
    await b.stop()
    assert results == [float(i) for i in range(30)]
    assert max(fn.sizes) == 8
    assert sum(fn.sizes) == 30


async def test_a_lone_row_waits_at_most_max_latency() -> None:
    fn = Recorder()
    b = batcher(fn, max_latency_s=0.02)
    b.start()
    started = time.perf_counter()
    assert await b.submit(np.array([1.0, 2.0])) == 3.0
    elapsed = time.perf_counter() - started
    await b.stop()
    assert 0.015 <= elapsed < 0.5
    assert fn.sizes == [1]


async def test_zero_latency_dispatches_at_once() -> None:
    fn = Recorder()
    b = batcher(fn, max_latency_s=0.0)
    b.start()
    started = time.perf_counter()
    await b.submit(np.array([1.0]))
    assert time.perf_counter() - started < 0.05
    await b.stop()


async def test_waiting_counts_from_arrival_even_while_a_call_runs() -> None:
    fn = Recorder(delay=0.5)
    b = batcher(fn, max_latency_s=0.5, max_batch_size=4)
    b.start()
    started = time.perf_counter()
    first = [asyncio.ensure_future(b.submit(np.array([1.0]))) for _ in range(4)]  # full: goes
    await asyncio.sleep(0.05)
    second = [asyncio.ensure_future(b.submit(np.array([2.0]))) for _ in range(3)]
    await asyncio.gather(*first, *second)
    elapsed = time.perf_counter() - started
    await b.stop()
    assert fn.sizes == [4, 3]
    # The 3 rows arrived at 0.05 s: due at 0.55 s, done at 1.05 s. Counting their wait from the
    # end of the first call (0.5 s) instead would finish them at 1.5 s.
    assert 1.0 <= elapsed < 1.35


async def test_one_bad_row_does_not_fail_its_batch_mates() -> None:
    fn = Recorder()
    b = batcher(fn)
    b.start()
    rows = [np.array([1.0]), np.array([-1.0]), np.array([2.0]), np.array([3.0])]
    results = await asyncio.gather(*(b.submit(r) for r in rows), return_exceptions=True)
    await b.stop()
    assert results[0] == 1.0
    assert isinstance(results[1], ValueError)
    assert "negative row" in str(results[1])
    assert results[2:] == [2.0, 3.0]
    assert fn.sizes[0] == 4  # tried as one batch, then row by row
    assert sorted(fn.sizes[1:]) == [1, 1, 1, 1]


async def test_queue_is_bounded() -> None:
    fn = Recorder(delay=0.2)
    b = batcher(fn, max_queue_size=3, max_batch_size=1, max_latency_s=0.0)
    b.start()
    running_first = asyncio.ensure_future(b.submit(np.array([0.0])))
    await asyncio.sleep(0.05)  # the first row is now inside the model call
    queued = [asyncio.ensure_future(b.submit(np.array([1.0]))) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refused:
        await b.submit(np.array([2.0]))
    assert refused.value.status == 503
    assert await asyncio.gather(running_first, *queued) == [0.0, 1.0, 1.0, 1.0]
    await b.stop()


async def test_cancelled_requests_are_dropped() -> None:
    fn = Recorder()
    b = batcher(fn, max_latency_s=0.05)
    b.start()
    gone = asyncio.ensure_future(b.submit(np.array([5.0])))
    kept = asyncio.ensure_future(b.submit(np.array([6.0])))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == 6.0
    assert fn.sizes == [1]
    await b.stop()


async def test_stop_fails_waiting_rows() -> None:
    fn = Recorder()
    b = batcher(fn, max_latency_s=10.0)
    b.start()
    waiting = asyncio.ensure_future(b.submit(np.array([1.0])))
    await asyncio.sleep(0.01)
    await b.stop()
    with pytest.raises(Overloaded):
        await waiting


async def test_health_answers_while_the_model_is_busy(
    forest_model: SavedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings_for(forest_model, max_latency_ms=0))
    async with running(app) as client:
        predictor = app.state.runtime._predictor
        real = predictor.predict

        def slow(rows: np.ndarray[Any, Any]) -> Any:
            time.sleep(0.5)
            return real(rows)

        monkeypatch.setattr(predictor, "predict", slow)
        predicting = asyncio.ensure_future(client.post("/predict", json={"features": forest_model.rows[0].tolist()}))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        health = await client.get("/health")
        metrics = await client.get("/metrics")
        answered_in = time.perf_counter() - started
        assert not predicting.done()
        assert (await predicting).status_code == 200
    assert health.status_code == metrics.status_code == 200
    assert answered_in < 0.25


def test_concurrent_requests_over_http_each_get_their_own_answer(
    forest_model: SavedModel,
) -> None:
    """Real uvicorn on 127.0.0.1: 1,200 single-row requests, 64 at a time, every answer checked."""
    model = forest_model.model
    rng = np.random.default_rng(7)
    rows = np.concatenate([forest_model.rows, rng.normal(size=(900, 8))])
    expected_labels = model.predict(rows).tolist()
    expected_proba = model.predict_proba(rows).max(axis=1)

    app = create_app(settings_for(forest_model, max_batch_size=32, max_latency_ms=2))
    with serve_http(app) as base_url:
        wait_ready(base_url)
        bodies, metrics = asyncio.run(_post_concurrently(base_url, rows, concurrency=64))

    assert [status for status, _ in bodies] == [200] * len(rows)
    assert [body["prediction"] for _, body in bodies] == expected_labels
    np.testing.assert_allclose([body["probability"] for _, body in bodies], expected_proba)
    calls = _metric(metrics, "modeldeploy_batch_size_count")
    assert _metric(metrics, "modeldeploy_batch_size_sum") == len(rows)
    assert _metric(metrics, "modeldeploy_batch_size_bucket", le="32.0") == calls  # bounded
    assert calls < len(rows) / 4, f"{calls} model calls for {len(rows)} rows: no coalescing"


async def _post_concurrently(
    base_url: str, rows: np.ndarray[Any, Any], concurrency: int
) -> tuple[list[tuple[int, Any]], str]:
    """Every row POSTed to /predict, `concurrency` at a time (aiohttp: httpx is too slow here)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(row: np.ndarray[Any, Any]) -> tuple[int, Any]:
            async with semaphore, session.post("/predict", json={"features": row.tolist()}) as r:
                return r.status, await r.json()

        bodies = await asyncio.gather(*(one(row) for row in rows))
        async with session.get("/metrics") as r:
            metrics = await r.text()
    return list(bodies), metrics


def test_bad_rows_under_concurrency_fail_alone(forest_model: SavedModel) -> None:
    """Valid and invalid rows interleaved: each invalid one gets its 400, the rest their answer."""
    rows = forest_model.rows[:60]
    app = create_app(settings_for(forest_model, max_latency_ms=5))
    with serve_http(app) as base_url:
        wait_ready(base_url)

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                bodies: list[dict[str, Any]] = []
                for i, row in enumerate(rows):
                    bodies.append({"features": row.tolist()[:-1]} if i % 3 == 0 else {"features": row.tolist()})
                return list(await asyncio.gather(*(client.post("/predict", json=b) for b in bodies)))

        responses = asyncio.run(fire())
    expected = forest_model.model.predict(rows).tolist()
    for i, response in enumerate(responses):
        if i % 3 == 0:
            assert response.status_code == 400
            assert response.json()["reason"] == "wrong_feature_count"
        else:
            assert response.status_code == 200
            assert response.json()["prediction"] == expected[i]


def _metric(text: str, name: str, le: str | None = None) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and (le is None or f'le="{le}"' in line):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def test_memory_stays_flat_under_sustained_load(iris_model: SavedModel) -> None:
    """Rounds of mixed good and bad requests: the heap does not grow with the request count."""
    import tracemalloc

    rows = iris_model.rows
    app = create_app(settings_for(iris_model, max_latency_ms=1))

    async def round_of(client: Any, n: int) -> None:
        async def one(i: int) -> None:
            features = rows[i % len(rows)].tolist()
            if i % 5 == 0:
                features = features[:2]  # a 400, counted by reason
            await client.post("/predict", json={"features": features})

        for start in range(0, n, 50):
            await asyncio.gather(*(one(i) for i in range(start, start + 50)))

    async with running(app) as client:
        await round_of(client, 300)  # warm up: label children, caches, pools
        tracemalloc.start()
        try:
            await round_of(client, 600)
            first = tracemalloc.get_traced_memory()[0]
            await round_of(client, 1800)
            second = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert app.state.runtime._batcher.queued == 0
    # Three times the requests, (almost) no more memory: nothing is kept per request.
    assert second - first < 128 * 1024, f"grew by {second - first} bytes"
