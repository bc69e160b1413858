"""The one summary table of ``make bench``, from bench/results/*.json: every column a ratio of
the route's figure to its baseline's in the same run (p50, p95, CPU per request, throughput),
the route's own figures beside them, and the issue-15 target where there is one (met or not).
"""

from __future__ import annotations

from typing import Any

from bench.results import read

HEAD = (
    "| route | input | c | baseline | p50 x | p95 x | CPU/req x | req/s x | route's own figures | "
    "target |\n|---|---|---:|---|---:|---:|---:|---:|---|---|"
)


def _x(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    x, y = a.get(key), b.get(key)
    if not isinstance(x, int | float) or not isinstance(y, int | float) or not y:
        return "-"
    return f"{x / y:.2f}"


def _own(f: dict[str, Any], throughput: bool = False) -> str:
    s = f"p50 {f['p50_ms']:.1f} ms, p95 {f['p95_ms']:.1f} ms, CPU {f['cpu_ms_per_req']:.1f} ms"
    return s + (f", {f['throughput_per_s']:.1f}/s" if throughput else "")


def _target(value: float | None, limit: float, text: str, above: bool = False) -> str:
    if value is None:
        return text
    ok = value >= limit if above else value <= limit
    return f"{text}: {'met' if ok else 'MISSED'}"


def _row(
    route: str,
    inp: str,
    c: int,
    base: str,
    a: dict[str, Any],
    b: dict[str, Any],
    target: str = "",
    throughput: bool = False,
) -> str:
    return (
        f"| {route} | {inp} | {c} | {base} | {_x(a, b, 'p50_ms')} | {_x(a, b, 'p95_ms')} | "
        f"{_x(a, b, 'cpu_ms_per_req')} | {_x(a, b, 'throughput_per_s')} | {_own(a, throughput)} | "
        f"{target} |"
    )


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    x, y = a.get(key), b.get(key)
    return x / y if isinstance(x, int | float) and isinstance(y, int | float) and y else None


TARGETED = ("data-nih-512", "jpeg-2500x3000")


def _chest(rows: list[str], chest: dict[str, Any]) -> None:
    for r in chest["per_input"]:
        f = r["figures"]
        svc = f["service"]
        t1 = t2 = ""
        if r["input"] in TARGETED:
            t1 = _target(_ratio(svc, f["in_process"], "cpu_ms_per_req"), 1.2, "CPU ≤ 1.2x")
            t2 = _target(_ratio(svc, f["minimal"], "cpu_ms_per_req"), 2.0, "CPU ≤ 2x")
        rows.append(
            _row(
                "tb `POST /v1/predict`",
                r["input"],
                1,
                "same work in-process",
                svc,
                f["in_process"],
                t1,
            )
        )
        rows.append(
            _row("tb `POST /v1/predict`", r["input"], 1, "minimal script", svc, f["minimal"], t2)
        )
    c16 = chest["concurrency_16"]
    f = c16["figures"]
    rows.append(
        _row(
            "tb `POST /v1/predict`",
            c16["input"],
            16,
            "same work in-process",
            f["service"],
            f["in_process"],
            throughput=True,
        )
    )
    if "service_today" in f:
        t = _target(
            _ratio(f["service"], f["service_today"], "throughput_per_s"),
            1.5,
            "req/s ≥ 1.5x",
            above=True,
        )
        rows.append(
            _row(
                "tb `POST /v1/predict`",
                c16["input"],
                16,
                f"tb_service today ({c16['baseline']})",
                f["service"],
                f["service_today"],
                t,
                throughput=True,
            )
        )


def _gateway(rows: list[str], gw: dict[str, Any]) -> None:
    for c, key in ((1, "c1"), (16, "c16")):
        f = gw[key]["figures"]
        g, d = f["gateway"], f["direct"]
        if c == 1:
            t = _target(_ratio(g, d, "p50_ms"), 1.1, "p50 ≤ 1.1x")
            t += "; " + _target(g["cpu_ms_per_req"], 2.0, "gateway CPU ≤ 2 ms")
        else:
            t = _target(_ratio(g, d, "throughput_per_s"), 0.9, "req/s ≥ 0.9x", above=True)
        rows.append(
            _row(
                "gateway `POST /v1/predict/chest`",
                gw["input"],
                c,
                "straight to tb_service",
                g,
                d,
                t,
                throughput=c > 1,
            )
        )


def _mammo(rows: list[str], mammo: dict[str, Any]) -> None:
    for r in mammo["exams"]:
        f = r["figures"]
        svc = f["service"]
        t = _target(svc["p50_ms"] / 1000.0, 1.0, "exam ≤ 1.0 s") if r["size"] == "3000x4000" else ""
        label = f"{r['views']} views {r['input']}"
        rows.append(
            _row(
                "bc `POST /v1/exams?stream=true`",
                label,
                1,
                "same work in-process",
                svc,
                f["in_process"],
                t,
            )
        )
        rows.append(
            _row("bc `POST /v1/exams?stream=true`", label, 1, "minimal script", svc, f["minimal"])
        )


def _stack(rows: list[str], stack: dict[str, Any]) -> None:
    for name, route in (
        ("tb_service", "tb `POST /v1/predict`"),
        ("gateway", "gateway `POST /v1/predict/chest` (its own CPU)"),
    ):
        f = stack[name]["figures"]
        rows.append(
            _row(
                route,
                stack["input"],
                1,
                "the same on h11 + asyncio (previous HTTP stack)",
                f["httptools_uvloop"],
                f["h11_asyncio"],
            )
        )


def summary() -> str:
    chest, gw, mammo, start = read("chest"), read("gateway"), read("mammo"), read("startup")
    stack = read("http_stack")
    first = next((x for x in (chest, gw, mammo, start) if x), None)
    if first is None:
        return "no bench/results/*.json yet: run `make bench`"
    lines = [
        f"Machine: {first['machine']}; commit {first['commit']}; {first['when']}; "
        f"load average at the end {first['load_average_at_end']} (the machine is shared with "
        f"other engineers' jobs); plan {'quick' if first['plan']['quick'] else 'full'}.",
        "",
        HEAD,
    ]
    rows: list[str] = []
    if chest:
        _chest(rows, chest)
    if gw:
        _gateway(rows, gw)
    if mammo:
        _mammo(rows, mammo)
    if stack:
        _stack(rows, stack)
    lines += rows
    if start:
        t = _target(start["gateway_restart_s"], 1.5, "gateway ≤ 1.5 s")
        lines += [
            "",
            f"Start-up to ready: gateway {start['gateway_restart_s']:.2f} s ({t}; on a fresh "
            f"database with its migrations {start['gateway_fresh_db_s']:.2f} s), tb_service "
            f"{start['tb_service_s']:.2f} s, bc_service {start['bc_service_s']:.2f} s; importing "
            f"gateway.app {start['gateway_import_ms']:.0f} ms (heaviest: "
            + ", ".join(f"{k} {v}" for k, v in start["gateway_import_heaviest_ms"].items())
            + ").",
        ]
    if chest:
        lines += [
            "",
            f"Settings, the same for every service and its in-process yardstick: "
            f"{chest['settings']}, ONNX Runtime intra-op threads {chest['onnx_intra_op_threads']} "
            f"(0: ONNX Runtime's choice), CPU pool {chest['cpu_workers']} threads; the minimal "
            "script runs on one thread.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
