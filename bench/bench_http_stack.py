"""The HTTP stack each service runs on: uvicorn with httptools (C parser) and uvloop (the
default, settings ``http_parser`` and ``event_loop``) against h11 and asyncio (pure Python,
the previous stack), in the same run, interleaved: tb_service twice (one per stack) on the
512 px film, and the gateway twice in front of the same tb_service (its own CPU only).
Writes bench/results/http_stack.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench import inputs
from bench.bench_gateway import _post, gateway_env
from bench.measure import Variant, compare, ratio, tree_cpu
from bench.results import Plan
from bench.services import TB_ENV, service
from tests.stress.system import signup

STACKS = {
    "httptools_uvloop": {"HTTP_PARSER": "httptools", "EVENT_LOOP": "uvloop"},
    "h11_asyncio": {"HTTP_PARSER": "h11", "EVENT_LOOP": "asyncio"},
}


def _env(prefix: str, stack: str) -> dict[str, str]:
    return {f"{prefix}{k}": v for k, v in STACKS[stack].items()}


def run(plan: Plan) -> dict[str, Any]:
    film = inputs.chest_inputs(("data-nih-512",))[0]
    tmp = Path(tempfile.mkdtemp(prefix="irmi-bench-stack-"))
    out: dict[str, Any] = {"input": film.name}
    fast, slow = STACKS
    with (
        service("tb_service", {**TB_ENV, **_env("IRMI_TB_", fast)}) as tb,
        service("tb_service", {**TB_ENV, **_env("IRMI_TB_", slow)}) as tb_slow,
        httpx.Client(timeout=300) as client,
    ):
        tb_figs = compare(
            [
                Variant(
                    fast,
                    _post(client, tb.url + "/v1/predict", film.data, {}),
                    tree_cpu(tb.proc.pid),
                ),
                Variant(
                    slow,
                    _post(client, tb_slow.url + "/v1/predict", film.data, {}),
                    tree_cpu(tb_slow.proc.pid),
                ),
            ],
            block=plan.block * 2,
            repeats=plan.repeats,
        )
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        with (
            service(
                "gateway", {**gateway_env(tmp / "a", tb.url), **_env("IRMI_GATEWAY_", fast)}
            ) as gw,
            service(
                "gateway", {**gateway_env(tmp / "b", tb.url), **_env("IRMI_GATEWAY_", slow)}
            ) as gw_slow,
        ):
            key, key_slow = signup(gw.url)[1], signup(gw_slow.url)[1]
            gw_figs = compare(
                [
                    Variant(
                        fast,
                        _post(client, gw.url + "/v1/predict/chest", film.data, {"X-API-Key": key}),
                        tree_cpu(gw.proc.pid),
                    ),
                    Variant(
                        slow,
                        _post(
                            client,
                            gw_slow.url + "/v1/predict/chest",
                            film.data,
                            {"X-API-Key": key_slow},
                        ),
                        tree_cpu(gw_slow.proc.pid),
                    ),
                ],
                block=plan.block * 2,
                repeats=plan.repeats,
            )
    for name, figs in (("tb_service", tb_figs), ("gateway", gw_figs)):
        out[name] = {
            "figures": figs,
            "p50_new_over_old": ratio(figs[fast], figs[slow], "p50_ms"),
            "cpu_new_over_old": ratio(figs[fast], figs[slow], "cpu_ms_per_req"),
        }
        o = out[name]
        print(
            f"  {name}: httptools+uvloop / h11+asyncio p50 x{o['p50_new_over_old']}, CPU "
            f"x{o['cpu_new_over_old']} ({figs[fast]['cpu_ms_per_req']} against "
            f"{figs[slow]['cpu_ms_per_req']} ms)",
            flush=True,
        )
    return out
