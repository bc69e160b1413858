"""Fair comparisons: interleaved blocks, repeats, p50/p95 and CPU per request.

A :class:`Variant` is one way of doing the same work (the service over HTTP, the same code
in-process, a minimal user script, ...): ``call(i)`` does request ``i`` and ``cpu()`` reads the
CPU seconds of the processes that do the work. :func:`compare` runs every variant in blocks of
``block`` requests from ``concurrency`` threads, in a rotating order, ``repeats`` times, so a
burst of load from the machine's other users falls on every variant alike; wall-clock figures
are pooled over the blocks, CPU per request is the sum over the blocks (far less sensitive to
other load than latency).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc; 0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds of ``pid`` and its live descendants (read the tree once per call)."""

    def read() -> float:
        return sum(proc_cpu_s(p) for p in descendants(pid))

    return read


def self_cpu() -> float:
    return time.process_time()


@dataclass
class Variant:
    name: str
    call: Callable[[int], None]
    cpu: Callable[[], float] = self_cpu


@dataclass
class Figures:
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies_ms)
        n = len(lat)
        if n == 0:
            return {"n": 0}
        p95 = lat[min(n - 1, round(0.95 * (n - 1)))]
        return {
            "n": n,
            "p50_ms": round(statistics.median(lat), 2),
            "p95_ms": round(p95, 2),
            "throughput_per_s": round(n / self.wall_s, 2) if self.wall_s else 0.0,
            "cpu_ms_per_req": round(self.cpu_s * 1000.0 / n, 2),
        }


def _block(variant: Variant, start: int, n: int, concurrency: int, fig: Figures) -> None:
    def one(i: int) -> None:
        t0 = time.perf_counter()
        variant.call(i)
        fig.latencies_ms.append((time.perf_counter() - t0) * 1000.0)

    cpu0 = variant.cpu()
    t0 = time.perf_counter()
    if concurrency == 1:
        for i in range(start, start + n):
            one(i)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(start, start + n)))
    fig.wall_s += time.perf_counter() - t0
    fig.cpu_s += variant.cpu() - cpu0


def compare(
    variants: list[Variant], *, block: int, repeats: int, concurrency: int = 1, warmup: int = 2
) -> dict[str, dict[str, float]]:
    """Every variant's pooled figures (see the module docstring)."""
    figs = {v.name: Figures() for v in variants}
    for v in variants:
        for i in range(warmup):
            v.call(i)
    for r in range(repeats):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            _block(v, r * block, block, concurrency, figs[v.name])
    return {name: fig.summary() for name, fig in figs.items()}


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    """a[key] / b[key], rounded; None when either is missing or b is 0."""
    x, y = a.get(key), b.get(key)
    if not isinstance(x, int | float) or not isinstance(y, int | float) or y == 0:
        return None
    return round(float(x) / float(y), 2)
