"""The demo page in headless Chromium against `make run`-style processes.

The API (serving the page at /ui/ as `make run` does) and a worker run natively against the
test run's own database, Redis prefix and queue; the page is used as a person would
(page_flow.py). Screenshots: project/var/artifacts/native-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from devtools.launch import Child, free_port, start_api
from playwright.sync_api import expect

from imgproc.config import Settings

from .page_flow import ARTIFACTS, browser, run_page_flow

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"


@pytest.fixture
def page_api(settings: Settings, migrated: str, logs_dir: Path) -> Iterator[str]:
    port = free_port()
    with_page = settings.model_copy(update={"frontend_dir": FRONTEND_DIR})
    child: Child = start_api(with_page, logs_dir / "api-page.log", port=port)
    yield f"http://127.0.0.1:{port}"
    child.stop()


@pytest.mark.timeout(180)
def test_demo_page_runs_every_operation_in_chromium(
    page_api: str, worker: Child, tmp_path: Path
) -> None:
    report = run_page_flow(f"{page_api}/ui/", tmp_path, label="native")
    print("\n".join(["browser steps:", *report.steps]))
    print("screenshots:", *(str(p) for p in report.screenshots))
    assert len(report.screenshots) == 6


@pytest.mark.timeout(120)
def test_the_page_shows_what_readyz_says(
    settings: Settings, migrated: str, logs_dir: Path, tmp_path: Path
) -> None:
    """Ready on a healthy API; `degraded`, naming the failing check, when the cache is down."""
    port = free_port()
    broken_cache = settings.model_copy(
        update={"frontend_dir": FRONTEND_DIR, "cache_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    child = start_api(broken_cache, logs_dir / "api-page-degraded.log", port=port)
    try:
        with browser() as b:
            page = b.new_page()
            page.goto(f"http://127.0.0.1:{port}/ui/")
            service = page.locator("#service")
            expect(service).to_have_text(re.compile(r"^service: degraded \(redis: error"))
            expect(service).to_have_class(re.compile(r"\bdegraded\b"))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "native-degraded.png"))
    finally:
        child.stop()


def test_api_serves_no_page_unless_told(client) -> None:
    """In production (compose, Kubernetes) nginx serves the page; the API has no /ui."""
    assert client.get("/ui/").status_code == 404
