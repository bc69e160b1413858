"""``python -m tb_service.train invariance``: the same film gets the same score whatever its
encoding and size (issue 13, item 3). TensorFlow-free.

Every film is sent through the served path (the tb_service app in process, ``POST
/v1/predict``, lifespan run: models loaded, batcher started) as PNG 8-bit (the reference),
JPEG q95 and q60, PNG 16-bit holding 8-bit and 12-bit values, DICOM MONOCHROME2 and
MONOCHROME1, and as PNG 8-bit at 0.5x, 2x and 4x its size. The figure is |delta
p_abnormal| against the reference, summarised per variant (median, p95, max) with the
films the gate refused counted apart. The bound the issue sets: p95 <= 0.03.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shared.imaging import decode_image, encode_dicom, encode_png, to_uint8
from shared.settings import default_data_dir
from tb_service.settings import Settings

log = logging.getLogger("irmi.train")

BOUND = 0.03
REFERENCE = "png8"
TEST_SPLIT_SOURCES = ("nih-cxr14", "kermany-pediatric")
EVAL_ONLY_SOURCES = ("tbx11k", "hannover-covid19")

Film = NDArray[np.uint8]


def _jpeg(film: Film, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(film).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _scaled(film: Film, factor: float) -> bytes:
    h, w = film.shape[:2]
    size = (max(16, round(w * factor)), max(16, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return encode_png(np.asarray(cv2.resize(film, size, interpolation=interp), np.uint8))


def _12bit(film: Film) -> NDArray[np.uint16]:
    return np.round(film.astype(np.float64) * 4095.0 / 255.0).astype(np.uint16)


ENCODINGS: dict[str, Callable[[Film], bytes]] = {
    REFERENCE: encode_png,
    "jpeg_q95": lambda f: _jpeg(f, 95),
    "jpeg_q60": lambda f: _jpeg(f, 60),
    "png16_8bit": lambda f: encode_png(f.astype(np.uint16)),
    "png16_12bit": lambda f: encode_png(_12bit(f)),
    "dicom_monochrome2": lambda f: encode_dicom(f, modality="DX"),
    "dicom_monochrome1": lambda f: encode_dicom(255 - f, modality="DX", photometric="MONOCHROME1"),
    "scale_0.5x": lambda f: _scaled(f, 0.5),
    "scale_2x": lambda f: _scaled(f, 2.0),
    "scale_4x": lambda f: _scaled(f, 4.0),
}
LOSSLESS = ("png16_8bit", "png16_12bit", "dicom_monochrome2", "dicom_monochrome1")
"""Encodings that carry exactly the reference's 8-bit pixels (12-bit: up to rounding)."""


@dataclass(frozen=True)
class FilmRef:
    source: str
    path: Path


def sample_films(
    data_dir: Path | None = None, per_source: int | None = 6, eval_only: int | None = 0
) -> list[FilmRef]:
    """``per_source`` films (None: all) of each chest source's test split, spread evenly over
    its sorted list (so both labels appear), and ``eval_only`` (None: all) of each
    evaluation-only set."""
    root = Path(data_dir or default_data_dir())
    out: list[FilmRef] = []
    for source in TEST_SPLIT_SOURCES + EVAL_ONLY_SOURCES:
        folder = root / source
        if not (folder / "labels.csv").exists():
            continue
        if source in TEST_SPLIT_SOURCES:
            with (folder / "splits.csv").open() as fh:
                paths = sorted(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
            n = per_source
        else:
            with (folder / "labels.csv").open() as fh:
                paths = sorted(r["path"] for r in csv.DictReader(fh))
            n = eval_only
        if n is not None:
            idx = np.linspace(0, len(paths) - 1, num=min(n, len(paths))).round().astype(int)
            paths = [paths[i] for i in sorted(set(idx.tolist()))] if n > 0 else []
        out.extend(FilmRef(source, folder / p) for p in paths)
    return out


def load_film(ref: FilmRef) -> Film:
    return to_uint8(decode_image(ref.path.read_bytes()))


@asynccontextmanager
async def served_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The tb_service app in process with its lifespan run, behind an httpx client."""
    from tb_service.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://tb", timeout=120) as c:
            yield c


async def score(client: httpx.AsyncClient, data: bytes) -> float | str:
    """p_abnormal of one upload, or the error code it was refused with."""
    files = {"file": ("film", data, "application/octet-stream")}
    r = await client.post("/v1/predict", files=files, params={"heatmap": "false"})
    body = r.json()
    if r.status_code != 200:
        return str(body.get("error", {}).get("code", r.status_code))
    return float(body["probabilities"]["abnormal"])


async def measure(client: httpx.AsyncClient, films: list[FilmRef]) -> list[dict[str, Any]]:
    """One row per film: its source, path and the score (or refusal) of every encoding."""
    rows = []
    for i, ref in enumerate(films):
        film = load_film(ref)
        scores = {name: await score(client, enc(film)) for name, enc in ENCODINGS.items()}
        rows.append({"source": ref.source, "path": ref.path.name, "scores": scores})
        if i % 50 == 0:
            log.info("invariance %d/%d", i, len(films))
    return rows


def summarise(rows: list[dict[str, Any]], sources: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Per encoding: films, refused, median / p95 / max |delta p_abnormal| vs the reference
    (films whose reference was refused are left out and counted)."""
    rows = [r for r in rows if sources is None or r["source"] in sources]
    usable = [r for r in rows if isinstance(r["scores"][REFERENCE], float)]
    out: dict[str, Any] = {"films": len(rows), "reference_refused": len(rows) - len(usable)}
    per: dict[str, Any] = {}
    for name in ENCODINGS:
        if name == REFERENCE:
            continue
        deltas = [
            abs(r["scores"][name] - r["scores"][REFERENCE])
            for r in usable
            if isinstance(r["scores"][name], float)
        ]
        refused = sum(1 for r in usable if not isinstance(r["scores"][name], float))
        d = np.asarray(deltas, np.float64)
        per[name] = {
            "n": len(deltas),
            "refused": refused,
            "median": round(float(np.median(d)), 4) if d.size else None,
            "p95": round(float(np.percentile(d, 95)), 4) if d.size else None,
            "max": round(float(d.max()), 4) if d.size else None,
        }
    out["encodings"] = per
    every = [v["p95"] for v in per.values() if v["p95"] is not None]
    out["worst_p95"] = max(every) if every else None
    out["passes"] = (
        bool(every) and max(every) <= BOUND and all(v["refused"] == 0 for v in per.values())
    )
    return out


def markdown(report: dict[str, Any], model: str) -> str:
    lines = [
        f"# Invariance of {model}: the same film in every encoding and size",
        "",
        f"|Δ p_abnormal| against the PNG 8-bit original through the served path (tb_service, "
        f"POST /v1/predict); bound: p95 <= {BOUND}. `refused`: variants the service refused "
        "although it accepted the original. Measured with `python -m tb_service.train "
        "invariance` (`make chest-invariance`): every test-split film of nih-cxr14 and "
        "kermany-pediatric, up to 100 films of each evaluation-only set (tbx11k, "
        "hannover-covid19), spread evenly over their sorted lists; the service as configured "
        "by default (orientation model, gate and screen as committed).",
        "",
    ]
    for group, s in report["groups"].items():
        lines += [
            f"## {group}: {s['films']} films ({s['reference_refused']} originals refused), "
            f"worst p95 {s['worst_p95']}, {'PASSES' if s['passes'] else 'FAILS'} the bound",
            "",
            "| encoding | films | refused | median | p95 | max |",
            "|---|---|---|---|---|---|",
        ]
        for name, v in s["encodings"].items():
            lines.append(
                f"| {name} | {v['n']} | {v['refused']} | {v['median']} | {v['p95']} | {v['max']} |"
            )
        lines.append("")
    return "\n".join(lines)


def report(rows: list[dict[str, Any]], model: str) -> dict[str, Any]:
    groups = {"all": summarise(rows)}
    for source in sorted({r["source"] for r in rows}):
        groups[source] = summarise(rows, (source,))
    return {"model": model, "bound": BOUND, "groups": groups}


def cmd_invariance(
    data_dir: Path | None = None, per_source: int | None = None, eval_only: int | None = 100
) -> dict[str, Any]:
    """The full measurement: writes var/results/invariance.json and invariance.md, and the
    table beside the served model's card (``<models>/<name>/<version>/invariance.md``)."""
    from tb_service.train.results import RESULTS

    settings = Settings(use_gpu=False)
    films = sample_films(data_dir, per_source, eval_only)

    async def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with served_client(settings) as client:
            models = (await client.get("/v2/models")).json()["models"]
            abn = next(m for m in models if m["name"] == settings.abnormality_model)
            return await measure(client, films), abn

    rows, abn = asyncio.run(run())
    model = f"{abn['name']} v{abn['version']}"
    res = report(rows, model)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "invariance.json").write_text(json.dumps({**res, "rows": rows}, indent=1))
    (RESULTS / "invariance.md").write_text(markdown(res, model))
    served_folder = Path(settings.models_dir) / str(abn["name"]) / str(abn["version"])
    if served_folder.is_dir():
        (served_folder / "invariance.md").write_text(markdown(res, model))
    log.info("invariance: worst p95 %s -> %s", res["groups"]["all"]["worst_p95"], RESULTS)
    return res
