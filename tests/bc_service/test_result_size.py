"""bc_service's final SSE ``result`` event of a 4-view exam stays small at full-field size
(3000 x 4000 views): each view carries a low-resolution score map, not inline overlay PNGs."""

from __future__ import annotations

import httpx

from tests.bc_service.images import big_view
from tests.bc_service.sseclient import read_all
from tests.imagegen import png_bytes

TAGS = ("R-CC", "L-CC", "R-MLO", "L-MLO")
MAX_EVENT_BYTES = 100_000


def test_four_full_field_views_give_a_small_result_event(client: httpx.Client) -> None:
    files = [
        (tag, (f"{tag}.png", png_bytes(big_view(tag.startswith("R"), seed=i // 2)), "image/png"))
        for i, tag in enumerate(TAGS)
    ]
    events, _ = read_all(client, "POST", "/v1/exams?stream=true", files=files)
    last = events[-1]
    assert last.event == "result"
    exam = last.json()
    assert exam["status"] == "succeeded", exam.get("error")
    assert len(last.data.encode()) <= MAX_EVENT_BYTES, len(last.data.encode())
    for view in exam["result"]["views"]:
        assert view["heatmaps"] == {}
        grid = view["score_map"]["values"]
        assert 1 <= len(grid) <= 48 and 1 <= len(grid[0]) <= 48
        assert all(round(v, 2) == v for row in grid for v in row)
