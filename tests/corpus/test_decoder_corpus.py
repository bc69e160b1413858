"""Every corpus file through the shared decoder: the expected outcome, never anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import IRMIError
from shared.imaging import decode_image

HERE = Path(__file__).resolve().parent
MANIFEST: dict[str, dict[str, object]] = json.loads((HERE / "manifest.json").read_text())


def test_corpus_is_large_enough() -> None:
    assert len(MANIFEST) >= 40
    assert all((HERE / "files" / name).exists() for name in MANIFEST)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_decoder_outcome(name: str) -> None:
    data = (HERE / "files" / name).read_bytes()
    expected = MANIFEST[name]["decode"]
    if expected == "ok":
        img = decode_image(data)
        assert img.width >= 16 and img.height >= 16
    else:
        with pytest.raises(IRMIError) as info:
            decode_image(data)
        assert info.value.code == expected
        assert 400 <= info.value.status_code < 500
