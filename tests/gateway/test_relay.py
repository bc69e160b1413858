"""Relay edge cases in process: an abandoned running study (its replica died) ends failed
when read; the SSE parser; envelope codes of errors that arrive inside a stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from gateway.models import Study, User
from gateway.upstream import iter_sse, status_for_code
from tests.gateway.test_auth import bearer, login, make_client, signup


def test_stale_running_study_ends_failed(tmp_path: Path) -> None:
    with make_client(tmp_path, relay_stale_s=60) as c:
        user = signup(c)
        token = login(c)["access_token"]
        old = datetime.now(UTC) - timedelta(minutes=5)

        async def insert() -> None:
            async with c.app.state.gw.sessions() as s:  # type: ignore[attr-defined]
                s.add(
                    Study(
                        id="s" * 32,
                        owner_id=user["id"],
                        kind="mammography",
                        status="running",
                        created_at=old,
                        updated_at=old,
                    )
                )
                await s.commit()

        c.portal.call(insert)  # type: ignore[union-attr]
        body = c.get("/v1/studies/" + "s" * 32, headers=bearer(token)).json()
        assert body["status"] == "failed" and body["error"]["details"]["reason"] == "stale"
        with c.stream("GET", "/v1/studies/" + "s" * 32 + "/events", headers=bearer(token)) as r:
            text = "".join(r.iter_text())
        assert "event: error" in text


async def test_sse_parser_and_status_codes() -> None:
    body = b': ping\n\nid: 1\nevent: progress\ndata: {"a":\ndata: 1}\n\nevent: result\ndata: {}\n\n'
    resp = httpx.Response(200, content=body)
    events = [e async for e in iter_sse(resp)]
    assert [(e.id, e.event) for e in events] == [("1", "progress"), (None, "result")]
    assert events[0].json() == {"a": 1}
    assert status_for_code("not_a_mammogram") == 422
    assert status_for_code("unsupported_format") == 415
    assert status_for_code("overloaded") == 503
    assert status_for_code("processing_failed") == 502
    assert status_for_code("something_new") == 502


def _events(text: str) -> list[tuple[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((fields.get("id", ""), fields["event"]))
    return out


def test_consultation_events_and_stream_token(tmp_path: Path) -> None:
    """Each side sees the other's changes on /v1/consultations/events; the stream routes take
    the token from the Authorization header only, never from the URL (where it would land in
    access logs)."""
    with make_client(tmp_path) as c:
        patient = signup(c)
        signup(c, "doc@example.org", role="doctor", specialty="radiology", licence_number="L-1")
        pt, dt = login(c)["access_token"], login(c, "doc@example.org")["access_token"]
        doctor_id = c.get("/v1/users/me", headers=bearer(dt)).json()["id"]

        async def insert() -> None:
            async with c.app.state.gw.sessions() as s:  # type: ignore[attr-defined]
                s.add(Study(id="c" * 32, owner_id=patient["id"], kind="chest", status="succeeded"))
                doctor = await s.get(User, doctor_id)
                doctor.doctor_status = "verified"  # as an admin would (tests/gateway/test_accounts)
                await s.commit()

        c.portal.call(insert)  # type: ignore[union-attr]
        r = c.post(
            "/v1/consultations",
            json={"study_id": "c" * 32, "doctor_id": doctor_id, "question": "?"},
            headers=bearer(pt),
        )
        assert r.status_code == 201
        url = f"/v1/consultations/events?max_seconds=1&access_token={dt}"
        assert c.get(url).status_code == 401
        with c.stream("GET", "/v1/consultations/events?max_seconds=1", headers=bearer(dt)) as resp:
            assert resp.status_code == 200
            first = _events("".join(resp.iter_text()))
        assert [e for _, e in first] == ["consultation"]
        c.post(
            f"/v1/consultations/{r.json()['id']}/reply", json={"answer": "fine"}, headers=bearer(dt)
        )
        headers = {**bearer(pt), "Last-Event-ID": first[0][0]}
        with c.stream("GET", "/v1/consultations/events?max_seconds=1", headers=headers) as resp:
            text = "".join(resp.iter_text())
        assert [e for _, e in _events(text)] == ["consultation"] and '"status":"answered"' in text
        # no route takes a token from the URL, the study's SSE included
        assert c.get(f"/v1/studies/{'c' * 32}/events?access_token={pt}").status_code == 401
        assert c.get(f"/v1/studies/{'c' * 32}?access_token={pt}").status_code == 401
        with c.stream("GET", f"/v1/studies/{'c' * 32}/events", headers=bearer(pt)) as resp:
            assert resp.status_code == 200
