"""The gateway's cost: ``POST /v1/predict/chest`` (API key) against the same upload straight to
tb_service, in interleaved blocks at concurrency 1 and 16, on the 512 px film; the gateway's
own CPU per request (its processes only). Writes bench/results/gateway.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench import inputs
from bench.measure import Variant, compare, ratio, tree_cpu
from bench.results import Plan
from bench.services import TB_ENV, service
from tests.gateway.conftest import gateway_env as test_gateway_env
from tests.procs import free_port
from tests.stress.system import signup


def _post(client: httpx.Client, url: str, data: bytes, headers: dict[str, str]) -> Any:
    def call(_: int) -> None:
        r = client.post(url, files={"file": ("x.jpg", data, "image/jpeg")}, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")

    return call


def gateway_env(tmp: Path, tb_url: str) -> dict[str, str]:
    """The tests' gateway environment on a SQLite file, with the deployment's thread defaults
    (bc_service is not needed here: a closed port)."""
    db = f"sqlite+aiosqlite:///{tmp / 'gw.db'}"
    env = test_gateway_env(tmp, db, tb_url, f"http://127.0.0.1:{free_port()}")
    env.pop("IRMI_GATEWAY_CPU_WORKERS", None)
    env["IRMI_GATEWAY_LOG_LEVEL"] = "WARNING"
    return env


def run(plan: Plan) -> dict[str, Any]:
    film = inputs.chest_inputs(("data-nih-512",))[0]
    tmp = Path(tempfile.mkdtemp(prefix="irmi-bench-gw-"))
    out: dict[str, Any] = {"input": film.name}
    with (
        service("tb_service", TB_ENV) as tb,
        service("gateway", gateway_env(tmp, tb.url)) as gw,
        httpx.Client(timeout=300, limits=httpx.Limits(max_connections=64)) as client,
    ):
        _token, key = signup(gw.url)
        direct = _post(client, tb.url + "/v1/predict", film.data, {})
        through = _post(client, gw.url + "/v1/predict/chest", film.data, {"X-API-Key": key})
        for conc, block in ((1, plan.block * 2), (16, plan.block16)):
            figs = compare(
                [
                    Variant("direct", direct, tree_cpu(tb.proc.pid)),
                    Variant("gateway", through, tree_cpu(gw.proc.pid)),
                ],
                block=block,
                repeats=plan.repeats,
                concurrency=conc,
            )
            out[f"c{conc}"] = {
                "figures": figs,
                "p50_gateway_over_direct": ratio(figs["gateway"], figs["direct"], "p50_ms"),
                "throughput_gateway_over_direct": ratio(
                    figs["gateway"], figs["direct"], "throughput_per_s"
                ),
                "gateway_cpu_ms_per_req": figs["gateway"]["cpu_ms_per_req"],
            }
            g = out[f"c{conc}"]
            print(
                f"  c={conc}: p50 x{g['p50_gateway_over_direct']}, throughput "
                f"x{g['throughput_gateway_over_direct']}, "
                f"gateway CPU {g['gateway_cpu_ms_per_req']} ms",
                flush=True,
            )
    return out
