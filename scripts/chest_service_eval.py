"""End-to-end check: the `test` splits through a running tb_service over HTTP.

    PYTHONPATH=. python scripts/chest_service_eval.py [--url http://127.0.0.1:8001]

Without --url it starts `python -m tb_service` on a free port. It posts every nih-cxr14 and
kermany-pediatric `test` image to /v1/predict (heatmap off) and prints the gate pass rate, the
ROC AUC and the sensitivity/specificity at the card's threshold, to compare with the
abnormality model's card: the numbers must match those computed offline, since the service
runs the same preprocessing and model. TBX11K (TB positives, evaluation only): the share
flagged abnormal.
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.settings import default_data_dir  # noqa: E402


def _auc(pos: list[float], neg: list[float]) -> float:
    """Mann-Whitney estimate of the ROC AUC (ties count one half)."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _items(data: Path) -> list[tuple[str, Path, int]]:
    out: list[tuple[str, Path, int]] = []
    for ds, normal in (("nih-cxr14", "no_finding/"), ("kermany-pediatric", "normal/")):
        splits = data / ds / "splits.csv"
        if not splits.exists():
            continue
        with splits.open() as fh:
            for row in csv.DictReader(fh):
                if row["split"] == "test":
                    out.append(
                        (ds, data / ds / row["path"], 0 if row["path"].startswith(normal) else 1)
                    )
    tb = data / "tbx11k"
    if tb.is_dir():
        tb_files = sorted(p for p in tb.rglob("*") if p.suffix.lower() in {".png", ".jpg"})
        out += [("tbx11k", p, 1) for p in tb_files]
    return out


def evaluate(url: str, concurrency: int = 4) -> None:
    items = _items(default_data_dir())
    with httpx.Client(timeout=120) as client:

        def one(item: tuple[str, Path, int]) -> tuple[str, int, int, float | None, float]:
            ds, path, label = item
            files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
            r = client.post(url + "/v1/predict?heatmap=false", files=files)
            if r.status_code == 200:
                body = r.json()
                return ds, label, 200, body["probabilities"]["abnormal"], body["threshold"]
            return ds, label, r.status_code, None, 0.0

        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, items))
    for ds in ("nih-cxr14", "kermany-pediatric", "tbx11k", "all"):
        rows = [r for r in results if (ds == "all" and r[0] != "tbx11k") or r[0] == ds]
        if not rows:
            continue
        scored = [r for r in rows if r[3] is not None]
        thr = scored[0][4] if scored else 0.5
        pos = [r[3] for r in scored if r[1] == 1]
        neg = [r[3] for r in scored if r[1] == 0]
        sens = sum(p >= thr for p in pos) / len(pos) if pos else float("nan")  # type: ignore[operator]
        spec = sum(n < thr for n in neg) / len(neg) if neg else float("nan")  # type: ignore[operator]
        print(
            f"{ds:18} n={len(rows):4} gate passed={len(scored) / len(rows):.3f} "
            f"AUC={_auc(pos, neg):.4f} sens={sens:.4f} spec={spec:.4f} (threshold {thr:.4f}) "
            f"refused={sorted({r[2] for r in rows if r[2] != 200})}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="a running tb_service; default: start one")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.url:
        evaluate(args.url.rstrip("/"), args.concurrency)
        return
    from tests.procs import running

    with running("tb_service", {"IRMI_TB_LOG_LEVEL": "WARNING"}, timeout=120) as svc:
        evaluate(svc.url, args.concurrency)


if __name__ == "__main__":
    main()
