"""Exam jobs: admission, a bounded worker pool, cancellation, eviction.

Nothing here knows HTTP. An exam is admitted (or refused with :class:`Overloaded`), waits for
one of ``workers`` slots, then runs its views one after the other through the pipeline on the
worker pool, so the event loop never blocks. Each exam's state and event log is an
:class:`~bc_service.jobs.ExamJob`.

Event log of an exam (ids 1, 2, 3, ... in order):

* ``accepted``: :class:`ExamAccepted` (always id 1: carries the exam id);
* ``progress``: :class:`ProgressEvent`, ``queued`` first (0 %), then each pipeline stage of
  each view as it completes (``decode``: the validity gate on the decoded image, ...
  ``classify``), the views one after the other, then ``combine`` at 100 %;
* ``error``: the error envelope, only when the exam failed;
* ``result``: the :class:`Exam` (same model as ``GET /v1/exams/{id}``), exactly once, always
  last, whatever the final status (``succeeded``, ``failed`` or ``cancelled``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter

from bc_service.jobs import ExamCancelled, ExamJob, StoredEvent, now_iso
from shared.batching import Admission, Ticket
from shared.concurrency import CpuPool
from shared.contracts.mammo import ExamAccepted, ExamResult, ExamStatus, ProgressEvent, ViewResult
from shared.errors import ErrorEnvelope, IRMIError, Overloaded, ProcessingFailed
from shared.metrics import ServiceMetrics

__all__ = ["ExamJob", "ExamManager", "PipelineLike", "StoredEvent", "add_decode_time"]

log = logging.getLogger("irmi.bc.exams")

PIPELINE_SHARE = 95.0  # percent of the exam for the views' stages; the rest is `combine`


class PipelineLike(Protocol):
    """What the job machinery needs of :class:`bc_service.pipeline.MammoPipeline`."""

    def screen(self, view: Any) -> None:
        """Raise NotAMammogram (or InvalidImage) for a view refused before any job runs."""

    def run_view(self, view: Any, progress: Callable[[str, float], None]) -> ViewResult: ...

    def combine(self, views: list[ViewResult]) -> ExamResult: ...


class ExamManager:
    """Owns every exam of this replica. Create and use it on the event loop."""

    def __init__(
        self,
        pipeline: PipelineLike,
        *,
        workers: int = 2,
        max_queued: int = 8,
        ttl_seconds: float = 900.0,
        max_exams: int = 200,
        urls: Callable[[str], tuple[str, str]] | None = None,
        metrics: ServiceMetrics | None = None,
        stage_delay_s: float = 0.0,
    ) -> None:
        self.pipeline = pipeline
        self.workers = max(1, workers)
        self.max_queued = max(0, max_queued)
        self.ttl_seconds = ttl_seconds
        self.max_exams = max(1, max_exams)
        self.urls = urls or (lambda i: (f"/v1/exams/{i}", f"/v1/exams/{i}/events"))
        self.metrics = metrics
        self.stage_delay_s = stage_delay_s
        self._pool = CpuPool(self.workers, name="bc-exam")
        self._slots = asyncio.Semaphore(self.workers)
        # Admitted and not finished: queued + running (exams and predicts).
        self._admission = Admission(
            self.capacity, "exams", retry_after_s=self.retry_after, on_change=self._gauges
        )
        self._running = 0
        self._exams: OrderedDict[str, ExamJob] = OrderedDict()
        self._avg_seconds = 10.0  # running mean of a job's duration, for Retry-After
        self._sweeper: asyncio.Task[None] | None = None
        self._exam_counter: Counter | None = None
        if metrics is not None:
            self._exam_counter = Counter(
                "irmi_bc_exams_total",
                "Exams by final status.",
                ["status"],
                registry=metrics.registry,
            )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._sweeper is None:
            interval = max(0.5, min(self.ttl_seconds / 2.0, 30.0))
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(interval))

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    @property
    def ready(self) -> bool:
        """Started: its sweeper runs (the pipeline was warmed before the manager was made)."""
        return self._sweeper is not None and not self._sweeper.done()

    async def stop(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for job in self._exams.values():
            job.cancel_flag.set()
        self._pool.shutdown()

    # ------------------------------------------------------------------ admission

    @property
    def capacity(self) -> int:
        return self.workers + self.max_queued

    @property
    def active(self) -> int:
        return self._admission.active

    def retry_after(self) -> int:
        waves = math.ceil((self.active - self.workers + 1) / self.workers)
        return int(min(120, max(1, math.ceil(self._avg_seconds * max(1, waves)))))

    def reserve(self) -> Ticket:
        """Take a place now or raise :class:`Overloaded` (503 + Retry-After)."""
        try:
            return self._admission.reserve()
        except Overloaded:
            if self.metrics is not None:
                self.metrics.errors.labels(self.metrics.service, "overloaded").inc()
            raise

    def _release(self, job: ExamJob) -> None:
        if job.ticket is not None:
            job.ticket.release(owner=True)

    def _gauges(self) -> None:
        if self.metrics is not None:
            svc = self.metrics.service
            waiting = self.active - self._running
            self.metrics.queue_depth.labels(svc, "exams_waiting").set(waiting)
            self.metrics.queue_depth.labels(svc, "exams_running").set(self._running)

    # ------------------------------------------------------------------ exams

    def submit(
        self,
        views: list[Any],
        decode_ms: dict[str, float],
        started_mono: float | None = None,
        admission: Ticket | None = None,
    ) -> ExamJob:
        """Start an exam on a reserved place (or admit it now, or raise Overloaded)."""
        self.sweep()
        if admission is None or not admission.held:
            admission = self.reserve()
        admission.transfer()  # the job releases it when it ends
        job = ExamJob(
            id=uuid.uuid4().hex,
            views=list(views),
            decode_ms=dict(decode_ms),
            started_mono=started_mono if started_mono is not None else time.monotonic(),
            ticket=admission,
        )
        self._exams[job.id] = job
        status_url, events_url = self.urls(job.id)
        accepted = ExamAccepted(
            id=job.id, status="queued", status_url=status_url, events_url=events_url
        )
        job.emit("accepted", accepted.model_dump_json())
        self._progress(job, "queued", None, 0.0)
        job.task = asyncio.get_running_loop().create_task(self._run(job))
        return job

    def get(self, exam_id: str) -> ExamJob | None:
        return self._exams.get(exam_id)

    def cancel(self, job: ExamJob) -> None:
        """Cancel now: the exam turns `cancelled` at once; a running pipeline stops at its next
        stage boundary and its output is dropped."""
        if job.terminal:
            return
        job.cancel_flag.set()
        if job.status == "queued" and job.task is not None:
            # Still waiting for a slot: nothing runs in a thread yet, free its place now.
            job.task.cancel()
            self._release(job)
        self._finish(job, "cancelled")

    def forget(self, job: ExamJob) -> None:
        self._exams.pop(job.id, None)

    def sweep(self) -> int:
        """Evict finished exams past their TTL, then the oldest finished beyond ``max_exams``."""
        now = time.monotonic()
        gone = [
            j.id
            for j in self._exams.values()
            if j.finished_mono is not None and now - j.finished_mono > self.ttl_seconds
        ]
        for exam_id in gone:
            del self._exams[exam_id]
        excess = len(self._exams) - self.max_exams
        if excess > 0:
            finished = [j for j in self._exams.values() if j.terminal]
            finished.sort(key=lambda j: j.finished_mono or 0.0)
            for j in finished[:excess]:
                del self._exams[j.id]
                gone.append(j.id)
        return len(gone)

    def __len__(self) -> int:
        return len(self._exams)

    # ------------------------------------------------------------------ running

    def _progress(self, job: ExamJob, stage: str, view: str | None, percent: float) -> None:
        if job.terminal:
            return
        job.percent = max(job.percent, round(min(100.0, percent), 2))
        elapsed = round(job.elapsed_ms(), 1)
        ev = ProgressEvent(stage=stage, view=view, percent=job.percent, elapsed_ms=elapsed)
        job.emit("progress", ev.model_dump_json())

    def _on_view_progress(
        self, job: ExamJob, index: int, view_id: str, stage: str, fraction: float
    ) -> None:
        n = max(1, job.n_views)
        done = index + min(1.0, max(0.0, fraction))
        self._progress(job, stage, view_id, PIPELINE_SHARE * done / n)

    def _work(self, job: ExamJob, loop: asyncio.AbstractEventLoop) -> ExamResult | None:
        """Worker thread: every view through the pipeline, then combine. None if cancelled."""
        try:
            results: list[ViewResult] = []
            for index, view in enumerate(job.views):
                self._check(job)
                view_id = str(view.view_id)

                def progress(
                    stage: str, fraction: float, _i: int = index, _v: str = view_id
                ) -> None:
                    if self.stage_delay_s:
                        time.sleep(self.stage_delay_s)
                    loop.call_soon_threadsafe(
                        self._on_view_progress, job, _i, _v, stage, float(fraction)
                    )
                    self._check(job)

                result = self.pipeline.run_view(view, progress)
                self._check(job)
                add_decode_time(result, job.decode_ms.get(view_id))
                results.append(result)
            t0 = time.perf_counter()
            exam = self.pipeline.combine(results)
            combine_ms = (time.perf_counter() - t0) * 1000.0
            self._check(job)
            exam.timings_ms.setdefault("combine", round(combine_ms, 3))
            return exam
        except ExamCancelled:
            return None

    @staticmethod
    def _check(job: ExamJob) -> None:
        if job.cancel_flag.is_set():
            raise ExamCancelled

    async def _run(self, job: ExamJob) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._slots:
                if job.terminal:
                    return
                job.status = "running"
                job.run_started_mono = time.monotonic()
                self._running += 1
                self._gauges()
                try:
                    exam = await self._pool.run(self._work, job, loop)
                finally:
                    self._running -= 1
                    self._note_duration(time.monotonic() - job.run_started_mono)
            if job.terminal:
                return  # cancelled while its last stage ran
            if exam is None:
                self._finish(job, "cancelled")
                return
            self._record_timings(job, exam)
            self._progress(job, "combine", None, 100.0)
            self._finish(job, "succeeded", result=exam)
        except asyncio.CancelledError:
            if not job.terminal:
                self._finish(job, "cancelled")
        except IRMIError as exc:
            self._finish(job, "failed", error=exc.envelope())
        except Exception:
            log.exception("exam failed unexpectedly", extra={"exam_id": job.id})
            self._finish(job, "failed", error=ProcessingFailed().envelope())
        finally:
            self._release(job)

    def _note_duration(self, seconds: float) -> None:
        self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * max(0.01, seconds)

    def _record_timings(self, job: ExamJob, exam: ExamResult) -> None:
        run_start = job.run_started_mono or job.started_mono
        exam.timings_ms.setdefault("queue_wait", round((run_start - job.started_mono) * 1e3, 3))
        exam.timings_ms["total"] = round(job.elapsed_ms(), 3)
        if self.metrics is None:
            return
        for view in exam.views:
            for stage, ms in view.timings_ms.items():
                self.metrics.observe_stage(stage, ms)
        for stage in ("combine", "queue_wait", "total"):
            if stage in exam.timings_ms:
                name = "exam_total" if stage == "total" else stage
                self.metrics.observe_stage(name, exam.timings_ms[stage])

    def _finish(
        self,
        job: ExamJob,
        status: ExamStatus,
        *,
        result: ExamResult | None = None,
        error: ErrorEnvelope | None = None,
    ) -> None:
        if job.terminal:
            return
        job.status = status
        job.result = result
        job.finished_at = now_iso()
        job.finished_mono = time.monotonic()
        if error is not None:
            job.error = error.error.model_dump()
            job.emit("error", error.model_dump_json())
            if self.metrics is not None:
                self.metrics.errors.labels(self.metrics.service, error.error.code).inc()
        job.final_json = job.snapshot().model_dump_json()
        job.emit("result", job.final_json)
        job.result = None
        job.views = []
        if self._exam_counter is not None:
            self._exam_counter.labels(status).inc()
        log.info(
            "exam finished",
            extra={"exam_id": job.id, "status": status, "views": job.n_views},
        )

    # ------------------------------------------------------------------ one view, synchronous

    async def predict(self, view: Any, admission: Ticket | None = None) -> ViewResult:
        """One view through the pipeline in the same bounded pool (admission included)."""
        if admission is None or not admission.held:
            admission = self.reserve()
        try:
            async with self._slots:
                self._running += 1
                self._gauges()
                t0 = time.monotonic()
                try:
                    result: ViewResult = await self._pool.run(
                        self.pipeline.run_view, view, _no_progress
                    )
                finally:
                    self._running -= 1
                    self._note_duration(time.monotonic() - t0)
        finally:
            admission.release()
        if self.metrics is not None:
            for stage, ms in result.timings_ms.items():
                self.metrics.observe_stage(stage, ms)
        return result


def _no_progress(stage: str, fraction: float) -> None:
    return None


def add_decode_time(result: ViewResult, file_decode_ms: float | None) -> None:
    """The `decode` stage = decoding the file (done by the service before accepting) + what the
    pipeline's decode stage did (validity gate)."""
    if file_decode_ms is None:
        return
    timings = dict(result.timings_ms)
    timings["decode"] = round(timings.get("decode", 0.0) + file_decode_ms, 3)
    result.timings_ms = {"decode": timings.pop("decode"), **timings}
