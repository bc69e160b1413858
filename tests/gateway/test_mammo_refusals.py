"""Files that are not mammograms through the gateway's mammography routes, with the real
bc_service behind it: refused synchronously with 422 ``not_a_mammogram`` on the study upload
and on the stateless predict route, and no study is created (no "Failed" in the history)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bc_service.images import NOT_MAMMOGRAMS, not_mammograms
from tests.gateway.conftest import Api, patient_api, run_gateway, sqlite_gateway_env


@pytest.fixture(scope="module")
def sessions(
    upstreams: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, Api]]:
    """A patient's session and an integrator's `predict` API key on one gateway."""
    tmp = tmp_path_factory.mktemp("gw-refusals")
    env = sqlite_gateway_env(tmp, upstreams["tb"], IRMI_GATEWAY_BC_URL=upstreams["bc"])
    with run_gateway(env, Path(tmp)) as gw:
        patient = patient_api(gw.url, "refusals@example.org")
        key = patient.post("/v1/api-keys", json={"name": "pacs", "scopes": ["predict"]})
        assert key.status_code == 201, key.text
        yield patient, patient.as_key(key.json()["key"])


@pytest.mark.parametrize("name", NOT_MAMMOGRAMS)
def test_not_a_mammogram_is_refused_on_every_gateway_route(
    sessions: tuple[Api, Api], name: str
) -> None:
    upload = not_mammograms()[name]
    if upload is None:
        pytest.skip("needs ../shared/data (mini-mias for the gate, nih-cxr14 for the chest)")
    patient, integrator = sessions
    for api, path in ((patient, "/v1/studies/mammography"), (integrator, "/v1/predict/mammogram")):
        for field in ("files", "L-MLO"):
            r = api.post(path, files=[(field, upload)], timeout=120)
            assert r.status_code == 422, (path, field, r.text[:500])
            error = r.json()["error"]
            assert error["code"] == "not_a_mammogram", (path, error)
    assert patient.get("/v1/studies").json()["total"] == 0
