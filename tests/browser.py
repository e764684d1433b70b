"""The real browser the page tests drive: Debian's Chromium through Playwright.

CI sets PNEUMO_REQUIRE_BROWSER=1 (`.ci/run` installs Chromium), so there a missing browser fails
the test; on a developer machine without Chromium it is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil

import pytest


def chromium() -> str:
    """Path of the Chromium executable for Playwright's `executable_path`."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("PNEUMO_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (PNEUMO_REQUIRE_BROWSER=1): apt-get install chromium")
        pytest.skip("no Chromium on this machine (apt-get install -y chromium)")
    return found
