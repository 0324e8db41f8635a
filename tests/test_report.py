"""The public report, rendered from a loaded warehouse by the offline engine (Quarto is absent here)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import duckdb
import pytest
from plotly.offline import get_plotlyjs

from conftest import loaded_copy, REPO
from pipeline.config import Paths
from pipeline.release import build_release
from pipeline.report import build_report

DOMAINS = ["precarity", "disrespect", "resources", "drift", "wellbeing"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, loaded_template: Path) -> Paths:
    
    root = tmp_path_factory.mktemp("report") / "project"
    paths = loaded_copy(loaded_template, root)
    build_report(paths, engine="offline")
    build_release(paths)  # as `consult report` does: the figures' CSV links lead into the release
    return paths


def pages(paths: Paths) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(paths.site.glob("*.html"))}


def test_the_report_lands_at_the_documented_place(rendered: Paths) -> None:
    assert (rendered.site / "index.html").is_file()
    assert set(pages(rendered)) == {"index.html", "methods.html"}


def test_every_local_link_leads_to_a_file_of_the_site(rendered: Paths) -> None:
    # e.g. no "Français" link when the French pages were not rendered, no PDF link without a PDF
    for name, page in pages(rendered).items():
        for target in re.findall(r'<a [^>]*href="([^"#:]+)(?:#[^"]*)?"', page):
            assert (rendered.site / target).is_file(), (name, target)


def test_every_page_says_the_data_are_synthetic(rendered: Paths) -> None:
    for name, page in pages(rendered).items():
        assert "SYNTHETIC" in page, name


def test_at_least_one_chart_per_domain(rendered: Paths) -> None:
    con = duckdb.connect(str(rendered.warehouse), read_only=True)
    by_domain = dict(con.execute("SELECT domain, list(indicator_id) FROM indicator_catalogue GROUP BY domain").fetchall())
    con.close()
    index = pages(rendered)["index.html"]
    charts = set(re.findall(r'id="chart-([A-Z]+-\d+)-region"', index))
    for domain in DOMAINS:
        assert charts & set(by_domain[domain]), domain
    for indicator in charts:
        assert f'id="{indicator}"' in index  # the stable anchor of each figure


def test_plotly_js_is_included_once_per_page_and_nothing_is_fetched(rendered: Paths) -> None:
    # The basic bundle vendored in the repository (pipeline/vendor/), never the full library too.
    bundle = (REPO / "pipeline" / "vendor" / "plotly-basic.min.js").read_text(encoding="utf-8")
    for name, page in pages(rendered).items():
        assert page.count(bundle) == (1 if name == "index.html" else 0), name
        assert page.count("* plotly.js") == (1 if name == "index.html" else 0), name
        assert get_plotlyjs()[:300] not in page, name
        assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="(https?:)?//', page), name


def test_the_engine_is_recorded_in_the_report_and_the_manifest(rendered: Paths) -> None:
    manifest = json.loads((rendered.site / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["engine"].startswith("offline: Jupyter kernel")
    assert manifest["engine"] in pages(rendered)["index.html"]
    assert manifest["synthetic"] is True
    con = duckdb.connect(str(rendered.warehouse), read_only=True)
    hashes = {h for (h,) in con.execute("SELECT file_sha256 FROM load_ledger").fetchall()}
    con.close()
    assert {i["sha256"] for i in manifest["inputs"]} == hashes


def test_figures_in_the_report_are_the_warehouse_figures(rendered: Paths) -> None:
    con = duckdb.connect(str(rendered.warehouse), read_only=True)
    row = con.execute(
        "SELECT estimate, n FROM published_estimates WHERE indicator_id = 'PREC-04' AND breakdown = 'all' "
        "ORDER BY wave DESC LIMIT 1"
    ).fetchall()[0]
    con.close()
    index = pages(rendered)["index.html"]
    assert f"{row[0]:.1f}%" in index and f"{row[1]:,}" in index


def test_rendering_again_gives_the_same_bytes(rendered: Paths) -> None:
    before = {name: page for name, page in pages(rendered).items()}
    manifest = (rendered.site / "manifest.json").read_bytes()
    build_report(rendered, engine="offline", force=True)
    assert pages(rendered) == before
    assert (rendered.site / "manifest.json").read_bytes() == manifest


def test_nothing_changed_means_nothing_rendered(rendered: Paths) -> None:
    index = rendered.site / "index.html"
    stamp = index.stat().st_mtime_ns
    messages: list[str] = []
    build_report(rendered, engine="offline", progress=messages.append)
    assert index.stat().st_mtime_ns == stamp
    assert any("up to date" in m for m in messages)
    # A change to the report's sources renders again.
    methods = rendered.reports / "methods.qmd"
    methods.write_text(methods.read_text(encoding="utf-8") + "\nOne more sentence for the test.\n", encoding="utf-8")
    build_report(rendered, engine="offline")
    assert "One more sentence for the test." in (rendered.site / "methods.html").read_text(encoding="utf-8")


def test_the_methods_page_says_how_many_answers_privacy_protection_removed(rendered: Paths) -> None:
    # One row per key quasi-identifier, one column per wave: 100 x values removed / respondents.
    con = duckdb.connect(str(rendered.warehouse), read_only=True)
    removed = con.execute(
        "SELECT p.concept, p.wave, p.cells_suppressed, s.respondents FROM column_protection p "
        "JOIN anonymity_summary s USING (wave) WHERE p.k_anonymity_key ORDER BY p.concept, p.wave").fetchall()
    labels = dict(con.execute("SELECT concept, label_en FROM concepts QUALIFY row_number() OVER "
                              "(PARTITION BY concept ORDER BY wave DESC) = 1").fetchall())
    con.close()
    assert removed and any(cells for _, _, cells, _ in removed)
    table = pages(rendered)["methods.html"].split('id="table-protection"', 1)[1].split("</table>", 1)[0]
    rows = {re.sub(r"\s+", " ", html.unescape(label)).strip(): cells for label, cells in re.findall(
        r'<th scope="row">(.*?)</th>\s*((?:<td[^>]*>.*?</td>\s*)+)</tr>', table, flags=re.S)}
    assert len(rows) == len({concept for concept, *_ in removed})
    for concept, wave, cells, respondents in removed:
        shown = [c.strip() for c in re.findall(r">([^<]*)</td>", rows[re.sub(r"\s+", " ", labels[concept])])]
        assert shown[[2023, 2024, 2025].index(wave)] == f"{round(100 * cells / respondents)}%"


def test_the_methods_page_says_how_many_beyond_chance_results_chance_alone_would_give(rendered: Paths) -> None:
    """Counted here from the intervals themselves (a gap or change is beyond chance when its 95% interval
    leaves out zero), for each indicator's latest year, not from the statements the page counts."""
    con = duckdb.connect(str(rendered.warehouse), read_only=True)
    latest = "JOIN (SELECT indicator_id, max(wave) AS wave FROM indicator_estimates GROUP BY ALL) USING (indicator_id, wave)"
    counts = [con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {low} > 0 OR {high} < 0) FROM {table} {latest} "
        f"WHERE NOT suppressed AND NOT isnan({low}) AND NOT isnan({high})").fetchone()
        for table, low, high in (("indicator_gaps", "gap_low", "gap_high"), ("indicator_changes", "change_low", "change_high"))]
    con.close()
    (gaps, gaps_beyond), (changes, changes_beyond) = counts
    assert gaps > 100 and changes > 100 and 0 < gaps_beyond < gaps and 0 < changes_beyond < changes
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", pages(rendered)["methods.html"])))
    assert (f"the report's tables give {gaps:,} gaps between a group and everyone else and {changes:,} changes "
            "since the year before") in text.replace("\u2019", "'")
    assert f"about {round(gaps / 20):,} of the gaps and {round(changes / 20):,} of the changes" in text
    assert f"In this report, {gaps_beyond:,} gaps and {changes_beyond:,} changes do." in text
