"""A validation upload is read whole or refused with a clear 4xx: zips bounded in entries and
unpacked size (also when an entry lies about its size), zip-slip and links refused, every CSV
row paired with its image and every image with its row, errors naming rows, never files."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from gateway.validation.intake import parse_labels, read_upload, unpack_zip
from shared.errors import BadRequest, IRMIError, PayloadTooLarge, ValidationFailed

LIMITS = {"max_entries": 10, "max_unpacked": 10_000, "max_file": 5_000}


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _read(archive: bytes, **kw: object) -> object:
    args: dict[str, object] = {"modality": "chest", "archive": archive, "labels": None}
    args.update(files={}, **LIMITS)
    args.update(kw)
    return read_upload(**args)  # type: ignore[arg-type]


CSV = b"file,label,sex\nimg/a.png,1,f\nb.png,normal,m\n"


def test_a_zip_with_its_csv() -> None:
    up = _read(_zip({"labels.csv": CSV, "img/a.png": b"A", "b.png": b"B", "__MACOSX/x": b""}))
    units = up.units  # type: ignore[attr-defined]
    assert [(u.files, u.label, u.subgroups) for u in units] == [
        (["img/a.png"], 1, {"sex": "f"}),
        (["b.png"], 0, {"sex": "m"}),
    ]


@pytest.mark.parametrize(
    "name", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/evil.png", "a\\..\\evil"]
)
def test_zip_slip_is_refused(name: str) -> None:
    with pytest.raises(BadRequest) as exc:
        _read(_zip({"labels.csv": CSV, name: b"x"}))
    assert exc.value.details["reason"] == "unsafe_path"


def test_a_link_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(BadRequest, match="symbolic link"):
        unpack_zip(buf.getvalue(), **LIMITS)


def test_too_many_entries_and_too_large() -> None:
    many = _zip({f"{i}.png": b"x" for i in range(11)})
    with pytest.raises(PayloadTooLarge) as exc:
        unpack_zip(many, **LIMITS)
    assert exc.value.details == {"entries": 11, "max_entries": 10}
    bomb = _zip({"a.png": b"\0" * 20_000})  # compresses to a few dozen bytes
    with pytest.raises(PayloadTooLarge, match="unpacks to"):
        unpack_zip(bomb, **LIMITS)


def test_an_entry_that_inflates_past_its_declared_size() -> None:
    data = bytearray(_zip({"a.png": b"\0" * 4000}))
    # Declare 100 bytes in both headers: the reader must stop, not trust it.
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(sig)
        data[at + off : at + off + 4] = (100).to_bytes(4, "little")
    with pytest.raises((PayloadTooLarge, BadRequest)):
        unpack_zip(bytes(data), **LIMITS)


def test_not_a_zip() -> None:
    with pytest.raises(BadRequest, match="not a readable zip"):
        unpack_zip(b"PK\x03\x04 nope", **LIMITS)


@pytest.mark.parametrize(
    ("csv", "members", "match"),
    [
        (b"name,label\na.png,1\n", {"a.png": b"A"}, "'file' and 'label'"),
        (b"file,label\na.png,maybe\n", {"a.png": b"A"}, "row 1: the label"),
        (b"file,label\na.png,1\nmissing.png,0\n", {"a.png": b"A"}, "row 2: its image"),
        (b"file,label\na.png,1\n", {"a.png": b"A", "b.png": b"B"}, "have no row"),
        (b"file,label\na.png,1\na.png,0\n", {"a.png": b"A"}, "row 2: this file is listed twice"),
        (b"file,label\n", {"a.png": b"A"}, "lists no image"),
    ],
)
def test_csv_errors_name_rows_not_files(csv: bytes, members: dict[str, bytes], match: str) -> None:
    with pytest.raises(IRMIError, match=match) as exc:
        _read(_zip({"labels.csv": csv, **members}))
    assert "missing.png" not in exc.value.message


def test_loose_files_with_a_csv_part_and_breasts() -> None:
    labels = b"file,label,breast\nl-cc.png,1,L\nl-mlo.png,1,L\nr-cc.png,0,R\n"
    files = {"l-cc.png": b"1", "l-mlo.png": b"2", "r-cc.png": b"3"}
    up = _read(None, files=files, labels=labels, modality="mammography")
    units = up.units  # type: ignore[attr-defined]
    assert [(u.files, u.label) for u in units] == [
        (["l-cc.png", "l-mlo.png"], 1),
        (["r-cc.png"], 0),
    ]
    bad = b"file,label,breast\nl-cc.png,1,L\nl-mlo.png,0,L\n"
    with pytest.raises(ValidationFailed, match="different labels"):
        parse_labels(bad, "mammography")
    # for chest, each row is its own film
    assert len(parse_labels(labels, "chest")) == 3
