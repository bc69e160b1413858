"""``make bench``: every section in one run, then the one summary table of ratios.

``python -m bench`` runs bench_chest, bench_gateway, bench_mammo, bench_startup and
bench_http_stack (or those
named: ``python -m bench bench_chest``), each writing bench/results/<section>.json, then prints
bench/summary.py's table and writes bench/results/summary.md. Budget: about 10 minutes on this
2-core machine; ``IRMI_BENCH_QUICK=1`` about 2. ``python -m scripts.bench_readme`` puts the
table into the README's Performance section.
"""

from __future__ import annotations

import importlib
import sys
import time

from bench.results import RESULTS, Plan, write
from bench.summary import summary

SECTIONS = {
    "bench_chest": "chest",
    "bench_gateway": "gateway",
    "bench_mammo": "mammo",
    "bench_startup": "startup",
    "bench_http_stack": "http_stack",
}


def main() -> int:
    wanted = set(sys.argv[1:]) or set(SECTIONS)
    unknown = wanted - set(SECTIONS)
    if unknown:
        print(f"unknown sections {sorted(unknown)}; known: {sorted(SECTIONS)}", file=sys.stderr)
        return 2
    plan = Plan.from_env()
    t0 = time.perf_counter()
    for module, name in SECTIONS.items():
        if module not in wanted:
            continue
        print(f"\n=== {module} ({'quick' if plan.quick else 'full'})", flush=True)
        s0 = time.perf_counter()
        data = importlib.import_module(f"bench.{module}").run(plan)
        data["section_wall_s"] = round(time.perf_counter() - s0, 1)
        write(name, data, plan)
    print(f"\nbench wall time {time.perf_counter() - t0:.0f} s", flush=True)
    table = summary()
    (RESULTS / "summary.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
