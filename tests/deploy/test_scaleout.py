"""Scale-out for real on loopback: two replicas of every service behind Debian's nginx (round
robin, no affinity), one PostgreSQL, one SeaweedFS S3 bucket. Bounded in time (pytest-timeout)
and loopback only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.deploy import scaleout
from tests.onnxgen import tiny_model_folder

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _harness() -> None:
    scaleout.require_harness()


def _tiny_models(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    tiny_model_folder(tmp_path / "models", "tiny")
    models = str(tmp_path / "models")
    return (
        {"IRMI_TB_MODELS_DIR": models, "IRMI_TB_REQUIRED_MODELS": '["tiny"]'},
        {"IRMI_BC_MODELS_DIR": models, "IRMI_BC_REQUIRED_MODELS": '["tiny"]'},
    )


def test_stack_spreads_requests_and_survives_losing_a_replica_of_each(tmp_path: Path) -> None:
    """Health and model routes through the balancers while one replica of every service is
    stopped mid-run: no request fails, and the survivors take all the traffic."""
    tb_env, bc_env = _tiny_models(tmp_path)
    with scaleout.stack(tmp_path / "logs", tb_env=tb_env, bc_env=bc_env) as st:
        gw = st.url
        tb, bc = st.inner.url("tb"), st.inner.url("bc")
        with httpx.Client(timeout=10) as client:
            for _ in range(4):
                assert client.get(gw + "/v2/health/ready").status_code == 200
                assert client.get(tb + "/v2/models").status_code == 200
                assert client.get(bc + "/v2/models").status_code == 200
            for lb, name, group in (
                (st.lb, "gateway", st.gateway),
                (st.inner, "tb", st.tb),
                (st.inner, "bc", st.bc),
            ):
                served = {u.rsplit(":", 1)[1] for u in lb.upstreams_used(name)}
                assert served == {str(p) for p in group.ports}, name
            for group in (st.gateway, st.tb, st.bc):
                group.stop(0)
            for _ in range(6):
                assert client.get(gw + "/v2/health/ready").status_code == 200
                assert client.get(tb + "/v2/models").json()["models"][0]["name"] == "tiny"
                assert client.get(bc + "/v2/models").json()["models"][0]["name"] == "tiny"
