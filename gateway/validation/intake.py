"""One labelled upload of a validation run: a zip holding the images and ``labels.csv`` (or the
CSV as its own part), or image files (DICOM, PNG, JPEG) with the CSV.

The CSV has a header; ``file`` names an image (its path inside the zip, or the uploaded file's
name), ``label`` says whether the target condition is present (1/0, yes/no, true/false,
positive/negative, abnormal/normal); every other column is a subgroup (view, sex, age band,
device...). For mammography an optional ``breast`` column groups the views of one breast
into one labelled unit (each file its own breast without it).

A zip is refused before anything is unpacked when it holds more than ``max_entries`` files or
declares more than ``max_unpacked`` bytes, and while unpacking when an entry inflates past what
it declared; a member whose path leaves the archive (absolute, ``..``, a drive, a backslash) or
is a link is refused (zip-slip). Errors name CSV rows by number, never by file name: file names
are the site's and may carry personal data.
"""

from __future__ import annotations

import csv
import io
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from shared.errors import BadRequest, PayloadTooLarge, ValidationFailed

POSITIVE = {"1", "yes", "true", "positive", "abnormal", "pos", "y"}
NEGATIVE = {"0", "no", "false", "negative", "normal", "neg", "n"}
RESERVED = {"file", "label", "breast"}
MAX_SUBGROUP_VALUE = 64
CSV_NAMES = {"labels.csv"}


@dataclass
class LabelledUnit:
    """One labelled unit: a chest film, or the views of one breast (file names in order)."""

    files: list[str]
    label: int
    subgroups: dict[str, str] = field(default_factory=dict)
    row: int = 0  # the CSV row (1 = first data row) that defined it


@dataclass
class Upload:
    units: list[LabelledUnit]
    images: dict[str, bytes]  # file name -> bytes


def _label(value: str, row: int) -> int:
    v = value.strip().lower()
    if v in POSITIVE:
        return 1
    if v in NEGATIVE:
        return 0
    raise ValidationFailed(
        f"CSV row {row}: the label is not one of 1/0, yes/no, true/false, positive/negative, "
        "abnormal/normal.",
        details={"row": row, "field": "label"},
    )


def parse_labels(text: bytes, modality: str) -> list[LabelledUnit]:
    """The labelled units of a CSV (see module)."""
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The labels CSV is not UTF-8 text.") from None
    reader = csv.DictReader(io.StringIO(decoded))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "file" not in columns or "label" not in columns:
        raise ValidationFailed(
            "The labels CSV needs a header with the columns 'file' and 'label'.",
            details={"columns": columns[:20]},
        )
    groups = [c for c in columns if c not in RESERVED and c]
    units: dict[str, LabelledUnit] = {}
    seen: set[str] = set()
    for row, raw in enumerate(reader, start=1):
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        name = rec.get("file", "")
        if not name:
            raise ValidationFailed(f"CSV row {row}: 'file' is empty.", details={"row": row})
        if name in seen:
            raise ValidationFailed(
                f"CSV row {row}: this file is listed twice.", details={"row": row}
            )
        seen.add(name)
        label = _label(rec.get("label", ""), row)
        subgroups = {g: rec[g][:MAX_SUBGROUP_VALUE] for g in groups if rec.get(g)}
        key = (rec.get("breast") or "") if modality == "mammography" else ""
        key = key or f"\0{row}"
        unit = units.get(key)
        if unit is None:
            units[key] = LabelledUnit([name], label, subgroups, row)
        elif unit.label != label:
            raise ValidationFailed(
                f"CSV row {row}: the views of one breast carry different labels.",
                details={"row": row, "field": "label"},
            )
        else:
            unit.files.append(name)
    if not units:
        raise ValidationFailed("The labels CSV lists no image.")
    return list(units.values())


def _safe_member(info: zipfile.ZipInfo) -> str | None:
    """The member's path when it is a regular file inside the archive; None for folders;
    refused when it would leave the archive or is a link."""
    name = info.filename
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BadRequest(
            "The zip holds a path outside the archive.", details={"reason": "unsafe_path"}
        )
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise BadRequest(
            "The zip holds a path outside the archive.", details={"reason": "unsafe_path"}
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BadRequest("The zip holds a symbolic link.", details={"reason": "link"})
    if info.is_dir():
        return None
    if parts and (parts[0] == "__MACOSX" or parts[-1].startswith(".")):
        return None  # resource forks and hidden files of the packing tool
    return "/".join(parts)


def unpack_zip(data: bytes, max_entries: int, max_unpacked: int, max_file: int) -> dict[str, bytes]:
    """Every regular file of the zip by its path, under the limits (see module)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise BadRequest("The upload is not a readable zip archive.") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries:
            raise PayloadTooLarge(
                f"The zip holds {len(infos)} entries; at most {max_entries} are accepted per "
                "upload (send several uploads).",
                details={"entries": len(infos), "max_entries": max_entries},
            )
        declared = sum(i.file_size for i in infos)
        if declared > max_unpacked:
            raise PayloadTooLarge(
                f"The zip unpacks to {declared} bytes; at most {max_unpacked} per upload.",
                details={"unpacked_bytes": declared, "max_unpacked_bytes": max_unpacked},
            )
        out: dict[str, bytes] = {}
        total = 0
        for info in infos:
            name = _safe_member(info)
            if name is None:
                continue
            if info.file_size > max_file:
                raise PayloadTooLarge(
                    f"A file in the zip is larger than {max_file} bytes.",
                    details={"max_bytes": max_file},
                )
            try:
                with archive.open(info) as member:
                    body = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError):
                raise BadRequest(
                    "A file in the zip cannot be unpacked (corrupt, encrypted or an "
                    "unsupported compression)."
                ) from None
            if len(body) > info.file_size:  # inflates past what it declared
                raise PayloadTooLarge(
                    "A file in the zip unpacks to more than it declares.",
                    details={"reason": "inflated_past_declared_size"},
                )
            total += len(body)
            if total > max_unpacked:
                raise PayloadTooLarge(
                    f"The zip unpacks to more than {max_unpacked} bytes.",
                    details={"max_unpacked_bytes": max_unpacked},
                )
            out[name] = body
        return out


def match(units: list[LabelledUnit], images: dict[str, bytes]) -> Upload:
    """Pair each CSV row with its image (by path, else by base name when that is unique); a
    row without its image, or an image without its row, is refused."""
    by_base: dict[str, list[str]] = {}
    for path in images:
        by_base.setdefault(PurePosixPath(path).name, []).append(path)
    used: dict[str, bytes] = {}
    for unit in units:
        resolved: list[str] = []
        for name in unit.files:
            found: str | None = name if name in images else None
            if found is None:
                hits = by_base.get(PurePosixPath(name).name, [])
                found = hits[0] if len(hits) == 1 else None
            if found is None:
                raise ValidationFailed(
                    f"CSV row {unit.row}: its image is not in the upload.",
                    details={"row": unit.row, "field": "file"},
                )
            resolved.append(found)
            used[found] = images[found]
        unit.files = resolved
    extra = len(set(images) - set(used))
    if extra:
        raise ValidationFailed(
            f"{extra} image(s) in the upload have no row in the labels CSV.",
            details={"unlabelled": extra},
        )
    return Upload(units, used)


def read_upload(
    *,
    modality: str,
    archive: bytes | None,
    labels: bytes | None,
    files: dict[str, bytes],
    max_entries: int,
    max_unpacked: int,
    max_file: int,
) -> Upload:
    """An upload as the route received it: a zip (its CSV inside or beside it) or files with
    their CSV."""
    if archive is None and not files:
        raise ValidationFailed(
            "Send a zip in 'archive', or image files in 'files' with 'labels'.",
            details={"field": "archive"},
        )
    images = dict(files)
    if archive is not None:
        images.update(unpack_zip(archive, max_entries, max_unpacked, max_file))
    if labels is None:
        inside = [p for p in images if PurePosixPath(p).name.lower() in CSV_NAMES]
        if len(inside) != 1:
            raise ValidationFailed(
                "Send the labels as a 'labels' CSV part, or as one labels.csv in the zip.",
                details={"field": "labels"},
            )
        labels = images.pop(inside[0])
    else:
        for p in [p for p in images if PurePosixPath(p).name.lower() in CSV_NAMES]:
            images.pop(p)
    return match(parse_labels(labels, modality), images)
