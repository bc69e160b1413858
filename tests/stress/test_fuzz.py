"""Property-based fuzzing (schemathesis) of each service's OpenAPI document, on the running
system (tests/conftest.py ``irmi_system``): for every operation, a bounded number of generated
requests, valid and invalid; no 5xx, and every response matches the documented status codes,
content types, headers and schema. Gateway routes are called with a valid bearer token of a
fuzz-only patient (and the same patient's API key where a route wants one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.stress.system import System, signup

EXAMPLES = int(os.environ.get("IRMI_FUZZ_EXAMPLES", "8"))
CHECKS: list[Any] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure is reproducible
    database=None,
)
# An exam's event stream stays open until the exam ends: not fuzzed (tests/bc_service has it).
# STOW-RS takes a multipart/related body, which schemathesis cannot build; its malformed,
# oversized and wrong-type bodies are tested in tests/dicom/test_pacs.py and
# tests/shared/test_uploads_related.py.
SKIP_OPS = {("GET", "/v1/exams/{exam_id}/events"), ("POST", "/v1/dicomweb/studies")}


def _endless_stream(schema: Any, method: str, path: str) -> bool:
    """An event stream that any valid request opens and nothing ends (no path parameter that
    could name a missing resource): calling it would hang the fuzzer on keep-alives."""
    op = schema.raw_schema["paths"][path][method.lower()]
    streams = any(
        "text/event-stream" in (r.get("content") or {})
        for code, r in op.get("responses", {}).items()
        if str(code).startswith("2")
    )
    return streams and method.upper() == "GET" and "{" not in path


@pytest.fixture(scope="module")
def fuzz_user(irmi_system: System) -> dict[str, str]:
    token, key = signup(irmi_system.gw.url, "fuzz@example.org")
    return {"Authorization": f"Bearer {token}", "X-API-Key": key}


@pytest.fixture(scope="module")
def gateway_schema(irmi_system: System) -> Any:
    return schemathesis.openapi.from_url(irmi_system.gw.url + "/openapi.json")


@pytest.fixture(scope="module")
def tb_schema(irmi_system: System) -> Any:
    return schemathesis.openapi.from_url(irmi_system.tb.url + "/openapi.json")


@pytest.fixture(scope="module")
def bc_schema(irmi_system: System) -> Any:
    return schemathesis.openapi.from_url(irmi_system.bc.url + "/openapi.json")


@pytest.fixture(scope="module", autouse=True)
def healthy_afterwards(irmi_system: System) -> Iterator[None]:
    yield
    for svc in (irmi_system.gw, irmi_system.tb, irmi_system.bc):
        assert svc.proc.poll() is None
        assert httpx.get(svc.url + "/v2/health/ready", timeout=30).status_code == 200


COUNTS: dict[str, int] = {}


def fuzz(name: str, schema: Any, base: str, headers_for: Any = None) -> None:
    """Every operation of ``schema``: EXAMPLES positive and EXAMPLES negative cases, each
    called on ``base`` and validated; all failures collected, then reported together.

    (Hypothesis strategies per operation rather than ``schemathesis.pytest.from_fixture``,
    whose lazy loader does not work with this pytest version.)"""
    failures: list[str] = []
    skipped: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP_OPS or _endless_stream(schema, op.method, op.path):
            skipped.append(f"{op.method.upper()} {op.path}")
            continue
        headers = headers_for(op.path) if headers_for else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @FUZZ
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(
                    base_url=base,
                    headers=headers,  # noqa: B023 (run() runs within this iteration)
                    checks=CHECKS,
                    timeout=120,
                )

            try:
                run()
            except Unsatisfiable:
                pass  # no invalid request exists for this operation (e.g. no parameters)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # one operation's failures must not hide the others
                subs = getattr(exc, "exceptions", None) or [exc]
                text = "; ".join(" ".join(str(e).split())[:600] for e in subs)
                failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {exc} :: {text}")
    COUNTS[name] = calls
    print(f"\n{name}: {calls} generated requests; not fuzzed (endless streams): {skipped}")
    assert calls > 0, failures
    assert not failures, "\n\n".join(failures)


def test_gateway_fuzz(irmi_system: System, gateway_schema: Any, fuzz_user: dict[str, str]) -> None:
    def headers_for(path: str) -> dict[str, str]:
        if path in {"/v1/auth/logout", "/v1/auth/refresh", "/v1/auth/login", "/v1/auth/signup"}:
            return {}
        if path.startswith("/v1/predict"):
            return {"X-API-Key": fuzz_user["X-API-Key"]}  # integrator routes: the API key
        return {"Authorization": fuzz_user["Authorization"]}

    fuzz("gateway", gateway_schema, irmi_system.gw.url, headers_for)


def test_tb_service_fuzz(irmi_system: System, tb_schema: Any) -> None:
    fuzz("tb_service", tb_schema, irmi_system.tb.url)


def test_bc_service_fuzz(irmi_system: System, bc_schema: Any) -> None:
    fuzz("bc_service", bc_schema, irmi_system.bc.url)
