"""shared.batching: dynamic batcher and admission bound."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from shared.batching import Admission, DynamicBatcher
from shared.concurrency import CpuPool
from shared.errors import Overloaded, ServiceUnavailable
from shared.metrics import ServiceMetrics


class Recorder:
    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.gate = gate

    def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


@pytest.fixture
def pool() -> CpuPool:
    p = CpuPool(2, name="test-batch")
    yield p  # type: ignore[misc]
    p.shutdown()


async def test_items_arriving_together_share_one_run(pool: CpuPool) -> None:
    rec = Recorder()
    metrics = ServiceMetrics("t")
    b: DynamicBatcher[int, int] = DynamicBatcher(
        "m", rec, pool, max_batch_size=4, max_wait_ms=200, metrics=metrics
    )
    await b.start()
    try:
        out = await asyncio.gather(*(b.submit(i) for i in range(10)))
    finally:
        await b.stop()
    assert [o.value for o in out] == [i * 10 for i in range(10)]
    assert sorted(len(x) for x in rec.batches) == [2, 4, 4]
    assert all(o.batch_size in (2, 4) for o in out)
    assert rec.threads and not any(t == threading.main_thread().name for t in rec.threads)
    assert b.batches_run == 3 and b.items_run == 10 and b.largest_batch == 4
    sample = metrics.batch_size.labels("t", "m")
    assert sample._sum.get() == 10  # type: ignore[attr-defined]


async def test_lone_item_waits_at_most_max_wait(pool: CpuPool) -> None:
    rec = Recorder()
    b: DynamicBatcher[int, int] = DynamicBatcher("m", rec, pool, max_batch_size=8, max_wait_ms=1)
    await b.start()
    try:
        res = await asyncio.wait_for(b.submit(3), 10)
    finally:
        await b.stop()
    assert res.value == 30 and res.batch_size == 1 and res.wait_ms >= 0


async def test_per_item_and_whole_batch_errors(pool: CpuPool) -> None:
    rec = Recorder()
    b: DynamicBatcher[int, int] = DynamicBatcher("m", rec, pool, max_batch_size=4, max_wait_ms=50)
    await b.start()
    try:
        res = await asyncio.gather(b.submit(1), b.submit(-1), return_exceptions=True)
        assert getattr(res[0], "value", None) == 10
        assert isinstance(res[1], ValueError)

        def boom(items: list[int]) -> list[int]:
            raise RuntimeError("model crashed")

        b.run_batch = boom
        with pytest.raises(RuntimeError, match="model crashed"):
            await b.submit(2)

        b.run_batch = lambda items: [1]  # wrong length
        with pytest.raises(RuntimeError, match="results"):
            await asyncio.gather(b.submit(1), b.submit(2))
    finally:
        await b.stop()


async def test_full_queue_is_overloaded_and_stop_fails_waiters(pool: CpuPool) -> None:
    gate = threading.Event()
    rec = Recorder(gate)
    b: DynamicBatcher[int, int] = DynamicBatcher(
        "m", rec, pool, max_batch_size=1, max_wait_ms=0, max_queue=2, retry_after_s=4
    )
    await b.start()
    first = asyncio.create_task(b.submit(0))
    await asyncio.sleep(0.05)  # the collector takes it; the run blocks on the gate
    waiting = [asyncio.create_task(b.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as info:
        await b.submit(3)
    assert info.value.headers["Retry-After"] == "4"
    assert b.depth == 2
    gate.set()
    assert (await first).value == 0
    assert [(await w).value for w in waiting] == [10, 20]
    await b.stop()
    with pytest.raises(ServiceUnavailable):
        await b.submit(5)


async def test_cancelled_caller_is_skipped(pool: CpuPool) -> None:
    gate = threading.Event()
    rec = Recorder(gate)
    b: DynamicBatcher[int, int] = DynamicBatcher("m", rec, pool, max_batch_size=1, max_wait_ms=0)
    await b.start()
    first = asyncio.create_task(b.submit(0))
    await asyncio.sleep(0.05)
    gone = asyncio.create_task(b.submit(1))
    await asyncio.sleep(0.01)
    gone.cancel()
    gate.set()
    assert (await first).value == 0
    assert (await b.submit(2)).value == 20
    await b.stop()
    assert [1] not in rec.batches


def test_admission_bounds_and_releases() -> None:
    adm = Admission(2, retry_after_s=2)
    with adm.slot(), adm.slot():
        with pytest.raises(Overloaded) as info, adm.slot():
            pass
        assert info.value.headers["Retry-After"] == "2"
    assert adm.active == 0
    with pytest.raises(ValueError):
        Admission(0)


async def test_upstream_hint_skips_the_wait(pool: CpuPool) -> None:
    rec = Recorder()
    b: DynamicBatcher[int, int] = DynamicBatcher(
        "m", rec, pool, max_batch_size=8, max_wait_ms=60_000, upstream=lambda: 0
    )
    await b.start()
    try:
        # Nothing else on its way: runs at once instead of waiting a minute.
        res = await asyncio.wait_for(b.submit(1), 10)
    finally:
        await b.stop()
    assert res.value == 10 and res.batch_size == 1


def test_batching_policy_batches_on_an_accelerator_only() -> None:
    from shared.batching import batching_enabled

    assert batching_enabled("auto", "CUDAExecutionProvider") is True
    assert batching_enabled("auto", "CPUExecutionProvider") is False
    assert batching_enabled("auto", None) is False
    assert batching_enabled("on", "CPUExecutionProvider") is True
    assert batching_enabled("off", "CUDAExecutionProvider") is False
