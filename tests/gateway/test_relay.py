"""Relay edge cases in process: an abandoned running study (its replica died) ends failed
when read; the SSE parser; envelope codes of errors that arrive inside a stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from gateway.models import Study
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
