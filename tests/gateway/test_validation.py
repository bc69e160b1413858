"""Site validation end to end, over real HTTP with the real tb_service and its committed chest
model, on a labelled sample of real test films (nih-cxr14 adults, kermany-pediatric children;
40 films): the run reproduces tb_service's own probabilities and the training code's AUC,
"sensitivity 0.90" reaches 0.90 on the set, results after adoption carry the site point, a
new model version falls back to the card's point, rollback restores the point before,
`POST /v1/predict/chest` is read at the site point too, and the validation routes refuse
everyone but admins."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shared.settings import default_data_dir
from shared.train import evaluation as ev
from tests.gateway.conftest import (
    ADMIN_PASSWORD,
    Api,
    _admins,
    admin_api,
    patient_api,
    run_gateway,
    signup_login,
    sqlite_gateway_env,
)
from tests.procs import REPO, Service, run_module, served_version, spawn, wait_ready

DATA = default_data_dir()
MODELS = REPO / "tb_service" / "models"
pytestmark = pytest.mark.skipif(
    not (DATA / "nih-cxr14").is_dir() or not (DATA / "kermany-pediatric").is_dir(),
    reason=f"needs nih-cxr14 and kermany-pediatric under {DATA}",
)
PER_CLASS = 10  # per source and class: 40 films


def sample() -> list[dict[str, str]]:
    """Test-split films: 10 normal and 10 pneumonia from each source, in a fixed order."""
    rows: list[dict[str, str]] = []
    for source, normal, band in (
        ("nih-cxr14", "no_finding", "adult"),
        ("kermany-pediatric", "normal", "child"),
    ):
        split = csv.DictReader((DATA / source / "splits.csv").open())
        test = sorted(r["path"] for r in split if r["split"] == "test")
        neg = [p for p in test if p.startswith(normal + "/")][:PER_CLASS]
        pos = [p for p in test if not p.startswith(normal + "/")][:PER_CLASS]
        for path, label in [(p, "normal") for p in neg] + [(p, "abnormal") for p in pos]:
            rows.append(
                {"file": f"{source}/{path}", "label": label, "age_band": band, "source": source}
            )
    return rows


def zipped(rows: list[dict[str, str]], extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        zf.writestr("labels.csv", text.getvalue())
        for r in rows:
            zf.writestr(r["file"], (DATA / r["file"]).read_bytes())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def tb(port: int | None, models: Path, logs: Path) -> Service:
    env = {
        "IRMI_TB_USE_GPU": "false",
        "IRMI_TB_ONNX_INTRA_OP_THREADS": "1",
        "IRMI_TB_MODELS_DIR": str(models),
    }
    svc = spawn("tb_service", env, port=port, log_dir=logs)
    wait_ready(svc, timeout=240)
    return svc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("validation")
    svc = tb(None, MODELS, tmp)
    env = sqlite_gateway_env(tmp, svc.url, IRMI_GATEWAY_VALIDATION_MAX_ZIP_ENTRIES="30")
    db = env["IRMI_GATEWAY_DATABASE_URL"]
    box: dict[str, Service] = {"tb": svc}
    try:
        with run_gateway(env, tmp) as gw:
            anon = Api(gw.url)
            admin = admin_api(anon, db)
            yield {"gw": gw, "anon": anon, "admin": admin, "tmp": tmp, "tb": box, "db": db}
    finally:
        box["tb"].stop()


def _direct(tb_url: str, rows: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """tb_service's own prediction of each film, called directly."""
    out = {}
    with httpx.Client(base_url=tb_url, timeout=120) as c:
        for r in rows:
            data = (DATA / r["file"]).read_bytes()
            resp = c.post("/v1/predict", files={"file": ("x.jpg", data, "image/jpeg")})
            assert resp.status_code == 200, resp.text
            out[r["file"]] = resp.json()
    return out


def _follow(admin: Api, run: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    with admin.stream("GET", run["events_url"], timeout=httpx.Timeout(30, read=300)) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append({"event": kind, **json.loads(line.split(":", 1)[1])})
                if kind == "done":
                    break
    return events


def test_validation_run_adoption_fallback_and_rollback(world: dict[str, Any]) -> None:
    admin: Api = world["admin"]
    rows = sample()
    r = admin.post(
        "/v1/admin/validation-runs",
        json={"name": "sample", "modality": "chest", "target": "abnormal"},
    )
    assert r.status_code == 201, r.text
    run = r.json()
    base = f"/v1/admin/validation-runs/{run['id']}"

    # Bad uploads: clear 4xx in the envelope, nothing added.
    slip = zipped(rows[:2], {"../../etc/evil.png": b"x"})
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", slip, "application/zip")})
    assert r.status_code == 400 and r.json()["error"]["details"]["reason"] == "unsafe_path"
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", zipped(rows), "application/zip")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"  # 41 > 30
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", b"PK\x03\x04no", "x/y")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    bad = [dict(rows[0], label="maybe")]
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", zipped(bad), "x/y")})
    assert r.status_code == 422 and r.json()["error"]["details"] == {"row": 1, "field": "label"}
    assert rows[0]["file"] not in r.text  # file names are never echoed
    assert admin.get(base).json()["total"] == 0

    # Two uploads: a zip with its CSV, then loose files with a CSV part.
    first, second = rows[::2], rows[1::2]
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", zipped(first), "x/y")})
    assert r.status_code == 201, r.text
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(second)
    parts: list[tuple[str, tuple[str, bytes, str]]] = [
        ("labels", ("labels.csv", text.getvalue().encode(), "text/csv"))
    ]
    parts += [("files", (x["file"], (DATA / x["file"]).read_bytes(), "image/jpeg")) for x in second]
    r = admin.post(f"{base}/uploads", files=parts)
    assert r.status_code == 201, r.text
    assert r.json()["total"] == len(rows)

    assert admin.post(f"{base}/start").status_code == 202
    events = _follow(admin, run)
    assert events[-1]["event"] == "done" and events[-1]["status"] == "done"
    assert events[-1]["scored"] + events[-1]["failed"] == len(rows)

    # The run's probabilities are tb_service's own, and so is the AUC.
    direct = _direct(world["tb"]["tb"].url, rows)
    scores = list(csv.DictReader(io.StringIO(admin.get(f"{base}/scores.csv").text)))
    assert len(scores) == len(rows) and all(s["status"] == "scored" for s in scores)
    for s in scores:
        want = direct[s["file"]]["probabilities"]["abnormal"]
        assert abs(float(s["probability"]) - want) <= 1e-5
    labels = {r["file"]: int(r["label"] == "abnormal") for r in rows}
    y = np.asarray([labels[f] for f in direct])
    p = np.asarray([d["probabilities"]["abnormal"] for d in direct.values()])
    s100 = np.asarray([d["score"] for d in direct.values()])
    report = admin.get(f"{base}/report").json()
    assert report["overall"]["positives"] == 20 and report["overall"]["negatives"] == 20
    assert report["overall"]["auc"]["value"] == pytest.approx(ev.auc(y, p), abs=1e-4)
    assert set(report["subgroups"]["age_band"]) == {"adult", "child"}
    assert report["current_point"]["source"] == "card"
    assert any("Only 20 positive" in w for w in report["warnings"])
    assert any("optimistic" in n for n in report["notes"])
    assert [c["name"] for c in report["candidates"]] == [
        "sensitivity_0.90",
        "sensitivity_0.95",
        "youden",
    ]
    pdf = admin.get(f"{base}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    # Adopt "sensitivity 0.90": its threshold reaches 0.90 on the set.
    choice = {"target_sensitivity": 0.9, "recalibration": "platt"}
    preview = admin.post(f"{base}/site-point/preview", json=choice).json()
    thr = preview["point"]["score_threshold"]
    assert ((s100 >= thr) & (y == 1)).sum() / (y == 1).sum() >= 0.90
    assert preview["point"]["sensitivity"]["value"] >= 0.90 and preview["in_sample"]
    # each rate rests on its own class: 20 positives, 20 negatives
    assert (preview["point"]["sensitivity"]["n"], preview["point"]["specificity"]["n"]) == (20, 20)
    assert "optimistic" in preview["point"]["measured_on"]
    adopted = admin.post(f"{base}/site-point", json=choice)
    assert adopted.status_code == 201, adopted.text
    v1 = adopted.json()
    assert v1["version"] == 1 and v1["point"] == preview["point"]

    patient = patient_api(world["gw"].url, "site@example.org")
    film = rows[1]["file"]

    def upload() -> dict[str, Any]:
        data = (DATA / film).read_bytes()
        resp = patient.post("/v1/studies/chest", files={"file": ("x.jpg", data, "image/jpeg")})
        assert resp.status_code == 201, resp.text
        return dict(resp.json()["chest_result"])

    res = upload()
    eff = res["effective"]
    assert eff["operating_point"] == v1["point"] and eff["operating_point"]["source"] == "site"
    assert eff["operating_point"]["run_id"] == run["id"]
    flagged = res["score"] >= thr
    outside = (eff["reliability"] or res["reliability"])["outside_population"]
    want = (
        "outside_population"
        if outside
        else ("review_recommended" if flagged else "no_finding_flagged")
    )
    assert eff["category"] == want and eff["calibrated_score"] is not None

    # Integrators' stateless route is read at the same site point, through the same reading.
    key = patient.post("/v1/api-keys", json={"name": "pacs", "scopes": ["predict"]}).json()
    integrator = Api(world["gw"].url, key=key["key"])
    data = (DATA / film).read_bytes()
    r = integrator.post("/v1/predict/chest", files={"file": ("x.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    pred = r.json()
    assert pred["operating_point"] == v1["point"] and pred["effective"] == eff
    assert pred["category"] == want and pred["score"] == res["score"]

    # A second point, rolled back: the first applies again.
    v2 = admin.post(f"{base}/site-point", json={"target_sensitivity": 0.95}).json()
    assert v2["version"] == 2
    assert upload()["effective"]["operating_point"] == v2["point"]
    listing = admin.post("/v1/admin/site-points/rollback", json={"modality": "chest"}).json()
    assert listing["active"]["id"] == v1["id"]
    assert [i["status"] for i in listing["items"]] == ["rolled_back", "active"]
    assert upload()["effective"]["operating_point"] == v1["point"]

    # A new model version (the served one's weights, next version): the card's point, and the
    # reading says so.
    served = served_version(MODELS, "chest-abnormality")
    newer = str(int(served) + 1)
    models = world["tmp"] / "models-next"
    shutil.copytree(MODELS, models, copy_function=os.symlink)
    nxt = models / "chest-abnormality" / newer
    nxt.mkdir()
    for f in (MODELS / "chest-abnormality" / served).iterdir():
        (nxt / f.name).symlink_to(f)
    (nxt / "card.json").unlink()
    card = json.loads((MODELS / "chest-abnormality" / served / "card.json").read_text())
    card["version"] = newer
    (nxt / "card.json").write_text(json.dumps(card))
    old = world["tb"]["tb"]
    old.stop()
    world["tb"]["tb"] = tb(old.port, models, world["tmp"])
    res = upload()
    eff = res["effective"]
    assert eff["operating_point"]["source"] == "card"
    assert eff["operating_point"]["model"]["version"] == newer
    assert "card's point" in eff["site_note"] and eff["calibrated_score"] is None

    # Rolling back the last point: no site point is in force.
    assert admin.post("/v1/admin/site-points/rollback", json={}).json()["active"] is None
    assert admin.post("/v1/admin/site-points/rollback", json={}).status_code == 409
    assert upload()["effective"]["site_note"] is None

    # The run's images go; its report and scores stay.
    assert admin.delete(f"{base}/images").status_code == 204
    assert admin.get(base).json()["images_deleted_at"] is not None
    assert admin.get(f"{base}/report").status_code == 200

    # Audited: who adopted and rolled back which point, from which run.
    with sqlite3.connect(world["tmp"] / "gw.db") as db:
        trail = db.execute(
            "SELECT action, user_id, details FROM audit_events WHERE action LIKE 'site_point_%' "
            "ORDER BY id"
        ).fetchall()
    assert [a for a, _, _ in trail] == [
        "site_point_adopt",
        "site_point_adopt",
        "site_point_rollback",
        "site_point_rollback",
    ]
    assert all(u for _, u, _ in trail)
    assert json.loads(trail[0][2])["run_id"] == run["id"]
    with sqlite3.connect(world["tmp"] / "gw.db") as db:
        runs = db.execute(
            "SELECT action FROM audit_events WHERE action LIKE 'validation_%' AND details LIKE ?",
            (f"%{run['id']}%",),
        ).fetchall()
    assert [a for (a,) in runs] == ["validation_run_create", "validation_images_delete"]
    # File names are the site's personal data: never in the gateway's logs.
    logs = world["gw"].logs()
    assert not [r["file"] for r in rows if Path(r["file"]).name in logs]


def test_only_admins(world: dict[str, Any]) -> None:
    anon: Api = world["anon"]
    patient = patient_api(world["gw"].url, "nosy@example.org")
    doctor = anon.as_token(
        signup_login(
            anon, "doc-v@example.org", "doctor", specialty="radiology", licence_number="V-1"
        )["access_token"]
    )
    run = (
        world["admin"]
        .post("/v1/admin/validation-runs", json={"name": "x", "modality": "chest"})
        .json()
    )
    base = f"/v1/admin/validation-runs/{run['id']}"
    calls = [
        ("POST", "/v1/admin/validation-runs", {"json": {"name": "x", "modality": "chest"}}),
        ("GET", "/v1/admin/validation-runs", {}),
        ("GET", base, {}),
        ("POST", f"{base}/uploads", {"files": {"archive": ("a.zip", b"PK", "x/y")}}),
        ("POST", f"{base}/start", {}),
        ("GET", f"{base}/events", {}),
        ("GET", f"{base}/report", {}),
        ("GET", f"{base}/report.pdf", {}),
        ("GET", f"{base}/scores.csv", {}),
        ("POST", f"{base}/site-point/preview", {"json": {"target_sensitivity": 0.9}}),
        ("POST", f"{base}/site-point", {"json": {"target_sensitivity": 0.9}}),
        ("DELETE", f"{base}/images", {}),
        ("DELETE", base, {}),
        ("GET", "/v1/admin/site-points", {}),
        ("POST", "/v1/admin/site-points/rollback", {"json": {}}),
    ]
    for who, api, status in ((anon, anon, 401), ("p", patient, 403), ("d", doctor, 403)):
        del who
        for method, url, kw in calls:
            r = api.request(method, url, **kw)
            assert r.status_code == status, (method, url, r.status_code)
            assert r.json()["error"]["code"] in {"unauthorized", "forbidden"}
    assert world["admin"].get(base).status_code == 200


def test_an_adopted_run_extends_the_validated_population(world: dict[str, Any]) -> None:
    """Adult COVID-19 films from another hospital (hannover-covid19, evaluation only: used
    here to measure the mechanism, nothing is kept): a film flagged only as far from the
    card's population but within the limit of the adopted run's mean is read as inside; a
    film also flagged for another reason stays outside."""
    hannover = DATA / "hannover-covid19"
    if not hannover.is_dir():
        pytest.skip(f"no hannover-covid19 under {DATA}")
    admin: Api = world["admin"]
    pos = [r["path"] for r in csv.DictReader((hannover / "labels.csv").open())][:20]
    rows = [{"file": f"hannover-covid19/{p}", "label": "abnormal"} for p in pos]
    rows += [{"file": r["file"], "label": "normal"} for r in sample()[:5]]
    direct = _direct(world["tb"]["tb"].url, rows)
    run = admin.post(
        "/v1/admin/validation-runs", json={"name": "other hospital", "modality": "chest"}
    ).json()
    base = f"/v1/admin/validation-runs/{run['id']}"
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", zipped(rows), "x/y")})
    assert r.status_code == 201, r.text
    assert admin.post(f"{base}/start").status_code == 202
    assert _follow(admin, run)[-1]["status"] == "done"
    report = admin.get(f"{base}/report").json()
    assert report["population"]["films"] == len(rows)
    adopted = admin.post(f"{base}/site-point", json={"target_sensitivity": 0.9})
    assert adopted.status_code == 201, adopted.text
    assert adopted.json()["population"]["films"] == len(rows)

    mean = np.mean([d["reliability"]["position"] for d in direct.values()], axis=0)
    far = "far_from_validated_population"
    patient = patient_api(world["gw"].url, "hannover@example.org")
    let_in = kept_out = 0
    for name, d in direct.items():
        rel = d["reliability"]
        if far not in rel["reasons"]:
            continue
        data = (DATA / name).read_bytes()
        res = patient.post("/v1/studies/chest", files={"file": ("x.png", data, "image/png")})
        eff = res.json()["chest_result"]["effective"]
        inside = float(np.linalg.norm(np.asarray(rel["position"]) - mean)) <= 1.0
        others = [x for x in rel["reasons"] if x != far]
        if inside and not others:
            let_in += 1
            assert eff["reliability"]["outside_population"] is False
            assert eff["category"] != "outside_population"
        else:
            kept_out += 1
            assert eff["category"] == "outside_population"
            if inside:
                assert eff["reliability"]["reasons"] == others
    assert let_in >= 1, "no film of the run was far from the card's population only"
    assert admin.post("/v1/admin/site-points/rollback", json={}).status_code == 200


def test_images_go_when_the_retention_ends(world: dict[str, Any]) -> None:
    admin: Api = world["admin"]
    run = admin.post(
        "/v1/admin/validation-runs",
        json={"name": "short", "modality": "chest", "retention_days": 1},
    ).json()
    base = f"/v1/admin/validation-runs/{run['id']}"
    rows = sample()[-2:]  # films no other run of the module still holds
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", zipped(rows), "x/y")})
    assert r.status_code == 201, r.text
    db_path = world["tmp"] / "gw.db"
    with sqlite3.connect(db_path) as db:
        keys = [
            b["key"]
            for (blobs,) in db.execute(
                "SELECT blobs FROM validation_items WHERE run_id = ?", (run["id"],)
            )
            for b in json.loads(blobs)
        ]
        db.execute(
            "UPDATE validation_runs SET retain_images_until = '2000-01-01 00:00:00' WHERE id = ?",
            (run["id"],),
        )
    store = world["tmp"] / "images"
    assert keys and all((store / k[:2] / k[2:4] / k).exists() for k in keys)
    deadline = time.monotonic() + 60
    while admin.get(base).json()["images_deleted_at"] is None:
        assert time.monotonic() < deadline, "the run's images outlived its retention"
        time.sleep(0.5)
    assert not any((store / k[:2] / k[2:4] / k).exists() for k in keys)
    # no more images can be added, and the run cannot score what it no longer holds
    r = admin.post(f"{base}/uploads", files={"archive": ("a.zip", zipped(rows), "x/y")})
    assert r.status_code == 409
    assert admin.delete(base).status_code == 204
    assert admin.get(base).status_code == 404


def test_the_cli_streams_a_folder(world: dict[str, Any]) -> None:
    folder = world["tmp"] / "site-films"
    rows = sample()[::7]  # 6 films, both sources and classes
    for r in rows:
        (folder / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / r["file"], folder / r["file"])
    with (folder / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    email = _admins[world["db"]]
    out = world["tmp"] / "cli-report"
    args = ["gateway.validate", str(folder), "--url", world["gw"].url, "--email", email]
    args += ["--password-stdin", "--batch-mb", "0.05", "--out", str(out), "--name", "cli"]
    done = run_module(args, {}, stdin=ADMIN_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    uploads = [line for line in done.stdout.splitlines() if line.startswith("upload ")]
    assert len(uploads) >= 2  # streamed in several uploads
    assert "AUC" in done.stdout and not any(Path(r["file"]).name in done.stdout for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["n"] == len(rows)
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    scores = list(csv.DictReader((out / "scores.csv").open()))
    assert sorted(s["file"] for s in scores) == sorted(r["file"] for r in rows)
