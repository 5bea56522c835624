"""The demo page driven in a real browser: Debian's Chromium through Playwright.

`run_page_flow` is what a user does on the page, shared by the test against `make run`-style
processes (`test_page.py`) and the one against the compose stack (`test_stack.py`): upload a
generated JPEG, run each operation and wait for the result to render (its natural size checked
in the page), repeat one (a cache hit), and trigger a validation error and a wrong file (the
messages shown next to their fields). Screenshots go to `ARTIFACTS` (git-ignored).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from devtools.samples import encode, photo_like
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# No sandbox (root in a container/CI), no GPU, and nothing that phones home: offline machines.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SOURCE_SIZE = (640, 480)


@dataclass
class FlowReport:
    steps: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


def chromium_path() -> str:
    """Debian's Chromium, or a skip saying how to install it (a failure with CI=true)."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    return CHROMIUM


@contextmanager
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _shot(page: Page, report: FlowReport, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    report.screenshots.append(path)


def _run_operation(page: Page, op: str, params: dict[str, str]) -> tuple[int, int, str]:
    """Pick `op`, fill its parameters, submit; wait for the result; return its size and badge."""
    page.check(f"input[name=operation][value={op}]")
    block = page.locator(f'.params[data-op="{op}"]')
    for name, value in params.items():
        block.locator(f'[name="{name}"]').fill(value)
    page.click("#submit")
    expect(page.locator("#compare")).to_have_attribute("data-ready", "true", timeout=60_000)
    expect(page.locator("#status")).to_have_text("done")
    size = page.eval_on_selector(
        "#result", "img => [img.naturalWidth, img.naturalHeight, img.complete]"
    )
    assert size[2], f"{op}: the result image did not finish loading"
    badge = page.locator("#cache").get_attribute("data-cache-hit") or ""
    return int(size[0]), int(size[1]), badge


def run_page_flow(page_url: str, tmp_path: Path, *, label: str) -> FlowReport:
    """Use the page at `page_url` as a person would; assert what they would see."""
    report = FlowReport()
    # A new image per run (random seed from the path), so the first submit is a real job.
    seed = abs(hash(str(tmp_path))) % 100_000
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(photo_like(*SOURCE_SIZE, seed=seed), "JPEG", quality=90))
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("this is not an image\n")

    with browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        console_errors: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            # Chromium logs every 4xx fetch as "Failed to load resource"; the 4xx are intended.
            if message.type == "error" and "Failed to load resource" not in message.text:
                console_errors.append(message.text)

        page.on("console", on_console)
        page.goto(page_url)
        expect(page.locator("h1")).to_have_text("imgproc")
        report.steps.append(f"opened {page_url}")
        expect(page.locator("#service")).to_have_text(re.compile(r"^service: ready$"))
        report.steps.append("the page shows /readyz: service ready")
        page.set_input_files("#file", str(photo))
        report.steps.append(f"chose a generated {SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} JPEG")

        expected = {
            "resize": ({"width": "200", "height": ""}, (200, 150)),
            "crop": ({"left": "10", "top": "20", "width": "300", "height": "100"}, (300, 100)),
            "grayscale": ({}, SOURCE_SIZE),
        }
        for op, (params, want) in expected.items():
            w, h, hit = _run_operation(page, op, params)
            assert (w, h) == want, f"{op}: the page shows a {w}x{h} result, expected {want}"
            assert hit == "false", f"{op}: a first request must be a new job, the page says {hit}"
            report.steps.append(f"{op} {params or ''}: done, result rendered at {w}x{h}")
            _shot(page, report, f"{label}-{op}")

        w, h, hit = _run_operation(page, "resize", {"width": "200", "height": ""})
        assert hit == "true", "the same image and parameters again must be a cache hit"
        expect(page.locator("#cache")).to_contain_text("cache hit")
        report.steps.append(f"resize again: cache hit shown, result {w}x{h}")
        _shot(page, report, f"{label}-cache-hit")

        # A crop box outside the image: the API's 422 is shown by the parameters.
        page.check("input[name=operation][value=crop]")
        page.locator('.params[data-op="crop"] [name="left"]').fill("600")
        page.click("#submit")
        params_error = page.locator("#params-error")
        expect(params_error).to_be_visible()
        expect(params_error).to_contain_text("422 invalid_parameters")
        expect(params_error).to_contain_text("crop box")
        expect(page.locator("#compare")).to_be_hidden()  # no stale result beside an error
        report.steps.append(f"crop outside the image: shown '{params_error.inner_text()}'")
        _shot(page, report, f"{label}-error-params")

        # Not an image: the API's 415 is shown under the file field.
        page.set_input_files("#file", str(not_an_image))
        page.check("input[name=operation][value=grayscale]")
        page.click("#submit")
        file_error = page.locator("#file-error")
        expect(file_error).to_be_visible()
        expect(file_error).to_contain_text("415 unsupported_image")
        report.steps.append(f"a text file: shown '{file_error.inner_text()}' under the file")
        _shot(page, report, f"{label}-error-file")

        assert not console_errors, f"the page logged errors: {console_errors}"
    return report
