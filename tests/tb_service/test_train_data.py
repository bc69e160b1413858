"""Training data loaders and negatives on small synthetic files (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tb_service.train.data import (
    hash_split,
    load_dataset,
    load_folder_per_class,
    load_labels_csv,
    load_shenzhen_montgomery,
    read_boxes,
)
from tb_service.train.negatives import rotate90, synthetic_images
from tests.imagegen import png_bytes


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(np.full((20, 24), value, np.uint8)))


def test_labels_csv_with_splits(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for rel in ("normal/a.png", "bacterial_pneumonia/b.png", "viral_pneumonia/c.png"):
        _png(root / rel)
    (root / "labels.csv").write_text(
        "path,label,patient_id,orig_width,orig_height\n"
        "normal/a.png,normal,p1,100,80\n"
        "bacterial_pneumonia/b.png,bacterial_pneumonia,p2,90,70\n"
        "viral_pneumonia/c.png,viral_pneumonia,p3,90,70\n"
    )
    (root / "splits.csv").write_text(
        "path,split\nnormal/a.png,train\nbacterial_pneumonia/b.png,val\nviral_pneumonia/c.png,test\n"
    )
    recs = load_labels_csv(root)
    assert [r.split for r in recs] == ["train", "val", "test"]
    assert [r.abnormal for r in recs] == [0, 1, 1]
    assert [r.subtype for r in recs] == [-1, 0, 1]
    assert recs[0].extra["orig_width"] == "100" and recs[0].patient_id == "p1"
    assert recs[0].path.exists() and recs[0].dataset == "set"
    assert load_dataset(root) == recs


def test_labels_csv_without_splits_is_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "nosplit"
    _png(root / "x.png")
    (root / "labels.csv").write_text("path,label\nx.png,no_finding\n")
    a, b = load_labels_csv(root), load_labels_csv(root)
    assert a[0].split == b[0].split in {"train", "val", "test"}
    assert a[0].abnormal == 0


def test_shenzhen_montgomery_names(tmp_path: Path) -> None:
    root = tmp_path / "shenzhen"
    _png(root / "CXR_png" / "CHNCXR_0001_0.png")
    _png(root / "CXR_png" / "CHNCXR_0002_1.png")
    _png(root / "MCUCXR_0003_1.png")
    _png(root / "readme_image.png")  # not matching the pattern: ignored
    recs = load_shenzhen_montgomery(root)
    got = {r.path.name: (r.label, r.abnormal) for r in recs}
    assert got == {
        "CHNCXR_0001_0.png": ("normal", 0),
        "CHNCXR_0002_1.png": ("tb", 1),
        "MCUCXR_0003_1.png": ("tb", 1),
    }
    assert all(r.split in {"train", "val", "test"} for r in recs)
    assert {r.patient_id for r in recs} == {"CHNCXR_0001", "CHNCXR_0002", "MCUCXR_0003"}
    assert load_dataset(root) == recs


def test_folder_per_class(tmp_path: Path) -> None:
    root = tmp_path / "classes"
    _png(root / "normal" / "n1.png")
    _png(root / "tb" / "sub" / "t1.jpg")
    (root / "tb" / "notes.txt").write_text("not an image")
    recs = load_folder_per_class(root)
    assert sorted((r.label, r.path.name) for r in recs) == [("normal", "n1.png"), ("tb", "t1.jpg")]
    assert {r.label: r.abnormal for r in recs} == {"normal": 0, "tb": 1}
    assert load_dataset(root) == recs


def test_hash_split_proportions() -> None:
    splits = [hash_split(f"p{i}") for i in range(3000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.65 < share["train"] < 0.75 and 0.12 < share["val"] < 0.18
    assert hash_split("same") == hash_split("same")


def test_read_boxes(tmp_path: Path) -> None:
    (tmp_path / "boxes.csv").write_text(
        "path,finding,x0,y0,x1,y1\ntb/a.jpg,active_tb,0.1,0.2,0.3,0.4\ntb/a.jpg,obsolete_tb,0,0,1,1\n"
    )
    assert read_boxes(tmp_path) == {"tb/a.jpg": [(0.1, 0.2, 0.3, 0.4), (0.0, 0.0, 1.0, 1.0)]}
    assert read_boxes(tmp_path / "missing") == {}


def test_synthetic_negatives_and_rotation() -> None:
    negs = list(synthetic_images(n_each=2))
    assert len(negs) == 12 and {n.source for n in negs} == {"synthetic"}
    assert all(n.image.pixels.dtype == np.uint8 for n in negs)
    img = negs[0].image
    rot = rotate90(img)
    assert rot.pixels.shape == img.pixels.shape[::-1]
