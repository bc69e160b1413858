"""Bring your own data: the CBIS-DDSM and INbreast readers on synthetic datasets written in
those layouts (tests.bc_service.byod_fixtures), their errors for a wrong layout, and one
command that trains and evaluates on such a set."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bc_service.train.sources import LayoutError, read_source
from bc_service.train.sources.records import SourceCase, SourceLesion, patient_splits
from tests.bc_service import byod_fixtures as fx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cbis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[fx.Drawn]]:
    root = tmp_path_factory.mktemp("cbis")
    return root, fx.cbis_ddsm(root)


@pytest.fixture(scope="module")
def inbreast(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[fx.Drawn]]:
    root = tmp_path_factory.mktemp("inbreast")
    return root, fx.inbreast(root)


def _by_view(cases: list[SourceCase]) -> dict[tuple[str, str, str], SourceCase]:
    return {(c.patient, c.laterality, c.view): c for c in cases}


def _same_circle(lesion: SourceLesion, truth: tuple[int, int, int], tol: int = 1) -> bool:
    x, y, r = truth
    return abs(lesion.x - x) <= tol and abs(lesion.y - y) <= tol and abs(lesion.radius - r) <= tol


def _one_split_per_woman(cases: list[SourceCase]) -> None:
    split_of: dict[str, set[str]] = {}
    for c in cases:
        split_of.setdefault(c.patient, set()).add(c.split)
    assert all(len(s) == 1 for s in split_of.values()), split_of


def test_cbis_ddsm_records(cbis: tuple[Path, list[fx.Drawn]]) -> None:
    root, drawn = cbis
    cases = read_source("cbis-ddsm", root)
    views = _by_view(cases)
    assert len(cases) == len(drawn) == 24  # one record per image, two rows of one image merged
    for d in drawn:
        c = views[(d.patient, d.side, d.view)]
        assert (root / c.path).is_file() and c.source == "cbis-ddsm"
        assert c.label == d.label, (d, c)
        assert len(c.lesions) == len(d.lesions)
        for lesion, truth in zip(c.lesions, d.lesions, strict=True):
            assert _same_circle(lesion, truth), (lesion, truth)
            assert lesion.mask_path is not None and (root / lesion.mask_path).is_file()
        test = d.patient in {"P_00007", "P_00008"}
        assert (c.split == "test") == test
        # masses classed by margin, calcifications CALC
        kinds = {le.abnormality for le in c.lesions}
        if test:
            assert kinds == {"CALC"}
        else:
            assert kinds <= {"SPIC", "CIRC"}
            assert ("SPIC" in kinds) == (c.lesions[0].severity == "malignant")
        assert c.density in (1, 2, 3, 4)
    # the second, benign mass of P_00002's left MLO is its own lesion
    two = views[("P_00002", "L", "MLO")]
    assert [le.severity for le in two.lesions][1] == "benign"
    # the test files' images were found in the TCIA download's naming (1-1.dcm)
    assert all(c.path.endswith("1-1.dcm") for c in cases if c.split == "test")
    assert {c.split for c in cases} == {"train", "val", "test"}
    _one_split_per_woman(cases)


def test_cbis_ddsm_patient_in_both_files_is_test_only(tmp_path: Path) -> None:
    """A woman in a training file and a test file: every view of hers is test."""
    fx.cbis_ddsm(tmp_path, women=8)
    train_csv = tmp_path / "mass_case_description_train_set.csv"
    test_csv = tmp_path / "calc_case_description_test_set.csv"
    with test_csv.open() as fh:
        test_rows = list(csv.DictReader(fh))
    with train_csv.open() as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    moved = [r for r in rows if r["patient_id"] == "P_00001"]
    for r in moved:
        r["patient_id"] = test_rows[0]["patient_id"]  # P_00007's rows now also in training
    with train_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, header or [])
        w.writeheader()
        w.writerows(rows)
    cases = read_source("cbis-ddsm", tmp_path)
    assert {c.split for c in cases if c.patient == "P_00007"} == {"test"}
    _one_split_per_woman(cases)


def _rewrite(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_cbis_ddsm_wrong_layouts(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="not a CBIS-DDSM folder"):
        read_source("cbis-ddsm", tmp_path)
    with pytest.raises(LayoutError, match="is not a folder"):
        read_source("cbis-ddsm", tmp_path / "absent")
    fx.cbis_ddsm(tmp_path, women=3)
    mass = tmp_path / "mass_case_description_train_set.csv"
    original = mass.read_text()
    _rewrite(mass, "pathology", "diagnosis")
    with pytest.raises(LayoutError, match=r"missing column.*pathology"):
        read_source("cbis-ddsm", tmp_path)
    mass.write_text(original)
    _rewrite(mass, "BENIGN_WITHOUT_CALLBACK", "UNKNOWN")
    with pytest.raises(LayoutError, match="pathology 'UNKNOWN'"):
        read_source("cbis-ddsm", tmp_path)
    mass.write_text(original)
    shutil.rmtree(tmp_path / "Mass-Training_P_00001_LEFT_CC")
    with pytest.raises(LayoutError, match=r"image file .Mass-Training_P_00001_LEFT_CC/.*not found"):
        read_source("cbis-ddsm", tmp_path)


def test_cbis_ddsm_tags_that_contradict_the_csv(tmp_path: Path) -> None:
    fx.cbis_ddsm(tmp_path, women=3)
    mass = tmp_path / "mass_case_description_train_set.csv"
    text = mass.read_text().splitlines()
    header, first = text[0], text[1]
    swapped = first.replace(",LEFT,", ",RIGHT,", 1)  # the DICOM still says L
    mass.write_text("\n".join([header, swapped]) + "\n")
    with pytest.raises(LayoutError, match="laterality L, the CSV R"):
        read_source("cbis-ddsm", tmp_path)


def test_inbreast_records(inbreast: tuple[Path, list[fx.Drawn]]) -> None:
    root, drawn = inbreast
    cases = read_source("inbreast", root)
    views = _by_view(cases)
    assert len(cases) == len(drawn) == 40
    for d in drawn:
        c = views[(d.patient, d.side, d.view)]
        assert c.path == d.path and c.label == d.label, (d, c)
        assert len(c.lesions) == len(d.lesions), (d, c.lesions)
        for lesion, truth in zip(c.lesions, d.lesions, strict=True):
            assert _same_circle(lesion, truth, tol=2), (lesion, truth)
            assert lesion.severity == d.label
        if d.label == "normal":
            assert not c.lesions and not c.spread
        # the mass outline kept, the pectoral-muscle ROI is no lesion
        assert "Pectoral Muscle" not in c.findings
        kinds = [le.abnormality for le in c.lesions]
        assert kinds == (["MISC", "CALC"] if d.view == "CC" else ["MISC"])[: len(d.lesions)]
        assert c.density in (1, 2, 3, 4)
    # patient-level grouping: the hash in the file name is the woman, 4 views each
    women = {c.patient for c in cases}
    assert len(women) == 10 and all(sum(c.patient == w for c in cases) == 4 for w in women)
    _one_split_per_woman(cases)
    by_split = {s: {c.label for c in cases if c.split == s} for s in ("train", "val", "test")}
    assert all(labels == {"normal", "benign", "malignant"} for labels in by_split.values())


def test_inbreast_spread_marks_and_missing_rois(tmp_path: Path) -> None:
    """Calcification marks far apart: no located lesion, ``spread``; an abnormal view with no
    ROI file is ``spread`` too (no normal patches are drawn from it)."""
    drawn = fx.inbreast(tmp_path, women=3)
    cc = next(d for d in drawn if d.view == "CC" and d.label != "normal")
    number = Path(cc.path).name.split("_")[0]
    xml = tmp_path / "AllXML" / f"{number}.xml"
    _rewrite(xml, "(206.00, 64.00)", "(20.00, 300.00)")
    _rewrite(xml, "<string>Mass</string>", "<string>Point 1</string>")
    mlo = next(d for d in drawn if d.view == "MLO" and d.label != "normal")
    (tmp_path / "AllXML" / f"{Path(mlo.path).name.split('_')[0]}.xml").unlink()
    views = _by_view(read_source("inbreast", tmp_path))
    spread_cc = views[(cc.patient, cc.side, cc.view)]
    assert spread_cc.spread and not spread_cc.lesions
    no_roi = views[(mlo.patient, mlo.side, mlo.view)]
    assert no_roi.spread and not no_roi.lesions and no_roi.label == mlo.label


def test_inbreast_wrong_layouts(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"INbreast\.csv not found"):
        read_source("inbreast", tmp_path)
    fx.inbreast(tmp_path, women=2)
    table = tmp_path / "INbreast.csv"
    original = table.read_text()
    _rewrite(table, "Bi-Rads", "Score")
    with pytest.raises(LayoutError, match="Bi-Rads"):
        read_source("inbreast", tmp_path)
    table.write_text(original)
    _rewrite(table, ";2\n", ";7\n")  # a Bi-Rads of 2 becomes 7
    with pytest.raises(LayoutError, match="Bi-Rads '7'"):
        read_source("inbreast", tmp_path)
    table.write_text(original + "removed;;L;CC;201001;99999999;1;1\n")
    with pytest.raises(LayoutError, match=r"no DICOM, e\.g\. 99999999"):
        read_source("inbreast", tmp_path)
    table.write_text(original)
    first = sorted((tmp_path / "AllXML").glob("*.xml"))[0]
    first.write_text("<plist><dict><key>Images</key>")
    with pytest.raises(LayoutError, match="not an INbreast ROI property list"):
        read_source("inbreast", tmp_path)
    first.unlink()
    for f in (tmp_path / "AllDICOMs").glob("*.dcm"):
        f.rename(f.with_name(f.name.replace("_MG_", "_XX_")))
    with pytest.raises(LayoutError, match="no DICOM named"):
        read_source("inbreast", tmp_path)


def test_patient_splits_keep_women_whole_and_every_class() -> None:
    cases = [
        SourceCase(f"{w}-{k}.dcm", label, "L", "", patient=f"w{w}")
        for w, label in enumerate(["normal"] * 5 + ["benign"] * 5 + ["malignant"] * 5)
        for k in range(2)
    ]
    split_of = patient_splits(cases, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    assert set(split_of) == {f"w{i}" for i in range(15)}
    counts = {s: sum(v == s for v in split_of.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 9, "val": 3, "test": 3}
    assert split_of == patient_splits(cases, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        ["nice", "-n", "10", sys.executable, "-m", "bc_service.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_refuses_a_wrong_layout_at_once(tmp_path: Path) -> None:
    r = _cli("--source", "cbis-ddsm", "--data", str(tmp_path), timeout=120)
    assert r.returncode != 0 and "cbis-ddsm: " in r.stderr and "not a CBIS-DDSM folder" in r.stderr
    r = _cli("--source", "inbreast", timeout=120)
    assert r.returncode == 2 and "needs --data DIR" in r.stderr


@pytest.mark.timeout(900)  # TensorFlow on a shared CPU: under a minute of CPU time each
@pytest.mark.parametrize("source", ["inbreast", "cbis-ddsm"])
def test_one_command_trains_and_evaluates(
    source: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``python -m bc_service.train --source S --data DIR --smoke``: the records, both ONNX
    models (they run), and the report with test figures and their intervals; on CBIS-DDSM,
    which has no normal views, normal vs abnormal is said to be untrainable, not made up.
    Training needs the `train` extra (TensorFlow, tf2onnx), which `make test` does not
    install: as tests/tb_service/test_train_tf.py, skipped with that reason without it."""
    pytest.importorskip("tensorflow", reason="the train extra (make venv-train) is not installed")
    pytest.importorskip("tf2onnx", reason="the train extra (make venv-train) is not installed")
    pytest.importorskip("keras", reason="the train extra (make venv-train) is not installed")
    import onnxruntime as ort

    root, drawn = request.getfixturevalue("inbreast" if source == "inbreast" else "cbis")
    out = tmp_path / "out"
    r = _cli("--source", source, "--data", str(root), "--out", str(out), "--smoke")
    assert r.returncode == 0, r.stderr[-3000:]
    with (out / "records.csv").open() as fh:
        records = list(csv.DictReader(fh))
    assert len(records) == len(drawn)
    report = json.loads((out / "report.json").read_text())
    assert report["source"] == source
    test = [r for r in records if r["split"] == "test"]
    assert report["counts"]["test"]["views"] == len(test) > 0
    assert report["counts"]["test"]["women"] == len({r["patient"] for r in test})
    view_model = report["view_model"]
    for task in ("malignant",) if source == "cbis-ddsm" else ("abnormal", "malignant"):
        auc = view_model["test"][task]["auc"]
        assert 0.0 <= auc["ci_low"] <= auc["value"] <= auc["ci_high"] <= 1.0, auc
        assert view_model["threshold_from_val"][task] is not None
    if source == "cbis-ddsm":
        assert view_model["test"]["abnormal"]["auc"] is None
        assert "no normal views" in view_model["chosen_on_val"]["abnormal"]["note"]
        assert set(report["lesions_by_class"]) == {"CALC", "CIRC", "SPIC"}
    else:
        assert set(report["lesions_by_class"]) == {"MISC", "CALC"}
    assert report["localisation"]["n_lesions"] == report["counts"]["test"]["located_lesions"]
    assert "normal vs abnormal AUC" in (out / "report.md").read_text()
    for name, n_in, n_out in (("mammo-patch", (2, 64, 64, 1), 3), ("mammo-view", (2, 12), 2)):
        sess = ort.InferenceSession(str(out / name / "model.onnx"))
        x = np.random.default_rng(0).random(n_in).astype(np.float32)
        y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        assert y.shape == (2, n_out) and np.all((y >= 0) & (y <= 1))


def test_records_csv_says_what_was_read(
    inbreast: tuple[Path, list[fx.Drawn]], tmp_path: Path
) -> None:
    from bc_service.train.byod import RECORD_COLUMNS, write_records

    root, _ = inbreast
    cases = read_source("inbreast", root)
    write_records(cases, tmp_path / "records.csv")
    with (tmp_path / "records.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == RECORD_COLUMNS
        rows = list(reader)
    assert [r["path"] for r in rows] == [c.path for c in cases]
    lesion_case = next(c for c in cases if c.view == "CC" and c.lesions)
    row = rows[cases.index(lesion_case)]
    first = lesion_case.lesions[0]
    assert row["lesions"].startswith(f"MISC@{first.x},{first.y},r{first.radius};CALC@")
    assert row["findings"].startswith("Mass;Calcification") and row["spread"] == "0"
