"""pipeline.charts against a small hand-made warehouse (no pipeline run needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest
from plotly.offline import get_plotlyjs

from conftest import REPO
from pipeline import charts

EVIL = "<script>alert(1)</script> West"

CATALOGUE = [
    # id, title, domain, kind, unit, definition, population, questions, caveats, sort_order
    ("PREC-01", "Paid less than a living wage", "precarity", "proportion", "%",
     "Hourly pay below the regional living wage.", "Respondents in a paid peer role", "pay_hourly,lw_region",
     "Self-reported pay.", 1),
    ("WELL-01", "Work-related burnout", "wellbeing", "mean", "score 0-100",
     "Mean work-related burnout score.", "All eligible respondents", "cbi_1,cbi_2", "Short form.", 1),
]

# indicator, wave, breakdown, group_code, group_label, n, count, estimate, ci_low, ci_high, suppressed, reason
ESTIMATES = [
    ("PREC-01", 2024, "all", "all", "All respondents", 200, 76, 38.0, 31.6, 44.9, False, None),
    ("PREC-01", 2025, "all", "all", "All respondents", 312, 132, 42.307, 36.94, 47.83, False, None),
    ("PREC-01", 2025, "oh_region", "1", "North West", None, None, None, None, None, True,
     "Fewer than 11 respondents"),
    ("PREC-01", 2025, "oh_region", "2", "North East", None, None, None, None, None, True,
     "Complementary suppression"),
    ("PREC-01", 2025, "oh_region", "5", "Toronto", 150, 70, 46.667, 38.9, 54.6, False, None),
    ("PREC-01", 2025, "oh_region", "6", EVIL, 140, 55, 39.286, 31.6, 47.5, False, None),
    ("WELL-01", 2025, "all", "all", "All respondents", 300, None, 61.42, 58.2, 64.6, False, None),
    ("WELL-01", 2025, "oh_region", "5", "Toronto", 150, None, 63.0, 59.0, 67.0, False, None),
]


def make_warehouse(path: Path, synthetic: bool) -> Path:
    con = duckdb.connect(str(path))
    con.execute(
        """CREATE TABLE indicator_catalogue(indicator_id VARCHAR, title VARCHAR, domain VARCHAR, kind VARCHAR,
           unit VARCHAR, definition VARCHAR, population VARCHAR, questions VARCHAR, caveats VARCHAR,
           sort_order INTEGER)"""
    )
    con.executemany("INSERT INTO indicator_catalogue VALUES (?,?,?,?,?,?,?,?,?,?)", CATALOGUE)
    con.execute(
        """CREATE TABLE published_estimates(indicator_id VARCHAR, wave INTEGER, breakdown VARCHAR,
           group_code VARCHAR, group_label VARCHAR, n INTEGER, count INTEGER, estimate DOUBLE, ci_low DOUBLE,
           ci_high DOUBLE, suppressed BOOLEAN, suppression VARCHAR)"""
    )
    con.executemany("INSERT INTO published_estimates VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", ESTIMATES)
    con.execute(
        """CREATE TABLE load_ledger(file_sha256 VARCHAR, file_name VARCHAR, wave INTEGER, platform VARCHAR,
           synthetic BOOLEAN, rows_read INTEGER, rows_loaded INTEGER, rows_quarantined INTEGER,
           rows_excluded INTEGER, rows_duplicate INTEGER)"""
    )
    files = [("a" * 64, "w2024.csv", 2024, "qualtrics", synthetic, 230, 200, 10, 15, 5),
             ("b" * 64, "w2025.csv", 2025, "qualtrics", synthetic, 350, 312, 8, 20, 10)]
    con.executemany("INSERT INTO load_ledger VALUES (?,?,?,?,?,?,?,?,?,?)", files)
    con.execute("CREATE TABLE row_outcomes(file_sha256 VARCHAR, source_row INTEGER, outcome VARCHAR, reason VARCHAR, "
                "response_key VARCHAR)")
    for sha, *_, loaded, quarantined, excluded, duplicate in files:  # each row its own response
        outcomes = ["loaded"] * loaded + ["quarantined"] * quarantined + ["excluded"] * excluded + ["duplicate"] * duplicate
        con.executemany("INSERT INTO row_outcomes VALUES (?, ?, ?, NULL, ?)",
                        [(sha, row, outcome, f"{sha[0]}{row}") for row, outcome in enumerate(outcomes, start=4)])
    con.close()
    return path


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_warehouse(tmp_path / "consultation.duckdb", synthetic=True)
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(path))
    return path


def test_catalogue_order_and_domains(warehouse: Path) -> None:
    assert list(charts.catalogue()["indicator_id"]) == ["PREC-01", "WELL-01"]
    assert charts.indicators("precarity") == ["PREC-01"]
    assert charts.indicators("drift") == []


def test_headline_proportion_shows_value_n_interval(warehouse: Path) -> None:
    text = charts.headline("PREC-01")
    assert "In 2025" in text
    assert "**42.3%**" in text
    assert "312 respondents" in text
    assert "132 people" in text
    assert "95% interval 36.9% to 47.8%" in text
    assert "In 2024 it was 38.0%" in text


def test_headline_mean_and_missing(warehouse: Path) -> None:
    text = charts.headline("WELL-01")
    assert "**61.4** out of 100" in text and "300 respondents" in text and "58.2 to 64.6" in text


def test_headline_suppressed(warehouse: Path, tmp_path: Path) -> None:
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE published_estimates SET suppressed = true, estimate = NULL, n = NULL, "
                "suppression = 'Fewer than 11 respondents' WHERE indicator_id = 'WELL-01' AND breakdown = 'all'")
    con.close()
    text = charts.headline("WELL-01")
    assert "suppressed" in text and "Fewer than 11" in text
    assert "0.0" not in text


def test_table_shows_suppressed_with_reasons(warehouse: Path) -> None:
    table = charts.data_table("PREC-01")
    north_west = re.search(r"<tr>.*?North West.*?</tr>", table).group(0)
    assert "suppressed" in north_west
    assert "0.0" not in north_west and ">0<" not in north_west
    assert "Fewer than 11 respondents" in table and "Complementary suppression" in table
    assert '<th scope="col">' in table and "<caption" in table


def test_suppressed_region_is_not_a_bar(warehouse: Path) -> None:
    fig = charts.region_figure("PREC-01")
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 1
    assert "North West" not in bars[0].y and "North East" not in bars[0].y
    assert 0 not in bars[0].x
    marker = next(t for t in fig.data if t.name == "suppressed")
    assert set(marker.y) == {"North West", "North East"}
    assert all("suppressed" in t for t in marker.text)
    html = charts.region_chart("PREC-01")
    assert "North West: <span class=\"suppressed\">suppressed</span>" in html


def test_chart_ids_are_deterministic(warehouse: Path) -> None:
    first, second = charts.region_chart("PREC-01"), charts.region_chart("PREC-01")
    assert first == second
    assert 'id="chart-PREC-01-region"' in first
    trend = charts.trend_chart("PREC-01")
    assert trend == charts.trend_chart("PREC-01") and 'id="chart-PREC-01-trend"' in trend
    assert '"displaylogo": false' in first and '"responsive": true' in first


def test_trend_only_with_several_waves(warehouse: Path) -> None:
    assert charts.has_trend("PREC-01") and not charts.has_trend("WELL-01")
    assert charts.trend_chart("WELL-01") == ""


def test_charts_do_not_carry_plotly_js(warehouse: Path) -> None:
    assert "plotly.js v" not in charts.region_chart("PREC-01")


def test_plotly_js_is_the_vendored_basic_bundle_once() -> None:
    # The basic bundle draws every chart of the report in a quarter of the full library's weight.
    script = charts.plotly_js()
    basic = (REPO / "pipeline" / "vendor" / "plotly-basic.min.js").read_text(encoding="utf-8")
    assert script.count(basic) == 1
    assert get_plotlyjs()[:300] not in script
    assert len(script) < 1_500_000
    assert script.count("plotly.js (basic - minified) v") == 1


def test_data_notice_follows_the_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(make_warehouse(tmp_path / "synth.duckdb", synthetic=True)))
    notice = charts.data_notice()
    assert "SYNTHETIC" in notice and ".synthetic-banner" in notice
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(make_warehouse(tmp_path / "real.duckdb", synthetic=False)))
    assert "SYNTHETIC" not in charts.data_notice()


def test_data_text_is_escaped(warehouse: Path) -> None:
    for html in (charts.region_chart("PREC-01"), charts.data_table("PREC-01")):
        assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; West" in charts.data_table("PREC-01")
    # Inside the plotly JSON the label is HTML-escaped too (plotly.js renders labels as HTML).
    fig = charts.region_figure("PREC-01")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; West" in json.dumps(fig.to_plotly_json()["data"])


def test_read_only_and_render_engine(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)  # a second reader must not block us
    try:
        assert not charts.estimates("PREC-01").empty
    finally:
        con.close()
    monkeypatch.delenv("CONSULT_RENDER_ENGINE", raising=False)
    assert charts.render_engine() == "Quarto"
    monkeypatch.setenv("CONSULT_RENDER_ENGINE", "offline renderer")
    assert charts.render_engine() == "offline renderer"


def test_load_table_counts(warehouse: Path) -> None:
    table = charts.load_table()
    assert "Synthetic" in table and ">350<" in table and ">312<" in table
    assert "w2025.csv" not in table  # file names are not published


def test_suppressed_wave_breaks_the_trend(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE published_estimates SET suppressed = true, estimate = NULL, n = NULL, count = NULL, "
                "ci_low = NULL, ci_high = NULL, suppression = 'Complementary suppression' "
                "WHERE indicator_id = 'PREC-01' AND wave = 2024 AND breakdown = 'all'")
    con.close()
    fig = charts.trend_figure("PREC-01")
    line = fig.data[0]
    assert list(line.x) == [2024, 2025] and line.y[0] is None and line.connectgaps is False
    assert [a.text for a in fig.layout.annotations] == ["suppressed"]
    assert "The 2024 figure is suppressed." in charts.headline("PREC-01")


def test_methods_entry_escapes_markdown(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE indicator_catalogue SET caveats = 'Costs $5 or $10; ask @someone; <b>bold</b>' "
                "WHERE indicator_id = 'PREC-01'")
    con.close()
    entry = charts.definition_md("PREC-01", {"pay_hourly": "What is your hourly pay?"})
    assert "{#PREC-01}" in entry and "<code>pay_hourly</code> (What is your hourly pay?)" in entry
    assert r"\$5" in entry and r"\@someone" in entry and "&lt;b&gt;" in entry and "<b>" not in entry


def test_caveat_line(warehouse: Path) -> None:
    assert charts.caveat("PREC-01").strip() == "*Read with care:* Self-reported pay."
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE indicator_catalogue SET caveats = '' WHERE indicator_id = 'WELL-01'")
    con.close()
    assert charts.caveat("WELL-01") == ""


# --- tables by breakdown, gaps and changes, citable figures -------------------------------------

# indicator, wave, breakdown, group_code, group_label, gap, gap_low, gap_high, statement, suppressed, reason
GAPS = [
    ("PREC-01", 2025, "oh_region", "5", "Toronto", 8.2, 1.04, 15.37, "higher than everyone else by more than "
     "chance variation would explain", False, None),
    ("PREC-01", 2025, "oh_region", "6", EVIL, -4.06, -11.9, 3.8, "not distinguishable from noise", False, None),
    ("PREC-01", 2025, "oh_region", "1", "North West", None, None, None, None, True, "the group's own figure is suppressed"),
]
# indicator, wave, previous, breakdown, group_code, label, comparability, note, prev_estimate, change, low, high,
# statement, suppressed, reason
CHANGES = [
    ("PREC-01", 2025, 2024, "all", "all", "All respondents", "comparable", "", 38.0, 4.307, -2.01, 10.55,
     "not distinguishable from noise", False, None),
    ("PREC-01", 2025, 2024, "oh_region", "5", "Toronto", "not_comparable", "The question changed in 2025.",
     None, None, None, None, None, False, None),
]


@pytest.fixture
def compared(warehouse: Path) -> Path:
    con = duckdb.connect(str(warehouse))
    con.execute("""CREATE TABLE published_gaps(indicator_id VARCHAR, wave INTEGER, breakdown VARCHAR,
                   group_code VARCHAR, group_label VARCHAR, gap DOUBLE, gap_low DOUBLE, gap_high DOUBLE,
                   statement VARCHAR, suppressed BOOLEAN, suppression VARCHAR)""")
    con.executemany("INSERT INTO published_gaps VALUES (?,?,?,?,?,?,?,?,?,?,?)", GAPS)
    con.execute("""CREATE TABLE published_changes(indicator_id VARCHAR, wave INTEGER, previous_wave INTEGER,
                   breakdown VARCHAR, group_code VARCHAR, group_label VARCHAR, comparability VARCHAR,
                   comparability_note VARCHAR, previous_estimate DOUBLE, change DOUBLE, change_low DOUBLE,
                   change_high DOUBLE, statement VARCHAR, suppressed BOOLEAN, suppression VARCHAR)""")
    con.executemany("INSERT INTO published_changes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", CHANGES)
    con.close()
    return warehouse


def _row(table: str, head: str) -> str:
    return re.search(rf'<tr><th scope="row">{re.escape(head)}</th>.*?</tr>', table).group(0)


def test_tables_are_split_by_breakdown_each_in_its_own_disclosure(compared: Path) -> None:
    tables = charts.data_table("PREC-01")
    assert re.findall(r'<table class="data-table" id="([^"]+)"', tables) == ["table-PREC-01-all", "table-PREC-01-oh_region"]
    assert tables.count("<details") == 2 and tables.count("<caption") == 2
    overall = tables.split('id="table-PREC-01-oh_region"')[0]
    assert re.findall(r'<th scope="row">(\d+)</th>', overall) == ["2025", "2024"]  # every year, newest first
    assert "North West" not in overall
    assert "Ontario Health region, 2025 (4 groups, 2 suppressed)" in tables


def test_breakdown_table_shows_gap_and_change_with_intervals(compared: Path) -> None:
    tables = charts.data_table("PREC-01")
    toronto = _row(tables, "Toronto")
    assert ">46.7%<" in toronto and "38.9% to 54.6%" in toronto and ">150<" in toronto and ">70<" in toronto
    assert "+8.2 points (1.0 to 15.4)" in toronto and "higher than everyone else" in toronto
    assert "not comparable" in toronto and "The question changed in 2025." in tables
    evil = _row(tables, "&lt;script&gt;alert(1)&lt;/script&gt; West")
    assert "\u22124.1 points (\u221211.9 to 3.8)" in evil
    assert "not distinguishable from noise" in evil
    # no change row for it: 2024 had the indicator but no figure for this group (e.g. grouped otherwise)
    assert "no 2024 figure for this group" in evil and "no earlier year" not in evil
    north_west = _row(tables, "North West")
    assert north_west.count(">suppressed<") == 2 and "0.0" not in north_west
    assert "The group&#x27;s own figure is suppressed." in tables
    overall_2025 = _row(tables, "2025")
    assert "+4.3 points (\u22122.0 to 10.6)" in overall_2025 and "from 38.0% in 2024" in overall_2025


def test_a_group_of_an_indicator_first_asked_this_year_has_no_earlier_year(compared: Path) -> None:
    toronto = _row(charts.data_table("WELL-01"), "Toronto")  # WELL-01 has 2025 only
    assert "no earlier year" in toronto and "figure for this group" not in toronto


def test_tables_without_comparison_views_still_render(warehouse: Path) -> None:
    tables = charts.data_table("PREC-01")
    assert "not calculated" in _row(tables, "Toronto") and "no earlier year" in _row(tables, "2024")


def _settings():
    import datetime as dt

    from pipeline.release import ReleaseSettings

    return ReleaseSettings(title="Peer support in Ontario", publisher="PeerWorks", version="2025.1",
                           date=dt.date(2025, 6, 30), url="https://example.org/report",
                           licence={"name": "CC-BY-4.0", "title": "CC BY 4.0", "url": "https://example.org/l"},
                           contact={"name": "Research team"})


def test_figure_footer_links_the_csv_and_cites_the_figure(warehouse: Path) -> None:
    footer = charts.figure_footer("PREC-01", _settings())
    assert '<a href="data/PREC-01.csv" download>Download the data (CSV)</a>' in footer
    assert '<a href="#PREC-01">Link to this figure</a>' in footer
    assert "2 of the 5 figures for 2025 are suppressed" in footer
    assert ("PeerWorks (2025). Peer support in Ontario. 2025 consultation, release 2025.1 (2025-06-30). "
            "Figure PREC-01: Paid less than a living wage. https://example.org/report#PREC-01") in footer
    assert "No figure for 2025 is suppressed." in charts.figure_footer("WELL-01", _settings())


def test_key_figures_one_per_domain_linked_to_the_figure(warehouse: Path) -> None:
    text = charts.key_figures()
    assert text.count("\n- ") == 2  # precarity and wellbeing have indicators here, the others not
    assert "**Precarity: Paid less than a living wage.** In 2025" in text and "(#PREC-01)" in text
    assert "**Wellbeing: Work-related burnout.**" in text and "(#WELL-01)" in text


def test_charts_offer_one_toolbar_button(warehouse: Path) -> None:
    # Each toolbar button is a tab stop: only "download as PNG" is kept.
    assert '"modeBarButtons": [["toImage"]]' in charts.region_chart("PREC-01")


def test_the_years_covered_read_as_a_sentence_for_one_year_or_several(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_warehouse(tmp_path / "consultation.duckdb", synthetic=False)
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(path))
    assert charts.coverage_md().strip() == ("This report covers the consultation years 2024, 2025. Responses "
                                            "included in the figures, by year: 2024: 200; 2025: 312.")
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM load_ledger WHERE wave = 2024")
    con.execute(f"INSERT INTO row_outcomes SELECT '{'b' * 64}', 1000 + i, 'loaded', NULL, 'more' || i FROM range(1000) t(i)")
    con.close()
    assert charts.coverage_md().strip() == ("This report covers the consultation year 2025. Responses included "
                                            "in the figures: 1,312.")
    monkeypatch.setenv("CONSULT_LANG", "fr")
    assert charts.coverage_md().strip() == ("Ce rapport couvre l'année de consultation 2025. Réponses comptées "
                                            "dans les chiffres : 1\u00a0312.")


def _set_overall_comparability(warehouse: Path, status: str, note: str) -> None:
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE published_changes SET comparability = ?, comparability_note = ?, change = CASE WHEN ? = "
                "'not_comparable' THEN NULL ELSE change END WHERE indicator_id = 'PREC-01' AND breakdown = 'all'",
                [status, note, status])
    con.close()


def test_years_that_do_not_compare_are_not_set_side_by_side_as_a_trend(compared: Path) -> None:
    # 2024 asked "respected", 2025 "valued": the headline must not read as a change from 38.0% to
    # 42.3%, and the chart must not join the two years with a line.
    _set_overall_comparability(compared, "not_comparable", "2024 asked about respect, 2025 about feeling valued.")
    assert ("In 2024 it was 38.0% (200 respondents), but the question changed: 2024 and 2025 are not comparable."
            in charts.headline("PREC-01"))
    line = charts.trend_figure("PREC-01").data[0]
    points = list(zip(line.x, line.y))
    between = [y for x, y in points if 2024 < x < 2025]
    assert between == [None] and line.connectgaps is False  # the line stops between the two years
    assert [y for x, y in points if x in (2024, 2025)] == [38.0, 42.307]  # both figures still shown
    assert "not comparable" in [a.text for a in charts.trend_figure("PREC-01").layout.annotations]
    caption = charts.trend_chart("PREC-01")
    assert "2024 and 2025 are not comparable (the question changed), so the line is broken between them." in caption


def test_a_comparison_with_a_caveat_carries_it_in_the_headline(compared: Path) -> None:
    _set_overall_comparability(compared, "comparable_with_caveat", "2024 asked 8 of the 10 items")
    assert ("In 2024 it was 38.0% (200 respondents). Compare 2024 and 2025 with care: 2024 asked 8 of the 10 items."
            in charts.headline("PREC-01"))
    line = charts.trend_figure("PREC-01").data[0]
    assert list(line.x) == [2024, 2025] and None not in line.y  # comparable: one unbroken line
    assert "not comparable" not in charts.trend_chart("PREC-01")


def test_the_french_headline_says_the_years_do_not_compare(compared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_overall_comparability(compared, "not_comparable", "")
    monkeypatch.setenv("CONSULT_LANG", "fr")
    assert ("En 2024, il était de 38,0\u00a0% (200 répondants), mais la question a changé : 2024 et 2025 ne sont "
            "pas comparables." in charts.headline("PREC-01"))
    assert "2024 et 2025 ne sont pas comparables" in charts.trend_chart("PREC-01")


def test_a_gap_that_rounds_to_nothing_has_no_sign(compared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A gap of -0.04 points with an interval from -0.03 to 5.2 is printed as the table rounds it:
    # "0.0 points (0.0 to 5.2)", never "−0.0", which reads as a (tiny) gap below everyone else.
    con = duckdb.connect(str(compared))
    con.execute("UPDATE published_gaps SET gap = -0.04, gap_low = -0.03, gap_high = 5.2 WHERE group_code = '5'")
    con.close()
    toronto = _row(charts.data_table("PREC-01"), "Toronto")
    assert "0.0 points (0.0 to 5.2)" in toronto and "\u22120.0" not in toronto and "+0.0" not in toronto
    monkeypatch.setenv("CONSULT_LANG", "fr")
    assert charts.fmt_number(-0.04) == "0,0" and charts._points(-0.04, {"unit": "%"}) == "0,0 points"
    assert charts._points(-0.06, {"unit": "%"}) == "\u22120,1 points"  # a real (rounded) gap keeps its sign


def test_one_hidden_figure_reads_in_the_singular(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    con = duckdb.connect(str(warehouse))
    hidden = con.execute("SELECT breakdown, group_code FROM published_estimates WHERE indicator_id = 'PREC-01' "
                         "AND wave = 2025 AND suppressed ORDER BY ALL").fetchall()
    assert len(hidden) == 2
    con.execute("UPDATE published_estimates SET suppressed = false, suppression = NULL, estimate = 20.0 "
                "WHERE indicator_id = 'PREC-01' AND wave = 2025 AND breakdown = ? AND group_code = ?", list(hidden[0]))
    con.close()
    assert "1 of the 5 figures for 2025 is suppressed to protect respondents" in charts.figure_footer("PREC-01", _settings())
    monkeypatch.setenv("CONSULT_LANG", "fr")
    assert "1 des 5 chiffres de 2025 est masqué" in charts.figure_footer("PREC-01", _settings())


def test_quotes_in_data_text_show_as_typed_in_the_charts_and_no_tag_opens(warehouse: Path) -> None:
    # plotly.js decodes &lt; &gt; &amp; and numeric entities, not &quot;: a reason or name escaped
    # for an HTML attribute showed `&quot;` in the chart. What plotly.js shows keeps quotes as typed.
    reason = 'merged with "<b>Other</b>"'
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE published_estimates SET group_label = 'North \"West\" <i>', suppression = ? "
                "WHERE indicator_id = 'PREC-01' AND group_code = '1'", [reason])
    con.execute("UPDATE published_estimates SET suppressed = true, estimate = NULL, n = NULL, count = NULL, "
                "ci_low = NULL, ci_high = NULL, suppression = ? "
                "WHERE indicator_id = 'PREC-01' AND wave = 2024 AND breakdown = 'all'", [reason])
    con.close()
    region, trend = charts.region_figure("PREC-01"), charts.trend_figure("PREC-01")
    hidden = next(t for t in region.data if t.name == "suppressed")
    shown = [*region.layout.yaxis.ticktext, *hidden.hovertext, *(a.hovertext for a in trend.layout.annotations)]
    assert 'merged with "&lt;b&gt;Other&lt;/b&gt;"' in hidden.hovertext
    assert 'merged with "&lt;b&gt;Other&lt;/b&gt;"' in [a.hovertext for a in trend.layout.annotations]
    assert any('North "West"' in t for t in region.layout.yaxis.ticktext)
    assert not [t for t in shown if "&quot;" in t or "<b>" in t or "<i>" in t]
    # the bars and their names still meet: every category has its tick
    assert set(hidden.y) <= set(region.layout.yaxis.tickvals)


def test_a_page_s_kernel_opens_the_warehouse_once_only_when_the_engine_says_so(
        warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline engine runs each page in its own kernel, which may keep one connection (a page
    asks ~150 questions; opening the file for each cost ~3 s a page). Any other kernel (Quarto's, a
    notebook's) may outlive the page: it never keeps the warehouse open, a writer may come next."""
    opened = []
    real = duckdb.connect
    monkeypatch.setattr(charts.duckdb, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))

    def ask_three() -> list:
        charts._cached_query.cache_clear()
        return [charts.query(f"SELECT {n} AS n")["n"].iloc[0] for n in (1, 2, 3)]

    assert ask_three() == [1, 2, 3] and len(opened) == 3
    opened.clear()
    monkeypatch.setenv("CONSULT_HOLD_WAREHOUSE", "1")
    assert ask_three() == [1, 2, 3] and len(opened) == 1
    # a rewritten warehouse (another file) is read afresh, through a connection of its own
    warehouse.write_bytes(warehouse.read_bytes())
    assert ask_three() == [1, 2, 3] and len(opened) == 2
    charts._held_connection.cache_clear()


def test_bar_labels_sit_on_a_backing_the_ontario_line_cannot_cross(warehouse: Path) -> None:
    # Trace text has no backing: the dashed Ontario line ran through it. Annotations have one and
    # plotly.js draws them over shapes: every value and every "suppressed" is one, on an opaque colour.
    fig = charts.region_figure("PREC-01")
    bars = next(t for t in fig.data if t.type == "bar")
    hidden = next(t for t in fig.data if t.name == "suppressed")
    labels = [a for a in fig.layout.annotations if a.bgcolor]
    assert sorted(a.y for a in labels) == sorted([*bars.y, *hidden.y])
    assert not [t for t in fig.data if t.type == "scatter" and "text" in (t.mode or "")]
    for label in labels:
        inside = label.font.color == "#ffffff"
        assert label.bgcolor == (charts.BLUE if inside else "#ffffff"), label
    assert [a.hovertext for a in labels if a.text == "suppressed"] == list(hidden.hovertext)
    assert any(s.line.dash == "dash" for s in fig.layout.shapes)


# --- trend labels with many years ----------------------------------------------------------------


def _label_box(label: charts.TrendLabel, waves: list[int]) -> tuple[float, float]:
    """The label's left and right ends at 320 CSS px, in px from the plot's left edge."""
    slot = charts.PHONE_PLOT_PX / (max(waves) - min(waves) + 1)
    at = (label.wave - min(waves) + 0.5) * slot
    width = charts.VALUE_LABEL_PX
    return {"top center": (at - width / 2, at + width / 2), "top right": (at, at + width),
            "top left": (at - width, at)}[label.position]


@pytest.mark.parametrize("years", range(2, 11))
def test_trend_labels_fit_a_phone_and_always_name_the_latest_year(years: int) -> None:
    waves = list(range(2023, 2023 + years))
    # Close values, each interval reaching above its neighbours' points: labels collide if crowded.
    points = [(w, 40.0 + (w % 3), 44.0 + (w % 3)) for w in waves]
    labels = charts.trend_labels(waves, points)
    assert [label.wave for label in labels][-1] == waves[-1]  # what readers cite
    assert labels[0].wave == waves[0]  # the first year: there is room for it at every count
    if years <= 3:  # as today: every value, centred above its interval
        assert labels == [charts.TrendLabel(w, top, "top center") for w, _, top in points]
    else:  # a fourth year leaves a year 46 px at 320 px, less than a French "57,3 %"
        assert [label.wave for label in labels] == [waves[0], waves[-1]]
    boxes = [_label_box(label, waves) for label in labels]
    assert all(0 <= left and right <= charts.PHONE_PLOT_PX for left, right in boxes), boxes  # never clipped
    assert all(a[1] <= b[0] for a, b in zip(boxes, boxes[1:])), boxes  # never on each other
    slot = charts.PHONE_PLOT_PX / years
    for label, (left, right) in zip(labels, boxes):
        # Above every interval and point under it at 320 px, and the point the line runs on to.
        under = [(est, top) for w, est, top in points if left - 4 < (w - 2023 + 0.5) * slot < right + 4]
        assert label.y >= max(max(e, t) for e, t in under)


def test_trend_labels_rise_above_a_suppressed_note_and_skip_a_suppressed_latest_year() -> None:
    waves = list(range(2023, 2033))
    points = [(w, 3.0, 6.0) for w in waves if w not in (2031, 2032)]
    labels = charts.trend_labels(waves, points)
    assert [label.wave for label in labels] == [2023, 2030]  # 2032 shows "suppressed" where its value would be
    assert labels[-1].y >= charts.SUPPRESSED_TOP and labels[0].y == 6.0
    # Only the last two years with a value: the latest alone, the first's label would run into it.
    labels = charts.trend_labels(waves, [(w, 3.0, 6.0) for w in (2031, 2032)])
    assert [label.wave for label in labels] == [2032]


@pytest.mark.parametrize("years", [3, 4, 10])
def test_year_ticks_stay_apart_on_a_phone_and_name_the_latest_year(years: int) -> None:
    waves = list(range(2023, 2023 + years))
    ticks = charts.trend_ticks(waves)
    assert ticks[-1] == waves[-1] and set(ticks) <= set(waves)
    slot = charts.PHONE_PLOT_PX / years
    assert all((b - a) * slot >= charts.YEAR_TICK_PX for a, b in zip(ticks, ticks[1:]))
    if years <= 4:  # a year's name fits each year's room: all named, as before
        assert ticks == waves


def test_a_decade_of_waves_labels_the_first_and_latest_values_only(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse))
    for wave in range(2026, 2033):
        con.execute("INSERT INTO published_estimates SELECT * REPLACE (? AS wave, estimate + ? AS estimate, "
                    "ci_low + ? AS ci_low, ci_high + ? AS ci_high) FROM published_estimates "
                    "WHERE indicator_id = 'PREC-01' AND wave = 2025 AND breakdown = 'all'", [wave] + [wave % 3] * 3)
    con.close()
    fig = charts.trend_figure("PREC-01")
    line, labels = fig.data
    assert list(line.x) == list(range(2024, 2033))  # every year still drawn, and hovered
    assert list(labels.x) == [2024, 2032] and list(labels.text) == ["38.0%", "43.3%"]
    assert list(labels.textposition) == ["top right", "top left"]
    assert list(fig.layout.xaxis.tickvals) == [2026, 2029, 2032]
    assert charts.trend_chart("PREC-01") == charts.trend_chart("PREC-01")  # byte-reproducible


def test_break_notes_give_way_to_marks_where_they_would_meet_on_a_phone() -> None:
    # Whole notes where each has room at 320 px: one break among three or four years.
    assert charts.trend_break_notes_fit([2023, 2024, 2025], [(2024, 2025)])
    assert charts.trend_break_notes_fit(list(range(2023, 2027)), [(2025, 2026)])
    # Two breaks in a row: the two notes were drawn on top of each other at 320 and 360 px.
    assert not charts.trend_break_notes_fit(list(range(2023, 2027)), [(2024, 2025), (2025, 2026)])
    assert not charts.trend_break_notes_fit([2023, 2024, 2025], [(2023, 2024), (2024, 2025)])
    # The last two of ten years: a whole note would run past the chart's right edge.
    assert not charts.trend_break_notes_fit(list(range(2023, 2033)), [(2031, 2032)])
