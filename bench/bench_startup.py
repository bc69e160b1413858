"""Start-up: spawn to ready (``/v2/health/ready`` 200) of the gateway (on a fresh SQLite file,
then restarted on it), tb_service and bc_service, and the gateway's import time
(``python -X importtime -c "import gateway.app"``: total and the heaviest packages).
Writes bench/results/startup.json.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_gateway import gateway_env
from bench.results import REPO, Plan
from bench.services import BC_ENV, TB_ENV, service
from tests.procs import free_port


def import_profile(module: str = "gateway.app") -> dict[str, Any]:
    """Cumulative import time of ``module`` (ms) and the packages whose modules' own import
    work costs most."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        check=True,
    ).stderr
    top: dict[str, float] = {}
    total = 0.0
    for line in out.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        self_us, cumulative_us, raw = line.split(":", 1)[1].split("|")
        try:
            own, cumulative = float(self_us) / 1000.0, float(cumulative_us) / 1000.0
        except ValueError:
            continue  # the header line
        name = raw[1:]  # one space after the bar, then two per nesting level
        if not name.startswith(" "):
            total += cumulative
        root = name.strip().split(".")[0]
        top[root] = top.get(root, 0.0) + own  # each package's own import work
    heaviest = dict(sorted(top.items(), key=lambda kv: -kv[1])[:8])
    return {
        "total_ms": round(total, 1),
        "heaviest_ms": {k: round(v, 1) for k, v in heaviest.items()},
    }


def _ready(module: str, env: dict[str, str], times: int) -> list[float]:
    out = []
    for _ in range(times):
        with service(module, env) as svc:
            out.append(round(svc.ready_s, 3))
    return out


def run(plan: Plan) -> dict[str, Any]:
    times = 1 if plan.quick else 2
    tmp = Path(tempfile.mkdtemp(prefix="irmi-bench-start-"))
    env = gateway_env(tmp, f"http://127.0.0.1:{free_port()}")
    first = _ready("gateway", env, 1)  # fresh database: migrations run
    again = _ready("gateway", env, times)  # the same database: nothing to migrate
    tb = _ready("tb_service", TB_ENV, times)
    bc = _ready("bc_service", BC_ENV, times)
    prof = [import_profile() for _ in range(times)]
    out = {
        "gateway_fresh_db_s": first[0],
        "gateway_restart_s": statistics.median(again),
        "tb_service_s": statistics.median(tb),
        "bc_service_s": statistics.median(bc),
        "gateway_import_ms": statistics.median(p["total_ms"] for p in prof),
        "gateway_import_heaviest_ms": prof[-1]["heaviest_ms"],
        "samples": {"gateway_restart": again, "tb_service": tb, "bc_service": bc},
    }
    print(
        f"  ready: gateway fresh {out['gateway_fresh_db_s']} s, "
        f"restart {out['gateway_restart_s']} s, "
        f"tb {out['tb_service_s']} s, bc {out['bc_service_s']} s; gateway import "
        f"{out['gateway_import_ms']} ms",
        flush=True,
    )
    return out
