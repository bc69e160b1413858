"""Settings of tb_service (environment prefix ``IRMI_TB_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

MODELS_DIR = Path(__file__).resolve().parent / "models"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_TB_", extra="ignore")

    port: int = 8001
    processes: int = Field(
        default=2,
        ge=1,
        description="Worker processes sharing the port (tb_service keeps no state between "
        "requests); one per core the pod may use. /metrics sums over them; the upload and "
        "in-flight bounds are per process.",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="PROMETHEUS_MULTIPROC_DIR of a multi-process service, emptied at start "
        "(default: a private temporary folder).",
    )
    # One ONNX Runtime thread per run: the worker processes and their CPU pools already run
    # as many requests at once as there are cores.
    onnx_intra_op_threads: int = 1
    models_dir: Path = MODELS_DIR
    # Models that must load before the service reports ready (JSON list in the environment).
    required_models: list[str] = ["chest-gate", "chest-abnormality", "lung-seg"]
    gate_model: str = "chest-gate"
    abnormality_model: str = "chest-abnormality"
    # The lung segmentation model behind the chest pipeline's lung_seg_crop step.
    seg_model: str = "lung-seg"
    # Rotated films are turned upright, mirrored ones flagged; used when it is loaded.
    orientation_model: str = "chest-orientation"
    # Refuse to start when a card's recorded preprocessing steps differ from the code's.
    strict_preprocessing: bool = True

    # Dynamic batching: requests arriving together run as one ONNX run.
    batching: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="auto: batch on an accelerator (CUDA), not on the CPU, where a batch costs "
        "as much as its items one by one and only adds queueing; on / off: always / never.",
    )
    max_batch_size: int = Field(default=8, ge=1, le=256)
    max_wait_ms: float = Field(default=10.0, ge=0, description="Longest wait to fill a batch.")
    max_queue: int = Field(default=64, ge=1, description="Items waiting for a batch; then 503.")
    max_in_flight: int = Field(
        default=0,
        ge=0,
        description="Requests worked on at once (decode to answer); 0 = max_queue + "
        "2 x max_batch_size. Beyond it: 503 overloaded.",
    )
    retry_after_s: int = Field(default=1, ge=1)

    # Request shape limits (the per-image limits are the shared max_upload_bytes & co).
    max_batch_files: int = Field(default=16, ge=1, description="Files per /v1/predict/batch.")
    max_batch_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1, description="Whole body of one /v1/predict/batch."
    )

    opencv_threads: int = Field(
        default=1,
        ge=0,
        description="OpenCV's own threads per call (0 = OpenCV's default). Requests already run "
        "in parallel on the CPU pool; nested OpenCV threads only oversubscribe the cores.",
    )

    # The deprecated full-size heatmap (the CAM as an RGBA PNG the original's size), made only
    # for callers who ask (?heatmap=true); False refuses it. The score map always comes.
    heatmap: bool = True
    heatmap_max_alpha: float = Field(default=0.75, gt=0, le=1)
    heatmap_max_side: int = Field(
        default=0,
        ge=0,
        description="0: the PNG has the original image's size. N > 0: originals larger than N "
        "px get a PNG of the same aspect with long side N (PngImage.width/height say which).",
    )

    def in_flight_limit(self) -> int:
        return self.max_in_flight or (self.max_queue + 2 * self.max_batch_size)
