"""The reviewer page at `/` in a real browser: Debian's Chromium driven by Playwright, against
`pneumo serve` running as its own process with a real (tiny) champion."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from flows.ui import free_port, is_up
from pipeline.serve.auth import hash_key
from tests import processes
from tests.browser import chromium
from tests.conftest import REPO, SAMPLE
from tests.e2e.conftest import Trained
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
IMAGES = [
    sorted((SAMPLE / "test" / "PNEUMONIA").iterdir())[0],
    sorted((SAMPLE / "test" / "NORMAL").iterdir())[0],
]


API_KEY = "pk_reviewer-page-test-key-0123456789abcdef"


@pytest.fixture
def service_url(trained: Trained, tmp_path: Path, request: pytest.FixtureRequest):
    """`pneumo serve` on a free port; with `indirect` parameter True, it asks for `API_KEY`."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PNEUMO_", "MLFLOW_", "PREFECT_API"))
    }
    env |= trained.env | {"PYTHONPATH": str(REPO), "PNEUMO_SERVE_MAX_UPLOAD_BYTES": "3000000"}
    if getattr(request, "param", False):
        (tmp_path / "api-keys").write_text(hash_key(API_KEY) + "\n")
        env["PNEUMO_SERVE_API_KEYS_FILE"] = str(tmp_path / "api-keys")
    command = [sys.executable, "-m", "flows.cli", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with processes.running("pneumo serve", command, env=env, cwd=REPO, log=log) as process:
        wait_until(
            lambda: is_up(f"{url}/health") or process.poll() is not None,
            bool,
            timeout=180,
            what="pneumo serve to load the champion",
        )
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        yield url


def test_reviewers_drop_xrays_and_see_label_probability_and_gradcam(
    service_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    not_an_image = tmp_path / "notes.jpeg"
    not_an_image.write_text("Patient notes: not an image\n")
    flat = tmp_path / "flat.png"
    Image.new("L", (200, 160), 128).save(flat)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium())
        page = browser.new_page()
        page.goto(f"{service_url}/")
        expect(page.get_by_test_id("model")).to_contain_text(
            "pneumonia-resnet version", timeout=30_000
        )
        expect(page.get_by_test_id("model")).to_contain_text("AUC")
        # The model card, opened from the page, inside its sandboxed frame.
        page.get_by_test_id("model-card").locator("summary").click()
        card = page.frame_locator("[data-testid=model-card-frame]")
        expect(card.locator("h1")).to_contain_text("Model card: pneumonia-resnet")
        expect(card.locator("h2", has_text="Intended use")).to_be_visible()

        page.get_by_test_id("files").set_input_files([*IMAGES, not_an_image, flat])
        results = page.get_by_test_id("result")
        expect(results).to_have_count(4, timeout=120_000)
        expect(page.get_by_test_id("gradcam")).to_have_count(3, timeout=120_000)

        # Cards are newest first: the flat image, the rejected file, then the two X-rays.
        warning = results.nth(0).get_by_test_id("scope-warning")
        expect(warning).to_contain_text("Warning: outside intended use: a flat image")
        # Above the label, where it is read first.
        assert warning.evaluate(
            "w => !!(w.compareDocumentPosition(w.parentElement.querySelector('.label')) & 4)"
        )
        expect(results.nth(1).get_by_test_id("error")).to_contain_text(
            "Not scored: not a JPEG, PNG or DICOM image"
        )
        for card, image in zip((results.nth(3), results.nth(2)), IMAGES, strict=True):
            expect(card).to_contain_text(image.name)
            expect(card.get_by_test_id("label")).to_have_text(re.compile(r"^(NORMAL|PNEUMONIA)$"))
            expect(card.get_by_test_id("probability")).to_contain_text(
                re.compile(r"probability of pneumonia [01]\.\d{3} \(threshold [01]\.\d{3}")
            )
            overlay = card.get_by_test_id("gradcam")
            assert overlay.evaluate("img => img.complete && img.naturalWidth") > 0
        browser.close()


@pytest.mark.parametrize("service_url", [True], indirect=True)
def test_a_service_with_api_keys_asks_for_one_and_works_once_it_is_given(
    service_url: str,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium())
        page = browser.new_page()
        page.goto(f"{service_url}/")
        model = page.get_by_test_id("model")
        expect(model).to_contain_text("an API key is required", timeout=30_000)
        page.get_by_test_id("key").fill(API_KEY)
        page.get_by_test_id("key").dispatch_event("change")
        expect(model).to_contain_text("pneumonia-resnet version", timeout=30_000)
        page.get_by_test_id("files").set_input_files(IMAGES[:1])
        card = page.get_by_test_id("result")
        expect(card.get_by_test_id("label")).to_have_text(
            re.compile(r"^(NORMAL|PNEUMONIA)$"), timeout=120_000
        )
        expect(card.get_by_test_id("gradcam")).to_have_count(1, timeout=120_000)
        page.reload()  # the key stays for the tab
        expect(page.get_by_test_id("model")).to_contain_text("pneumonia-resnet", timeout=30_000)
        browser.close()
