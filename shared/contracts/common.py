"""Pieces both inference contracts use."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    """Which model produced a figure: thresholds are tied to a model version."""

    name: str
    version: str
    sha256: str


class PngImage(BaseModel):
    """An inline PNG (base64). The gateway stores these and serves them by URL instead."""

    media_type: str = "image/png"
    width: int
    height: int
    base64: str = Field(description="Base64 of the PNG file (RGBA, overlay-ready).")


class CropBox(BaseModel):
    """Pixel box in the ORIGINAL image's coordinates (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
