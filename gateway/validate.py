"""``python -m gateway.validate DIR``: validate IRMI on a folder of the site's labelled films,
through a running gateway, as an administrator.

``DIR`` holds the images (any sub-folders) and ``labels.csv`` (``file,label[,subgroup...]``,
``file`` relative to ``DIR``; see gateway/validation/intake.py). The command creates a run,
sends the films in zips of at most ``--batch-mb`` (each with the CSV rows of its files), starts
the run, follows its progress, and saves ``report.json``, ``report.pdf`` and ``scores.csv``
to ``--out``. The admin's password comes from standard input with ``--password-stdin``, else
from ``IRMI_ADMIN_PASSWORD``, else from a prompt (never from the command line). File names are
not printed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx

from gateway.admin import read_password
from gateway.upstream import SseEvent


def _rows(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise SystemExit(f"no labels.csv in {folder}")
    with labels.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def batches(folder: Path, max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Zips of the folder's labelled films, each under ``max_bytes`` of images (a film larger
    than that goes alone), with the CSV rows of its films; and how many rows each holds."""
    header, rows = _rows(folder)
    group: list[dict[str, str]] = []
    size = 0

    def pack() -> tuple[bytes, int]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(group)
            zf.writestr("labels.csv", text.getvalue())
            for row in group:
                zf.write(folder / row["file"], row["file"])
        return buf.getvalue(), len(group)

    for number, row in enumerate(rows, start=1):
        rel = PurePosixPath(row.get("file", ""))
        path = folder / rel
        if rel.is_absolute() or ".." in rel.parts or not path.is_file():
            raise SystemExit(f"labels.csv row {number}: no such file under {folder}")
        n = path.stat().st_size
        if group and size + n > max_bytes:
            yield pack()
            group, size = [], 0
        group.append(row)
        size += n
    if group:
        yield pack()


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        try:
            err = resp.json()["error"]
            msg = f"{err['code']}: {err['message']}"
        except Exception:
            msg = resp.text[:300]
        raise SystemExit(f"the gateway refused ({resp.status_code}): {msg}")
    return resp


def _events(client: httpx.Client, url: str) -> Iterator[SseEvent]:
    with client.stream("GET", url, timeout=httpx.Timeout(60, read=None)) as resp:
        _check(resp)
        event, data = "message", list[str]()
        for line in resp.iter_lines():
            if line == "":
                if data:
                    yield SseEvent(event, "\n".join(data))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.validate", description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway")
    parser.add_argument("--email", required=True, help="an administrator's e-mail")
    parser.add_argument("--password-stdin", action="store_true")
    parser.add_argument("--name", default=None, help="the run's name (default: the folder's)")
    parser.add_argument("--modality", choices=["chest", "mammography"], default="chest")
    parser.add_argument("--target", default="abnormal")
    parser.add_argument("--reference-standard", default="")
    parser.add_argument("--retention-days", type=int, default=None)
    parser.add_argument("--batch-mb", type=float, default=32.0, help="images per upload, MB")
    parser.add_argument("--out", type=Path, default=None, help="where to save the report")
    parser.add_argument("--no-wait", action="store_true", help="start the run and exit")
    args = parser.parse_args(argv)
    folder: Path = args.folder
    password = read_password(args.password_stdin)
    client = httpx.Client(base_url=args.url.rstrip("/"), timeout=600)
    login = _check(
        client.post("/v1/auth/login", json={"email": args.email, "password": password})
    ).json()
    client.headers["Authorization"] = f"Bearer {login['access_token']}"
    body = {
        "name": args.name or folder.resolve().name,
        "modality": args.modality,
        "target": args.target,
        "reference_standard": args.reference_standard,
        "retention_days": args.retention_days,
    }
    run = _check(client.post("/v1/admin/validation-runs", json=body)).json()
    base = f"/v1/admin/validation-runs/{run['id']}"
    print(f"run {run['id']} created")
    for i, (data, n) in enumerate(batches(folder, int(args.batch_mb * 1024 * 1024)), start=1):
        files = {"archive": (f"batch-{i}.zip", data, "application/zip")}
        got = _check(client.post(f"{base}/uploads", files=files)).json()
        print(f"upload {i}: {n} rows, {got['total']} units in the run")
    _check(client.post(f"{base}/start"))
    if args.no_wait:
        print(f"started; follow it at {base}/events")
        return 0
    for ev in _events(client, f"{base}/events"):
        state = ev.json() or {}
        print(
            f"{state.get('status')}: {state.get('scored')} scored, {state.get('failed')} failed "
            f"of {state.get('total')}"
        )
        if ev.event == "done":
            break
    report = _check(client.get(f"{base}/report")).json()
    out: Path = args.out or folder / f"irmi-validation-{run['id']}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.pdf").write_bytes(_check(client.get(f"{base}/report.pdf")).content)
    (out / "scores.csv").write_bytes(_check(client.get(f"{base}/scores.csv")).content)
    auc = (report.get("overall") or {}).get("auc") or {}
    print(f"AUC {auc.get('value')} (95% CI {auc.get('ci_low')}-{auc.get('ci_high')})")
    for w in report.get("warnings") or []:
        print(f"warning: {w}")
    print(f"report saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
