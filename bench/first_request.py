"""How long the first requests after start-up take, per upload format (warm-up check).

Starts one inference service (``python -m tb_service`` or ``python -m bc_service``) from a
source tree with its committed models on 127.0.0.1, waits until it is ready, then sends the
same image as DICOM, PNG and JPEG, each twice, in that order, and prints the wall time of every
request. A service that warms every decode path at start-up answers the first DICOM about as
fast as the second::

    python -m bench.first_request tb_service [--root /path/to/checkout]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from shared.inference import encode_upload
from shared.settings import default_data_dir

ROUTE = {"tb_service": "/v1/predict", "bc_service": "/v1/predict"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _image(service: str) -> np.ndarray:
    """A real film when the data folder has one, else a synthetic gradient."""
    data = default_data_dir()
    pattern = "nih-cxr14/pneumonia/*.jpg" if service == "tb_service" else "mini-mias/*.png"
    found = sorted(data.glob(pattern))[:1] if data.is_dir() else []
    if found:
        return np.asarray(Image.open(found[0]).convert("L"))
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    return (127 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0)).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=sorted(ROUTE))
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--formats", default="dicom,png,jpeg", help="in this order")
    args = parser.parse_args()
    prefix = "IRMI_TB_" if args.service == "tb_service" else "IRMI_BC_"
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(args.root), IRMI_DEV_MODE="1")
    env[prefix + "PORT"] = str(port)
    env[prefix + "USE_GPU"] = "false"
    pixels = _image(args.service)
    modality = "DX" if args.service == "tb_service" else "MG"
    with tempfile.TemporaryFile() as logs:
        proc = subprocess.Popen(
            [sys.executable, "-m", args.service], cwd=args.root, env=env, stdout=logs, stderr=logs
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    logs.seek(0)
                    sys.exit(f"{args.service} did not start:\n{logs.read().decode()[-3000:]}")
                time.sleep(0.2)
            with httpx.Client(base_url=url, timeout=120) as client:
                for fmt in args.formats.split(","):
                    body = encode_upload(pixels, fmt, modality)
                    for attempt in ("first", "second"):
                        t0 = time.perf_counter()
                        r = client.post(ROUTE[args.service], files={"file": (f"x.{fmt}", body)})
                        ms = (time.perf_counter() - t0) * 1000.0
                        code = "" if r.status_code == 200 else r.json()["error"]["code"]
                        print(
                            f"{args.service} {fmt:5} {attempt:6} {r.status_code} {ms:8.1f} ms", code
                        )
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
