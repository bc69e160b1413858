"""Dynamic batching: requests that arrive together are run as one model call.

A :class:`DynamicBatcher` owns a bounded asyncio queue. ``submit(item)`` enqueues one item and
awaits its result; a single collector task takes the first waiting item, keeps collecting for
at most ``max_wait_ms`` (or until ``max_batch_size`` items are in hand), then runs the blocking
``run_batch(items)`` once on a :class:`~shared.concurrency.CpuPool` thread, never on the event
loop. While a batch runs, new requests pile up in the queue, so under load batches grow on their
own. A full queue refuses at once with :class:`~shared.errors.Overloaded` (503 + Retry-After).

:class:`Admission` bounds the requests a service holds at once (preprocessing included), so the
work that happens *before* an item reaches the queue is bounded as well.

Metrics, when a :class:`~shared.metrics.ServiceMetrics` is given: ``irmi_batch_size{model=name}``
(histogram of batch sizes) and ``irmi_queue_depth{queue=name}`` (items waiting).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from shared.concurrency import CpuPool
from shared.errors import Overloaded, ServiceUnavailable
from shared.metrics import ServiceMetrics

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: ``run_batch`` returns one entry per item: its result, or the exception for that item alone.
BatchFn = Callable[[list[ItemT]], Sequence[ResultT | BaseException]]


@dataclass(frozen=True)
class Batched(Generic[ResultT]):
    """One item's result and how it was served."""

    value: ResultT
    batch_size: int
    wait_ms: float  # from submit() until its batch started running
    run_ms: float  # duration of the whole batch's run_batch call


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[Batched[ResultT]]
    enqueued: float


class DynamicBatcher(Generic[ItemT, ResultT]):
    """Collect concurrently submitted items into batches and run each batch once, off the loop.

    ``max_concurrent_batches`` batches may run at once (1 suits a model that already uses every
    core). ``upstream``, when given, counts the items still being prepared that will be
    submitted soon; when it is 0 the batcher runs what it has at once instead of waiting out
    ``max_wait_ms`` (a lone request pays no batching delay). ``start()`` must be awaited
    inside the running loop before ``submit``; ``stop()`` fails whatever is still waiting with
    ``service_unavailable``.
    """

    def __init__(
        self,
        name: str,
        run_batch: BatchFn[ItemT, ResultT],
        pool: CpuPool,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 5.0,
        max_queue: int = 64,
        max_concurrent_batches: int = 1,
        retry_after_s: int = 1,
        metrics: ServiceMetrics | None = None,
        upstream: Callable[[], int] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_concurrent_batches < 1:
            raise ValueError("max_batch_size, max_queue and max_concurrent_batches must be >= 1")
        self.name = name
        self.run_batch = run_batch
        self.pool = pool
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.max_queue = max_queue
        self.max_concurrent_batches = max_concurrent_batches
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.upstream = upstream
        self.batches_run = 0
        self.items_run = 0
        self.largest_batch = 0
        self._queue: asyncio.Queue[_Pending[ItemT, ResultT]] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        return self._collector is not None and not self._collector.done()

    async def start(self) -> None:
        if self.started:
            return
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._slots = asyncio.Semaphore(self.max_concurrent_batches)
        self._collector = asyncio.create_task(self._collect_forever(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with suppress(asyncio.CancelledError):
                await self._collector
            self._collector = None
        for task in list(self._running):
            with suppress(asyncio.CancelledError, Exception):
                await task
        if self._queue is not None:
            while not self._queue.empty():
                pending = self._queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(ServiceUnavailable("The service is stopping."))
        self._set_depth()

    # ------------------------------------------------------------------ API

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, item: ItemT) -> Batched[ResultT]:
        """Queue one item and wait for its batch; Overloaded at once if the queue is full."""
        if self._queue is None or not self.started:
            raise ServiceUnavailable(f"The {self.name} batcher is not running.")
        loop = asyncio.get_running_loop()
        pending: _Pending[ItemT, ResultT] = _Pending(item, loop.create_future(), loop.time())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise Overloaded(
                f"The {self.name} queue is full ({self.max_queue} waiting); retry shortly.",
                retry_after=self.retry_after_s,
                details={"queue": self.name, "max_queue": self.max_queue},
            ) from None
        self._set_depth()
        return await pending.future

    # ------------------------------------------------------------------ internals

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.metrics.service, self.name).set(self.depth)

    async def _collect_forever(self) -> None:
        assert self._queue is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        while True:
            # Wait for a free run slot first: while a batch runs, requests accumulate.
            await self._slots.acquire()
            try:
                batch = await self._collect(loop)
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Pending[ItemT, ResultT]]:
        assert self._queue is not None
        while True:
            first = await self._queue.get()
            if not first.future.done():  # a cancelled caller leaves a done future behind
                break
        batch = [first]
        deadline = first.enqueued + self.max_wait_s
        try:
            while len(batch) < self.max_batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or (self.upstream is not None and self.upstream() <= 0):
                        break  # out of time, or nothing else on its way: run what we have
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if not nxt.future.done():
                    batch.append(nxt)
        except BaseException:  # cancelled by stop(): nobody may be left waiting forever
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(ServiceUnavailable("The service is stopping."))
            raise
        self._set_depth()
        return batch

    async def _run(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            t0 = time.perf_counter()
            try:
                results: Sequence[ResultT | BaseException] = await self.pool.run(
                    self.run_batch, [p.item for p in batch]
                )
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"{self.name}: run_batch returned {len(results)} results "
                        f"for {len(batch)} items"
                    )
            except Exception as exc:  # the whole batch failed: every caller gets the error
                results = [exc] * len(batch)
            run_ms = (time.perf_counter() - t0) * 1000.0
            self.batches_run += 1
            self.items_run += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            if self.metrics is not None:
                self.metrics.batch_size.labels(self.metrics.service, self.name).observe(len(batch))
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    wait_ms = (started - pending.enqueued) * 1000.0
                    pending.future.set_result(Batched(result, len(batch), wait_ms, run_ms))
        finally:
            self._slots.release()


@dataclass(eq=False)
class Admission:
    """Bound the requests (or jobs) a service works on at once; refuse the rest with
    Overloaded (503 + Retry-After). The one admission mechanism of every service.

    Use it on the event loop only (it is a plain counter, not thread-safe). Either as a block::

        with admission.slot():
            ...  # decode, preprocess, batch, postprocess

    or as a :class:`Ticket` taken before the body is read and handed over to the job that ends
    later (``ticket.transfer()``; the job calls ``ticket.release()`` when it ends).
    ``retry_after_s`` may be a function, for a Retry-After that follows the load.
    """

    limit: int
    name: str = "requests"
    retry_after_s: int | Callable[[], int] = 1
    metrics: ServiceMetrics | None = None
    on_change: Callable[[], None] | None = None
    active: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be >= 1")

    def retry_after(self) -> int:
        r = self.retry_after_s
        return r() if callable(r) else r

    def reserve(self, count: int = 1) -> Ticket:
        """Take ``count`` places now or raise Overloaded."""
        if self.active + count > self.limit:
            raise Overloaded(
                f"The service is at capacity ({self.limit} requests in flight); retry shortly.",
                retry_after=self.retry_after(),
                details={"queue": self.name, "limit": self.limit, "active": self.active},
            )
        self.active += count
        self._changed()
        return Ticket(self, count)

    @contextmanager
    def slot(self, count: int = 1) -> Iterator[None]:
        ticket = self.reserve(count)
        try:
            yield
        finally:
            ticket.release()

    def _give_back(self, count: int) -> None:
        self.active -= count
        self._changed()

    def _changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.metrics.service, self.name).set(self.active)
        if self.on_change is not None:
            self.on_change()


class Ticket:
    """Places held in an :class:`Admission`, given back once by :meth:`release`."""

    def __init__(self, admission: Admission, count: int) -> None:
        self._admission = admission
        self._count = count
        self.held = True
        self.transferred = False

    def transfer(self) -> None:
        """The caller hands the places over: only the new owner's release gives them back."""
        self.transferred = True

    def release(self, *, owner: bool = False) -> None:
        """Give the places back (a no-op once transferred, unless ``owner``; idempotent)."""
        if self.held and (owner or not self.transferred):
            self.held = False
            self._admission._give_back(self._count)


BatchingPolicy = Literal["auto", "on", "off"]


def batching_enabled(policy: BatchingPolicy, provider: str | None) -> bool:
    """Whether to batch: ``on``/``off`` as said; ``auto`` batches on an accelerator (one run of
    N items costs little more than one of 1) and not on the CPU, where a batch of N costs N
    runs and its FIFO only makes the first requests wait for the last (measured: bench/)."""
    if policy == "auto":
        return provider is not None and provider != "CPUExecutionProvider"
    return policy == "on"
