"""Bytes of bc_service's final SSE ``result`` event for one 4-view exam of full-field views
(mini-mias test views upscaled to 3000 x 4000, or phantoms without the data), with and
without the deprecated inline overlay PNGs (``IRMI_BC_HEATMAPS``). A real bc_service process
on loopback, one exam each.

    PYTHONPATH=. IRMI_DATA_DIR=/work/shared/data .venv/bin/python -m bench.mammo_result_size
"""

from __future__ import annotations

import httpx

from tests.bc_service.images import HAVE_MIAS, big_view
from tests.bc_service.sseclient import read_all
from tests.imagegen import png_bytes
from tests.procs import spawn, wait_ready

TAGS = ("R-CC", "L-CC", "R-MLO", "L-MLO")


def event_bytes(inline_heatmaps: bool) -> int:
    env = {
        "IRMI_BC_WORKERS": "1",
        "IRMI_BC_CPU_WORKERS": "1",
        "IRMI_BC_USE_GPU": "false",
        "IRMI_BC_HEATMAPS": str(inline_heatmaps).lower(),
        "IRMI_BC_MAMMOGRAM_GATE": str(HAVE_MIAS).lower(),
    }
    svc = spawn("bc_service", env)
    try:
        wait_ready(svc, timeout=180)
        files = [
            (t, (f"{t}.png", png_bytes(big_view(t.startswith("R"), i // 2)), "image/png"))
            for i, t in enumerate(TAGS)
        ]
        with httpx.Client(base_url=svc.url, timeout=600) as client:
            events, _ = read_all(client, "POST", "/v1/exams?stream=true", files=files)
        last = events[-1]
        assert last.event == "result" and last.json()["status"] == "succeeded", last.data[:300]
        return len(last.data.encode())
    finally:
        svc.stop()


def main() -> None:
    for inline in (False, True):
        print(f"IRMI_BC_HEATMAPS={str(inline).lower()}: {event_bytes(inline)} bytes")


if __name__ == "__main__":
    main()
