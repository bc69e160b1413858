"""Time one file through the pipeline by stage, as the training report and the benchmark
measure it: decode, then one untagged view, without progress events."""

from __future__ import annotations

import time

from bc_service.pipeline.mammo import MammoPipeline, ViewInput
from shared.imaging import DecodedImage, decode_image


def time_view(
    pipe: MammoPipeline, data: bytes, per_stage: dict[str, list[float]]
) -> tuple[float, DecodedImage]:
    """Decode ``data`` and run it as one view; append each stage's milliseconds (and
    ``file_decode``) to ``per_stage``. Returns the total milliseconds and the decoded image."""
    start = time.perf_counter()
    img = decode_image(data)
    decode_ms = (time.perf_counter() - start) * 1000
    result = pipe.run_view(ViewInput("view-0", img, None), lambda a, b: None)
    total_ms = (time.perf_counter() - start) * 1000
    per_stage.setdefault("file_decode", []).append(decode_ms)
    for k, v in result.timings_ms.items():
        per_stage.setdefault(k, []).append(v)
    return total_ms, img
