"""The SSE contract of bc_service over real HTTP: order, one result, resumption with
Last-Event-ID, disconnect mid-stream, stream in the submitting request, heartbeats."""

from __future__ import annotations

import httpx

from shared.contracts.mammo import STAGES, Exam, ExamAccepted, ProgressEvent
from tests.bc_service.images import mammogram
from tests.bc_service.sseclient import Event, Stream, read_all, wait_status

PNG = "image/png"


def two_views() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("L-MLO", ("l.png", mammogram(), PNG)),
        ("R-MLO", ("r.png", mammogram(right=True), PNG)),
    ]


def check_log(events: list[Event], exam_id: str, n_views: int) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "accepted"
    assert ExamAccepted.model_validate(events[0].json()).id == exam_id
    assert [e.event for e in events].count("result") == 1 and events[-1].event == "result"
    progress = [ProgressEvent.model_validate(e.json()) for e in events if e.event == "progress"]
    assert progress[0].stage == "queued" and progress[-1].stage == "combine"
    assert [p.percent for p in progress] == sorted(p.percent for p in progress)
    assert progress[-1].percent == 100
    assert [p.elapsed_ms for p in progress] == sorted(p.elapsed_ms for p in progress)
    for i in range(n_views):
        # every stage of every view, in pipeline order, the views one after the other
        assert [p.stage for p in progress if p.view == f"view-{i}"] == STAGES
    exam = Exam.model_validate(events[-1].json())
    assert exam.id == exam_id and exam.status == "succeeded"


def test_stream_in_the_submitting_request(client: httpx.Client) -> None:
    events, stream = read_all(client, "POST", "/v1/exams?stream=true", files=two_views())
    exam_id = events[0].json()["id"]
    assert stream.response.headers["x-exam-id"] == exam_id
    check_log(events, exam_id, 2)
    assert stream.comments, "no heartbeat comment on a multi-second stream"
    # the result event is the same model as the GET
    assert client.get(f"/v1/exams/{exam_id}").json() == events[-1].json()
    # Accept: text/event-stream does the same
    accept, _ = read_all(
        client,
        "POST",
        "/v1/exams",
        files=[("files", ("a.png", mammogram(), PNG))],
        headers={"Accept": "text/event-stream"},
    )
    check_log(accept, accept[0].json()["id"], 1)


def test_resume_with_last_event_id(client: httpx.Client) -> None:
    accepted = client.post("/v1/exams", files=two_views()).json()
    first: list[Event] = []
    with client.stream("GET", accepted["events_url"]) as r:
        for ev in Stream(r).events():
            first.append(ev)
            if len(first) == 5:
                break  # disconnect mid-stream
    rest, _ = read_all(client, "GET", accepted["events_url"], headers={"Last-Event-ID": "5"})
    assert rest[0].id == 6
    full = first + rest
    check_log(full, accepted["id"], 2)
    replay, _ = read_all(client, "GET", accepted["events_url"])
    assert [(e.id, e.event, e.data) for e in replay] == [(e.id, e.event, e.data) for e in full]
    # the query parameter works too (EventSource cannot set headers on a first connection)
    tail, _ = read_all(client, "GET", accepted["events_url"] + f"?last_event_id={len(full) - 1}")
    assert [e.event for e in tail] == ["result"]
    bad = client.get(accepted["events_url"], headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"


def test_disconnect_mid_stream_then_the_job_completes(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/exams?stream=true", files=two_views()) as r:
        events = Stream(r).events()
        exam_id = next(events).json()["id"]
        for ev in events:
            if ev.event == "progress" and ev.json()["stage"] not in {"queued", "decode"}:
                break
    # the client hung up during the pipeline; the job goes on
    exam = wait_status(client, f"/v1/exams/{exam_id}")
    assert exam["status"] == "succeeded"
    replay, _ = read_all(client, "GET", f"/v1/exams/{exam_id}/events")
    check_log(replay, exam_id, 2)
