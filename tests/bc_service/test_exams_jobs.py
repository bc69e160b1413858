"""Job machinery of bc_service (ExamManager) with a stand-in pipeline defined here.

Only the scheduling, event log, cancellation, admission and eviction are under test; the
HTTP tests in test_exams_http.py / test_sse_http.py run the real pipeline and models.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bc_service.exams import ExamManager, StoredEvent
from shared.contracts.common import CropBox
from shared.contracts.mammo import (
    STAGES,
    BreastResult,
    Exam,
    ExamResult,
    Probabilities,
    ProgressEvent,
    ViewResult,
)
from shared.contracts.screening import Category
from shared.errors import NotAMammogram, Overloaded
from shared.metrics import ServiceMetrics

PIPE_STAGES = STAGES


@dataclass
class FakeView:
    view_id: str
    tag: str | None = None


@dataclass
class StandIn:
    """Same interface as MammoPipeline; optionally blocks at a stage until released."""

    block_at: str | None = None
    fail_view: str | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    reached: threading.Event = field(default_factory=threading.Event)
    stages_run: list[str] = field(default_factory=list)

    def run_view(self, view: FakeView, progress: Callable[[str, float], None]) -> ViewResult:
        for i, stage in enumerate(PIPE_STAGES):
            if stage == self.block_at:
                self.reached.set()
                assert self.gate.wait(10)
            if view.view_id == self.fail_view and stage == "classify":
                raise NotAMammogram(details={"score": 0.01})
            self.stages_run.append(f"{view.view_id}:{stage}")
            progress(stage, (i + 1) / len(PIPE_STAGES))
        return ViewResult(
            view_id=view.view_id,
            tag="L-CC",
            laterality="L",
            view="CC",
            detected_laterality="L",
            detected_view="CC",
            detection_confidence=0.9,
            flipped=False,
            crop_box=CropBox(x0=0, y0=0, x1=10, y1=10),
            score=10.0,
            category=Category.no_finding_flagged,
            probabilities=Probabilities(benign=0.2, malignant=0.1),
            label="normal",
            timings_ms={s: 1.0 for s in PIPE_STAGES},
        )

    def combine(self, views: list[ViewResult]) -> ExamResult:
        probs = Probabilities(benign=0.2, malignant=0.1)
        clear = Category.no_finding_flagged
        breast = BreastResult(
            laterality="L",
            views=[v.view_id for v in views],
            score=10.0,
            category=clear,
            probabilities=probs,
            label="normal",
        )
        return ExamResult(
            views=views,
            breasts=[breast],
            score=10.0,
            category=clear,
            score_threshold=71.27,
            probabilities=probs,
            label="normal",
        )


def views(n: int) -> list[FakeView]:
    return [FakeView(f"view-{i}") for i in range(n)]


async def collect(job_follow) -> list[StoredEvent]:  # type: ignore[no-untyped-def]
    out = []
    async for ev in job_follow:
        out.append(ev)
    return out


async def wait_until(cond: Callable[[], bool], limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 - polling state owned by the manager
            await asyncio.sleep(0.01)


def manager(pipe: StandIn, **kw) -> ExamManager:  # type: ignore[no-untyped-def]
    kw.setdefault("workers", 1)
    kw.setdefault("max_queued", 2)
    return ExamManager(pipe, metrics=ServiceMetrics("bc_test"), **kw)


async def test_event_order_and_single_result() -> None:
    m = manager(StandIn())
    job = m.submit(views(2), {"view-0": 3.0, "view-1": 4.0})
    events = await collect(job.follow())
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    kinds = [e.event for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "result" and kinds.count("result") == 1
    assert json.loads(events[0].data)["id"] == job.id
    progress = [ProgressEvent.model_validate_json(e.data) for e in events if e.event == "progress"]
    stages = [(p.stage, p.view) for p in progress]
    expected = [("queued", None)]
    expected += [(s, v) for v in ("view-0", "view-1") for s in PIPE_STAGES]
    expected += [("combine", None)]
    assert stages == expected
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    elapsed = [p.elapsed_ms for p in progress]
    assert elapsed == sorted(elapsed)
    final = Exam.model_validate_json(events[-1].data)
    assert final == job.snapshot() and final.status == "succeeded"
    assert final.result is not None
    assert final.result.views[0].timings_ms["decode"] == 4.0  # file 3 + gate 1
    assert {"combine", "queue_wait", "total"} <= set(final.result.timings_ms)
    assert m.active == 0
    text = m.metrics.registry.get_sample_value(  # type: ignore[union-attr]
        "irmi_bc_exams_total", {"status": "succeeded"}
    )
    assert text == 1.0


async def test_resume_after_any_event_replays_the_rest() -> None:
    m = manager(StandIn())
    job = m.submit(views(1), {})
    full = await collect(job.follow())
    for k in (0, 1, 5, len(full) - 1, len(full)):
        assert await collect(job.follow(after=k)) == full[k:]


async def test_follower_leaving_does_not_stop_the_job() -> None:
    pipe = StandIn(block_at="heatmaps")
    m = manager(pipe)
    job = m.submit(views(1), {})
    follower = job.follow()
    first = await anext(follower)
    assert first.event == "accepted"
    await follower.aclose()  # the client went away
    await asyncio.to_thread(pipe.reached.wait, 10)
    pipe.gate.set()
    await wait_until(lambda: job.terminal)
    assert job.status == "succeeded"
    late = await collect(job.follow(after=1))
    assert late[-1].event == "result"


async def test_cancel_running_stops_at_next_stage_boundary() -> None:
    pipe = StandIn(block_at="heatmaps")
    m = manager(pipe)
    job = m.submit(views(2), {})
    await asyncio.to_thread(pipe.reached.wait, 10)
    assert job.status == "running"
    m.cancel(job)
    assert job.status == "cancelled"  # at once, for every reader
    events = await collect(job.follow())
    assert events[-1].event == "result"
    assert Exam.model_validate_json(events[-1].data).status == "cancelled"
    assert "error" not in [e.event for e in events]
    pipe.gate.set()
    await wait_until(lambda: m.active == 0)
    # the blocked stage finished, then the progress callback stopped the pipeline
    assert pipe.stages_run[-1] == "view-0:heatmaps"
    assert not any(s.startswith("view-1") for s in pipe.stages_run)
    assert await collect(job.follow()) == events  # nothing emitted after the result


async def test_cancel_queued_frees_its_place() -> None:
    pipe = StandIn(block_at="crop")
    m = manager(pipe, workers=1, max_queued=1)
    first = m.submit(views(1), {})
    second = m.submit(views(1), {})
    await asyncio.to_thread(pipe.reached.wait, 10)
    with pytest.raises(Overloaded) as exc:
        m.submit(views(1), {})
    assert exc.value.status_code == 503 and int(exc.value.headers["Retry-After"]) >= 1
    assert second.status == "queued"
    m.cancel(second)
    assert second.status == "cancelled" and m.active == 1
    third = m.submit(views(1), {})  # the freed place is usable at once
    pipe.gate.set()
    await wait_until(lambda: first.terminal and third.terminal)
    assert (first.status, third.status) == ("succeeded", "succeeded")
    assert m.active == 0


async def test_failure_emits_error_then_result() -> None:
    m = manager(StandIn(fail_view="view-1"))
    job = m.submit(views(2), {})
    events = await collect(job.follow())
    assert [e.event for e in events][-2:] == ["error", "result"]
    envelope = json.loads(events[-2].data)
    assert envelope["error"]["code"] == "not_a_mammogram"
    final = Exam.model_validate_json(events[-1].data)
    assert final.status == "failed" and final.error is not None
    assert final.error["code"] == "not_a_mammogram" and final.result is None
    assert m.active == 0


async def test_eviction_by_ttl_and_count() -> None:
    m = manager(StandIn(), ttl_seconds=0.05, max_exams=2, max_queued=5)
    jobs = [m.submit(views(1), {}) for _ in range(3)]
    await wait_until(lambda: all(j.terminal for j in jobs))
    assert m.sweep() == 1 and len(m) == 2  # count bound: the oldest finished goes
    assert m.get(jobs[0].id) is None
    await asyncio.sleep(0.1)
    assert m.sweep() == 2 and len(m) == 0


async def test_predict_runs_in_the_pool() -> None:
    m = manager(StandIn())
    result = await m.predict(FakeView("view-0"))
    assert result.view_id == "view-0" and m.active == 0


async def test_a_reserved_place_counts_until_released_or_handed_over() -> None:
    m = manager(StandIn(), workers=1, max_queued=1)
    first = m.reserve()
    second = m.reserve()  # e.g. two uploads being read and decoded
    with pytest.raises(Overloaded):
        m.reserve()
    first.release()  # that upload was refused (bad file)
    first.release()  # idempotent
    assert m.active == 1
    job = m.submit(views(1), {}, admission=second)
    second.release()  # no-op: the job holds the place now
    assert m.active == 1
    await wait_until(lambda: job.terminal)
    assert m.active == 0


def test_exam_urls_point_at_this_replica_when_advertised() -> None:
    from bc_service.routes import exam_urls
    from bc_service.settings import Settings

    assert exam_urls("abc", Settings()) == ("/v1/exams/abc", "/v1/exams/abc/events")
    pod = Settings(advertise_url="http://10.1.2.3:8002/")
    assert exam_urls("abc", pod) == (
        "http://10.1.2.3:8002/v1/exams/abc",
        "http://10.1.2.3:8002/v1/exams/abc/events",
    )
