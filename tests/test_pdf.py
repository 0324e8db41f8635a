"""The printable PDF of the public report (`consult report --pdf`), rendered by the offline engine
(pandoc -> Typst -> typst.compile, charts as static SVG images) from the synthetic consultation."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pypdf
import pytest

from builders import warehouse_rows as published
from conftest import loaded_copy
from pipeline.config import Paths
from pipeline.pdf import PdfResult
from pipeline.report import build_pdf_report, build_report


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory, loaded_template: Path) -> tuple[Paths, PdfResult]:
    root = tmp_path_factory.mktemp("pdf") / "project"
    paths = loaded_copy(loaded_template, root)
    build_report(paths, engine="offline", pdf=True)  # as `consult report --pdf`: the pages link to the PDF
    return paths, build_pdf_report(paths, engine="offline")


def pdf_pages_text(paths: Paths) -> list[str]:
    """The text of every page of the PDF, as a reader (pypdf) extracts it, whitespace collapsed."""
    reader = pypdf.PdfReader(paths.site / "peer-support-consultation.pdf")
    return [" ".join((page.extract_text() or "").split()) for page in reader.pages]


def test_the_pdf_is_in_the_site_and_is_a_real_multi_page_pdf(printed: tuple[Paths, PdfResult]) -> None:
    paths, result = printed
    pdf = paths.site / "peer-support-consultation.pdf"
    assert result.path == pdf
    pages = pdf_pages_text(paths)  # pypdf reads it: a real PDF, not just its header
    assert len(pages) > 10  # a report of five domains and a methods appendix
    text = " ".join(pages)
    assert "Peer support in Ontario" in text and "Methods and privacy" in text
    assert "Precarity" in text and "Protecting respondents" in text


def test_the_headline_figures_are_printed(printed: tuple[Paths, PdfResult]) -> None:
    paths, result = printed
    latest = published(paths, """
        SELECT e.indicator_id, e.estimate, c.kind FROM published_estimates e
        JOIN indicator_catalogue c USING (indicator_id)
        WHERE e.breakdown = 'all' AND NOT e.suppressed
          AND e.wave = (SELECT max(wave) FROM published_estimates m WHERE m.indicator_id = e.indicator_id)""")
    assert latest, "the synthetic consultation has headline figures"
    for indicator_id, estimate, kind in latest:
        shown = f"{estimate:.1f}%" if kind == "proportion" else f"{estimate:.1f}"
        assert f"#strong[{shown}]" in result.typst_source, f"{indicator_id}: headline {shown} not in the PDF"


def test_one_image_per_chart_of_the_website(printed: tuple[Paths, PdfResult]) -> None:
    paths, result = printed
    site_charts = re.findall(r'<figure class="chart" id="figure-([^"]+)"', (paths.site / "index.html").read_text())
    assert site_charts
    assert result.images == sorted(f"{chart}.svg" for chart in site_charts)
    printed_images = re.findall(r'image\("/media/([^"]+)"', result.typst_source)
    assert sorted(printed_images) == result.images
    # Each chart keeps its caption (which lists every value in words) and its anchor.
    for chart in site_charts:
        assert f"<figure-{chart}>" in result.typst_source


def test_no_suppressed_value_is_printed(printed: tuple[Paths, PdfResult]) -> None:
    paths, result = printed
    hidden = published(paths, """
        SELECT i.indicator_id, i.group_label, i.estimate, c.kind FROM published_estimates p
        JOIN indicator_estimates i USING (indicator_id, wave, breakdown, group_code)
        JOIN indicator_catalogue c USING (indicator_id)
        WHERE p.suppressed AND p.breakdown = 'oh_region' AND i.estimate IS NOT NULL
          AND p.wave = (SELECT max(wave) FROM published_estimates m WHERE m.indicator_id = p.indicator_id)""")
    assert hidden, "the synthetic consultation has suppressed regions"
    for indicator_id, group, estimate, kind in hidden:
        value = f"{estimate:.1f}%" if kind == "proportion" else f"{estimate:.1f}"
        caption = " ".join(_region_caption(result.typst_source, indicator_id).split())
        assert f"{group}: suppressed" in caption, f"{indicator_id} {group}: not marked suppressed"
        assert f"{group}: {value}" not in caption, f"{indicator_id} {group}: the hidden value is printed"


def _region_caption(source: str, indicator_id: str) -> str:
    """The Typst figure (image and caption) of one indicator's chart by region."""
    end = source.find(f"<figure-chart-{indicator_id}-region>")
    assert end > 0, f"{indicator_id}: no region chart"
    return source[source.rfind("#figure(", 0, end):end]


def test_the_pdf_says_which_engine_rendered_it_and_that_the_data_are_synthetic(
        printed: tuple[Paths, PdfResult]) -> None:
    paths, result = printed
    assert "Typst" in result.engine and "pandoc" in result.engine
    flat = " ".join(result.typst_source.split())
    assert f"rendered by {result.engine}" in flat
    assert "Synthetic data: not real results" in flat  # banner, and the running header of every page
    pages = pdf_pages_text(paths)
    assert all("Synthetic data: not real results" in page for page in pages)  # as printed, page by page
    assert f"rendered by {result.engine}" in " ".join(pages)


def test_the_website_links_to_the_pdf_only_when_there_is_one(printed: tuple[Paths, PdfResult]) -> None:
    paths, _ = printed
    assert (paths.site / "peer-support-consultation.pdf").is_file()
    page = (paths.site / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<a href="peer-support-consultation\.pdf" hreflang="en">Printable version \(PDF\)</a>', page)
    # ... and the PDF does not link to itself.
    assert "Printable version (PDF)" not in " ".join(pdf_pages_text(paths))


def test_the_manifest_records_the_pdf(printed: tuple[Paths, PdfResult]) -> None:
    paths, result = printed
    manifest = json.loads((paths.site / "manifest.json").read_text())
    pdf = paths.site / "peer-support-consultation.pdf"
    assert manifest["pdf"]["file"] == pdf.name
    assert manifest["pdf"]["sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert manifest["pdf"]["engine"] == result.engine
    assert set(manifest["pages"]) == {"index.html", "methods.html"}  # the site's own record is kept


def test_an_unchanged_report_is_not_printed_again(printed: tuple[Paths, PdfResult]) -> None:
    paths, _ = printed
    pdf = paths.site / "peer-support-consultation.pdf"
    before = pdf.stat().st_mtime_ns
    said: list[str] = []
    build_pdf_report(paths, engine="offline", progress=said.append)
    assert any("up to date" in m for m in said)
    assert pdf.stat().st_mtime_ns == before
