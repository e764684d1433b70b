"""Data Docs point at vendored copies, so they render offline (the browser test shows they do)."""

import re
from pathlib import Path

from pipeline.data.datadocs import ASSETS, ASSETS_DIR, external_assets, make_offline

LOCAL_REF = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="([^"#:]+)"')


def pages(docs: Path) -> dict[Path, str]:
    return {page: page.read_text() for page in sorted(docs.rglob("*.html"))}


def test_written_pages_load_nothing_from_the_network_and_their_copies_exist(
    data_docs: Path,
) -> None:
    written = pages(data_docs)
    assert len(written) >= 3  # index, the suite, one validation result
    for page, text in written.items():
        assert external_assets(text) == [], page
        assert "integrity=" not in text and "crossorigin=" not in text, page
        # Only our rewrites: GX's own favicon link on result pages is one level short.
        refs = [ref for ref in LOCAL_REF.findall(text) if "static/vendor" in ref or "logo" in ref]
        assert any("static/vendor/jquery-3.7.1" in ref for ref in refs), page
        for ref in refs:
            assert (page.parent / ref).is_file(), f"{page.name} names missing {ref}"


def test_rewriting_again_changes_nothing(data_docs: Path) -> None:
    before = pages(data_docs)
    assert make_offline(data_docs) == []
    assert pages(data_docs) == before


def test_an_unknown_cdn_url_is_reported_not_hidden(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<script src="https://cdn.example.org/new-lib@2.js"></script>'
        '<a href="https://greatexpectations.io">a link is not an asset</a>'
    )
    assert make_offline(tmp_path) == ["index.html: https://cdn.example.org/new-lib@2.js"]


def test_chart_scripts_stay_on_pages_that_draw_charts(tmp_path: Path) -> None:
    chart = (
        '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
        "<script>vegaEmbed('#c', spec)</script>"
    )
    (tmp_path / "chart.html").write_text(chart)
    assert make_offline(tmp_path) == ["chart.html: https://cdn.jsdelivr.net/npm/vega@5"]
    assert (tmp_path / "chart.html").read_text() == chart


def test_every_vendored_file_is_in_the_repository() -> None:
    for asset in ASSETS:
        assert (ASSETS_DIR / asset.local).stat().st_size > 0, asset.local
