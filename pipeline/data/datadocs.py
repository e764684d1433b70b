"""Make Great Expectations' Data Docs render offline.

GX's page templates load jQuery, Bootstrap, bootstrap-table, Font Awesome and a logo from
CDNs. Offline (a hospital network, a laptop on a train) the index list stays empty, because
bootstrap-table builds it in the browser, and every status icon is missing. So after GX writes
its pages we copy pinned copies of those files (vendored in `datadocs_assets/`, licences and
sources in its README) next to the pages and point the pages at them.

The table below is GX-version specific: when an upgrade changes a template URL, the pages
report it through `external_assets` and the offline test names the URL to add.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

ASSETS_DIR = Path(__file__).with_name("datadocs_assets")
VENDOR_SUBDIR = Path("static") / "vendor"
GX_LOGO = Path("static") / "images" / "logo-long.png"

# Template tags that load charting libraries no page of ours uses: GX only draws charts for
# profiling results, and dropping the tags saves vendoring 1 MB of floating `@5` releases.
_CHART_SCRIPT = re.compile(
    r'<script src="https://cdn\.jsdelivr\.net/npm/vega(?:-lite|-embed)?@\d+"></script>\s*'
)
_GX_WEB_ASSET = re.compile(r"https://great-expectations-web-assets\.s3\.[^'\"\s)]+")
_ASSET_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_TAG_URL = re.compile(r'\b(?:src|href)="(https?://[^"]+)"')
_CSS_URL = re.compile(r"""url\(\s*['"]?(https?://[^'")]+)""")
_CORS_ATTRIBUTES = re.compile(r'\s(?:integrity|crossorigin)="[^"]*"')


@dataclass(frozen=True)
class Asset:
    """One vendored file: the URL GX's templates use and where its copy came from on npm."""

    url: str | None  # None: a file another asset loads (a web font), never named by a page
    package: str
    version: str
    path: str  # inside the npm package

    @property
    def local(self) -> Path:
        return Path(f"{self.package.rsplit('/', 1)[-1]}-{self.version}") / self.path


_UNPKG_TABLE = "https://unpkg.com/bootstrap-table@"
_FA = ("@fortawesome/fontawesome-free", "6.6.0")
ASSETS = (
    Asset("https://code.jquery.com/jquery-3.7.1.min.js", "jquery", "3.7.1", "dist/jquery.min.js"),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js",
        "popper.js",
        "1.12.9",
        "dist/umd/popper.min.js",
    ),
    Asset(
        "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css",
        "bootstrap",
        "4.3.1",
        "dist/css/bootstrap.min.css",
    ),
    Asset(
        "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js",
        "bootstrap",
        "4.3.1",
        "dist/js/bootstrap.min.js",
    ),
    Asset(
        f"{_UNPKG_TABLE}1.19.1/dist/bootstrap-table.min.js",
        "bootstrap-table",
        "1.19.1",
        "dist/bootstrap-table.min.js",
    ),
    Asset(
        f"{_UNPKG_TABLE}1.19.1/dist/bootstrap-table.min.css",
        "bootstrap-table",
        "1.19.1",
        "dist/bootstrap-table.min.css",
    ),
    Asset(
        f"{_UNPKG_TABLE}1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
        "bootstrap-table",
        "1.19.1",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    ),
    Asset(
        f"{_UNPKG_TABLE}1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
        "bootstrap-table",
        "1.19.0",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    ),
    Asset(
        f"{_UNPKG_TABLE}1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
        "bootstrap-table",
        "1.19.0",
        "dist/extensions/filter-control/bootstrap-table-filter-control.css",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js",
        "bootstrap-datepicker",
        "1.9.0",
        "dist/js/bootstrap-datepicker.min.js",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css",
        "bootstrap-datepicker",
        "1.9.0",
        "dist/css/bootstrap-datepicker.min.css",
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css",
        "@forevolve/bootstrap-dark",
        "1.1.0",
        "dist/css/bootstrap-prefers-dark.min.css",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css",
        *_FA,
        "css/all.min.css",
    ),
    # all.min.css names each font as woff2 first; browsers without woff2 are out of scope.
    *(
        Asset(None, *_FA, f"webfonts/{name}.woff2")
        for name in ("fa-brands-400", "fa-regular-400", "fa-solid-900", "fa-v4compatibility")
    ),
)


def make_offline(docs_dir: Path) -> list[str]:
    """Point every Data Docs page in `docs_dir` at local copies; return what still is remote.

    Idempotent: GX rewrites the pages on each validation, and running this twice changes
    nothing the second time.
    """
    shutil.copytree(ASSETS_DIR, docs_dir / VENDOR_SUBDIR, dirs_exist_ok=True)
    by_url = {a.url: docs_dir / VENDOR_SUBDIR / a.local for a in ASSETS if a.url}
    remote: list[str] = []
    for page in sorted([*docs_dir.rglob("*.html"), *(docs_dir / "static").rglob("*.css")]):
        text = page.read_text(encoding="utf-8")
        offline = _localize(text, page.parent, by_url, docs_dir / GX_LOGO)
        if offline != text:
            page.write_text(offline, encoding="utf-8")
        remote += [f"{page.relative_to(docs_dir)}: {url}" for url in external_assets(offline)]
    return remote


def external_assets(text: str) -> list[str]:
    """URLs of scripts, styles, images and CSS `url()`s a page would fetch from the network.

    Plain links (`<a href>`) are not assets: following one offline fails, rendering does not.
    """
    tags = [m.group(1) for tag in _ASSET_TAG.findall(text) for m in _TAG_URL.finditer(tag)]
    return sorted(set(tags + _CSS_URL.findall(text)))


def _localize(text: str, page_dir: Path, by_url: dict[str, Path], logo: Path) -> str:
    def relative(target: Path) -> str:
        return Path(os.path.relpath(target, page_dir)).as_posix()

    def rewrite_tag(match: re.Match[str]) -> str:
        tag = match.group(0)
        url = _TAG_URL.search(tag)
        if not url or url.group(1) not in by_url:
            return tag
        local = tag.replace(url.group(1), relative(by_url[url.group(1)]))
        # A file:// page cannot satisfy a CORS request, so these would block the local copy.
        return _CORS_ATTRIBUTES.sub("", local)

    if "vegaEmbed" not in text:
        text = _CHART_SCRIPT.sub("", text)
    text = _ASSET_TAG.sub(rewrite_tag, text)
    return _GX_WEB_ASSET.sub(relative(logo), text)
