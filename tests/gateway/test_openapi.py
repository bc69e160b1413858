"""The OpenAPI document: exported at the repository root (the iOS client is generated from it)
and complete: every route typed, tagged, with its error responses and examples."""

from __future__ import annotations

import json

from gateway.openapi_export import DEFAULT_PATH, render

FILE_ROUTES = {
    "/v1/studies/{study_id}/images/{image_id}",
    "/v1/studies/{study_id}/images/{image_id}/display",
    "/v1/studies/{study_id}/images/{image_id}/thumbnail",
    "/v1/studies/{study_id}/heatmaps/{name}",
    "/v1/studies/{study_id}/report",  # application/pdf
    "/v1/studies/{study_id}/fhir",  # application/fhir+json (a FHIR resource, not our schema)
    "/v1/admin/validation-runs/{run_id}/report.pdf",
    "/v1/admin/validation-runs/{run_id}/scores.csv",
}


def test_openapi_json_is_up_to_date() -> None:
    assert DEFAULT_PATH.exists(), "openapi.json is missing: run `make openapi`"
    assert DEFAULT_PATH.read_text() == render(), "openapi.json is stale: run `make openapi`"


def test_every_route_is_documented() -> None:
    doc = json.loads(render())
    assert doc["info"]["title"] == "IRMI API"
    schemes = doc["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    ops = 0
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            ops += 1
            where = f"{method.upper()} {path}"
            assert op.get("tags"), where
            assert op.get("summary"), where
            query = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            assert not query & {"access_token", "token"}, f"{where}: a token in the URL"
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, where
            if not path.startswith("/v1/") or path == "/v1/specialties":
                continue
            errors = [c for c in op["responses"] if c[0] in "45"]
            assert errors, f"{where}: no error responses"
            for code in errors:
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorEnvelope"), where
            body = op["responses"][ok[0]]
            if ok[0] != "204" and path not in FILE_ROUTES and not path.endswith("/events"):
                schema = body["content"]["application/json"]["schema"]
                assert "$ref" in schema, f"{where}: untyped response"
            public = path in {
                "/v1/auth/signup",
                "/v1/auth/login",
                "/v1/auth/refresh",
                "/v1/auth/logout",
                "/v1/auth/password-reset",
                "/v1/auth/password-reset/confirm",
                "/v1/specialties",
            }
            if not public:
                assert "401" in op["responses"], f"{where}: 401 undocumented"
    assert ops >= 25
    schemas = doc["components"]["schemas"]
    assert schemas["SignupRequest"].get("examples"), "request examples"
    assert "/v1/studies/chest" in doc["paths"] and "/v1/studies/{study_id}/events" in doc["paths"]
