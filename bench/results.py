"""The run's plan (full or ``IRMI_BENCH_QUICK=1``) and bench/results/*.json with the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Plan:
    """Requests per block and blocks per variant: the full run stays within about 10 minutes
    on 2 loaded cores, the quick one (``IRMI_BENCH_QUICK=1``) within about 2."""

    quick: bool
    block: int  # requests per block at concurrency 1
    block16: int  # requests per block at concurrency 16
    repeats: int  # blocks per variant (interleaved)
    exam_repeats: int  # 4-view exams per variant

    @classmethod
    def from_env(cls) -> Plan:
        if os.environ.get("IRMI_BENCH_QUICK", "") in ("1", "true", "yes"):
            return cls(quick=True, block=4, block16=32, repeats=2, exam_repeats=2)
        return cls(quick=False, block=8, block16=48, repeats=5, exam_repeats=5)


def machine() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU, {platform.system()} {platform.release()}"


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write(name: str, data: dict[str, Any], plan: Plan) -> Path:
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "commit": commit(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "plan": asdict(plan),
        **data,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"written: {path}", flush=True)
    return path


def read(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
