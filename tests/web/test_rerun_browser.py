"""The web UI's re-run button: a mammography study that failed (the stand-in bc_service dies on
the first submission of these bytes and the gateway allows one attempt) shows "Run the
analysis again"; clicking it runs the stored images again and the result appears."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import run_fake
from tests.imagegen import gradient, png_bytes
from tests.web.conftest import LOGS, gateway_env, own_gateway_pages
from tests.web.test_browser import mammogram_views, new_patient

pytestmark = pytest.mark.browser


def test_failed_study_is_run_again_from_the_ui(browser: Any, tmp_path: Path) -> None:
    with run_fake("ok", LOGS) as fake:
        env = gateway_env(
            tmp_path,
            fake.url,
            fake.url,
            IRMI_GATEWAY_EXAM_ATTEMPTS="1",
            IRMI_GATEWAY_EXAM_RETRY_BACKOFF_S="0.1",
        )
        with own_gateway_pages(browser, env) as pages:
            page = pages.new()
            new_patient(page, name="Rae Patient", email="rae@example.org")
            view = tmp_path / "view.png"
            view.write_bytes(png_bytes(gradient(128, 96)) + b"FAKE:flaky")
            mammogram_views(page, [(view, "L-CC")])
            page.get_by_role("button", name="Upload and analyse").click()
            page.wait_for_url(re.compile(r"#/studies/\w+$"), timeout=60_000)
            again = page.get_by_role("button", name="Run the analysis again")
            again.wait_for(timeout=60_000)
            again.click()
            page.get_by_test_id("result-label").wait_for(timeout=60_000)
            assert page.get_by_role("button", name="Run the analysis again").count() == 0
