"""Data Docs render completely with the network cut: a real Chromium opens them from disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import chromium

pytestmark = pytest.mark.slow
INDEX_ROWS = "#section-1-content-block-2-1-body-table tbody tr"


def test_data_docs_render_offline(data_docs: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    blocked: list[str] = []

    def refuse(route) -> None:
        blocked.append(route.request.url)
        route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium())
        page = browser.new_page()
        page.route("http*://**/*", refuse)
        page.goto((data_docs / "index.html").as_uri())
        # bootstrap-table builds the index list in the browser: without jQuery it stays empty.
        expect(page.locator(INDEX_ROWS)).to_have_count(1)
        expect(page.locator(INDEX_ROWS)).to_contain_text("manifest")
        icon = page.locator(f"{INDEX_ROWS} .ge-success-icon")
        expect(icon).to_be_visible()
        # The icon is a glyph of the bundled icon font. It has a width once that font has loaded
        # and the row has been laid out again, which on a busy machine can come well after the
        # row is visible: poll for both rather than read them once.
        page.wait_for_function(
            """sel => {
                const faces = [...document.fonts].filter(f => f.family.includes('Font Awesome'));
                const icon = document.querySelector(sel);
                return faces.some(f => f.status === 'loaded')
                    && icon !== null && icon.getBoundingClientRect().width > 0;
            }""",
            arg=f"{INDEX_ROWS} .ge-success-icon",
            timeout=60_000,
        )
        page.locator(INDEX_ROWS).click()  # the row links to the validation result
        expect(page.locator("body")).to_contain_text("Expectation")
        assert page.evaluate("() => typeof $.fn.bootstrapTable") == "function"
        browser.close()
    assert blocked == []
