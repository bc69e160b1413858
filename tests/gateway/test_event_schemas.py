"""The event payloads the OpenAPI document publishes (gateway/event_schemas.py, the stream
routes' ``x-sse-events``) are what the gateway really sends: a chest and a mammography study
on the real inference services, their streams read and every event's data validated against
the schema of its name, with no field the schema lacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.event_schemas import STUDY_EVENTS
from gateway.openapi_export import DEFAULT_PATH
from tests.bc_service.images import mammogram
from tests.gateway.conftest import Api, gateway_env, run_gateway, signup_login
from tests.gateway.test_flow import read_sse
from tests.tb_service.svc_helpers import chest_png


def _check(events: list[dict[str, Any]]) -> list[str]:
    names = []
    for ev in events:
        model = STUDY_EVENTS[ev["event"]]
        model.model_validate(ev["data"])
        extra = set(ev["data"]) - set(model.model_fields)
        assert not extra, f"{ev['event']}: {extra} not in {model.__name__}"
        names.append(ev["event"])
    return names


def test_the_document_names_the_study_event_schemas() -> None:
    doc = json.loads(DEFAULT_PATH.read_text())
    op = doc["paths"]["/v1/studies/{study_id}/events"]["get"]
    media = op["responses"]["200"]["content"]["text/event-stream"]
    refs = {name: ref["$ref"].rsplit("/", 1)[-1] for name, ref in media["x-sse-events"].items()}
    assert refs == {name: model.__name__ for name, model in STUDY_EVENTS.items()}
    for schema in refs.values():
        assert schema in doc["components"]["schemas"]


def test_streamed_events_match_their_schemas(upstreams: dict[str, str], tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"
    with run_gateway(gateway_env(tmp_path, db, upstreams["tb"], upstreams["bc"]), tmp_path) as gw:
        anon = Api(gw.url)
        p = anon.as_token(signup_login(anon, "events@example.org")["access_token"])
        r = p.post("/v1/studies/chest", files={"file": ("x.png", chest_png(300, 260), "image/png")})
        assert r.status_code == 201, r.text
        chest = read_sse(p, f"/v1/studies/{r.json()['id']}/events")
        assert _check(chest) == ["result"]
        assert chest[0]["data"]["chest_result"]["effective"]["category"]
        files = [
            ("L-MLO", ("a.png", mammogram(), "image/png")),
            ("R-MLO", ("b.png", mammogram(right=True), "image/png")),
        ]
        r = p.post("/v1/studies/mammography", files=files)
        assert r.status_code == 202, r.text
        names = _check(read_sse(p, r.json()["events_url"]))
        assert "progress" in names and names[-1] == "result", names
