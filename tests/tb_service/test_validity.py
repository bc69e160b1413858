"""Validity (issue 13, item 4): what is not a frontal chest X-ray is refused, with the evidence
we have: DICOM headers (modality, body part, view), and the gate on mammograms (mini-mias),
photographs and synthetic documents. Radiographs of other body parts and lateral films
without a header: no evidence here (no such images), see tb_service/train/negatives.py."""

from __future__ import annotations

import asyncio
import csv
from typing import Any

import httpx
import numpy as np
import pytest

from shared.contracts.screening import ReliabilityReason
from shared.errors import NotAChestXray, UnsupportedView
from shared.imaging import decode_image, encode_dicom, encode_png, to_uint8
from shared.settings import default_data_dir
from tb_service.settings import MODELS_DIR, Settings
from tb_service.train.invariance import served_client
from tb_service.train.negatives import document, document_images
from tb_service.validity import check_header

DATA = default_data_dir()
REAL = all(any((MODELS_DIR / n).glob("*/model.onnx")) for n in ("chest-gate", "chest-abnormality"))
needs_real = pytest.mark.skipif(
    not REAL or not (DATA / "nih-cxr14" / "splits.csv").exists(),
    reason=f"real chest models under {MODELS_DIR} or the real data folder {DATA} absent",
)


# ------------------------------------------------------------------ the header, alone


@pytest.mark.parametrize("modality", ["MG", "CT", "MR", "US", "XC", "mg"])
def test_non_radiograph_modalities_are_refused(modality: str) -> None:
    with pytest.raises(NotAChestXray) as info:
        check_header({"Modality": modality})
    assert info.value.details["reason"] == "dicom_modality"


@pytest.mark.parametrize("part", ["HAND", "KNEE", "SKULL", "L-SPINE", "Abdomen"])
def test_other_body_parts_are_refused(part: str) -> None:
    with pytest.raises(NotAChestXray) as info:
        check_header({"Modality": "DX", "BodyPartExamined": part})
    assert info.value.details["reason"] == "dicom_body_part"


@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL", "lat"])
def test_lateral_views_are_unsupported(view: str) -> None:
    with pytest.raises(UnsupportedView) as info:
        check_header({"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": view})
    assert info.value.code == "unsupported_view" and info.value.status_code == 422


@pytest.mark.parametrize("view", ["LLD", "RLO"])
def test_other_views_are_scored_but_flagged(view: str) -> None:
    assert check_header({"ViewPosition": view}) == [ReliabilityReason.unvalidated_view]


@pytest.mark.parametrize(
    "meta",
    [{}, {"Modality": "DX", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}, {"Modality": "OT"}],
)
def test_frontal_chest_and_silent_headers_pass(meta: dict[str, str]) -> None:
    assert check_header(meta) == []


def test_documents_are_deterministic_gray_pages() -> None:
    a, b = document(5, 600, 800), document(5, 600, 800)
    assert a.shape == (800, 600) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert float(a.mean()) > 150  # a light page with dark ink
    docs = list(document_images(12))
    assert {d.split for d in docs} == {"train", "val", "test"}


# ------------------------------------------------------------------ served, real models


def _test_paths(dataset: str, n: int) -> list[str]:
    with (DATA / dataset / "splits.csv").open() as fh:
        rows = sorted(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
    return rows[:: max(1, len(rows) // n)][:n]


def _film(dataset: str, path: str) -> np.ndarray:
    return to_uint8(decode_image((DATA / dataset / path).read_bytes()))


def _serve(uploads: list[bytes]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with served_client(Settings(use_gpu=False, onnx_intra_op_threads=1)) as c:
            files = [{"file": ("upload", u, "application/octet-stream")} for u in uploads]
            return [await c.post("/v1/predict", files=f) for f in files]

    return asyncio.run(run())


def _code(r: httpx.Response) -> str | None:
    body: dict[str, Any] = r.json()
    return body["error"]["code"] if r.status_code != 200 else None


@needs_real
def test_served_refusals_and_flags() -> None:
    film = _film("nih-cxr14", _test_paths("nih-cxr14", 1)[0])
    mammos = [
        (DATA / "mini-mias" / p).read_bytes()
        for p in (_test_paths("mini-mias", 6) if (DATA / "mini-mias").exists() else [])
    ]
    docs = [encode_png(d.image.pixels) for d in document_images(48) if d.split == "test"]
    headers = {
        "lateral": encode_dicom(film, modality="DX", extra={"ViewPosition": "LL"}),
        "knee": encode_dicom(film, modality="DX", extra={"BodyPartExamined": "KNEE"}),
        "mammo_dicom": encode_dicom(film, modality="MG"),
        "decubitus": encode_dicom(film, modality="DX", extra={"ViewPosition": "LLD"}),
        "frontal": encode_dicom(
            film, modality="DX", extra={"ViewPosition": "PA", "BodyPartExamined": "CHEST"}
        ),
    }
    out = _serve([*headers.values(), *mammos, *docs])
    by_name = dict(zip(headers, out[: len(headers)], strict=True))
    assert _code(by_name["lateral"]) == "unsupported_view"
    assert _code(by_name["knee"]) == "not_a_chest_xray"
    assert _code(by_name["mammo_dicom"]) == "not_a_chest_xray"
    assert _code(by_name["frontal"]) is None
    assert "unvalidated_view" not in by_name["frontal"].json()["reliability"]["reasons"]
    decubitus = by_name["decubitus"].json()
    assert decubitus["reliability"]["outside_population"] is True
    assert "unvalidated_view" in decubitus["reliability"]["reasons"]
    rest = out[len(headers) :]
    assert len(docs) >= 8
    assert [_code(r) for r in rest] == ["not_a_chest_xray"] * len(rest)
