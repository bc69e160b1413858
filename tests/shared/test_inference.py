"""The inference kit: warm-up on every served format, stage timings, clamps, admission tickets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.batching import Admission
from shared.errors import NotAChestXray, Overloaded
from shared.imaging import DecodedImage, ImageLimits, decode_image
from shared.inference import (
    WARMUP_FORMATS,
    ImageModel,
    encode_upload,
    probability,
    synthetic_texture,
)
from shared.model import ModelRepository, PreprocessingMismatch
from shared.transforms import Compose, StageTimings, Transform
from tests.onnxgen import tiny_model_folder


class Recorder(ImageModel[DecodedImage, float, float, str]):
    """A model definition that records what went through it."""

    def __init__(self, repo: ModelRepository, refuse: bool = False) -> None:
        super().__init__(repo, ImageLimits(), strict_preprocessing=True)
        self.seen: list[str] = []
        self.refuse = refuse

    def preprocess(self, request: DecodedImage, timings: StageTimings) -> float:
        with timings.stage("mean"):
            self.seen.append(request.format)
            return float(request.pixels.mean())

    def predict(self, prepared: float, timings: StageTimings) -> float:
        if self.refuse:
            raise NotAChestXray()
        return prepared / 255.0

    def postprocess(self, prepared: float, scored: float, timings: StageTimings) -> str:
        return f"{scored:.2f}"

    def warmup_input(self, image: DecodedImage) -> DecodedImage:
        return image


def test_uploads_of_every_format_decode_to_the_same_pixels() -> None:
    pixels = synthetic_texture(40, 30)
    for fmt in WARMUP_FORMATS:
        img = decode_image(encode_upload(pixels, fmt, "MG"))
        assert img.format == fmt and img.pixels.shape == (40, 30)
        assert np.abs(img.pixels.astype(int) - pixels).mean() < 3  # JPEG is lossy
    assert decode_image(encode_upload(pixels, "dicom", "MG")).meta["Modality"] == "MG"


def test_warmup_runs_every_format_through_the_whole_path() -> None:
    model = Recorder(ModelRepository(Path("/nonexistent")))
    assert not model.ready
    model.warmup()
    assert model.ready and model.seen == list(WARMUP_FORMATS)
    assert set(model.warmup_ms) == set(WARMUP_FORMATS)


def test_a_refused_warmup_upload_still_warms_the_rest() -> None:
    model = Recorder(ModelRepository(Path("/nonexistent")), refuse=True)
    model.warmup()
    assert model.ready and model.seen == list(WARMUP_FORMATS)


def test_infer_times_each_stage() -> None:
    model = Recorder(ModelRepository(Path("/nonexistent")))
    timings = StageTimings()
    image = decode_image(encode_upload(synthetic_texture(20, 20), "png"))
    assert model.infer(image, timings) == f"{image.pixels.mean() / 255.0:.2f}"
    assert list(timings.ms) == ["mean"] and timings.ms["mean"] >= 0


class Flip(Transform):
    def __call__(self, data: Any) -> Any:
        return data


def test_bind_checks_the_card_against_the_pipeline(tmp_path: Path) -> None:
    tiny_model_folder(tmp_path, "tiny")  # card steps: []
    repo = ModelRepository(tmp_path, use_gpu=False)
    repo.load_all()
    model = Recorder(repo)
    assert model.bind("tiny", Compose([])) is repo.get("tiny")
    assert [r.name for r in model.model_refs()] == ["tiny"]
    assert model.bind("absent", Compose([])) is None
    with pytest.raises(PreprocessingMismatch):
        model.bind("tiny", Compose([Flip()]))


def test_probability_clamps_and_replaces_non_finite() -> None:
    assert probability(float("nan")) == 0.0 and probability(float("inf"), 0.5) == 0.5
    assert probability(1.5) == 1.0 and probability(-0.1) == 0.0 and probability(0.25) == 0.25


def test_a_ticket_is_given_back_once_and_only_by_its_owner() -> None:
    adm = Admission(2, "jobs", retry_after_s=lambda: 7)
    first, second = adm.reserve(), adm.reserve()
    with pytest.raises(Overloaded) as info:
        adm.reserve()
    assert info.value.headers["Retry-After"] == "7"
    first.release()
    first.release()
    assert adm.active == 1
    second.transfer()
    second.release()  # the request's clean-up: the job owns the place now
    assert adm.active == 1
    second.release(owner=True)
    second.release(owner=True)
    assert adm.active == 0
