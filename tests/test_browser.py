"""The public report in a real browser: Debian's Chromium driven by Playwright, audited with axe-core.

One report per module: the synthetic consultation, rendered by the offline engine with its open data
release, after two hostile texts were planted in the warehouse (an approved quote and a group name
holding a <script> and an <img onerror>). Needs /usr/bin/chromium (`apt-get install chromium`) and
axe-core (`npm ci --prefix tests/browser`); `.ci/run` and `make test` install them. Without them
these tests fail with that message: a skipped accessibility check must never pass as a passed one.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import loaded_copy
from pipeline.config import Paths
from pipeline.quotes import quote_id, review_file

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
PAGES = ("index.html", "methods.html")

XSS = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"
QUOTE = f"My manager said peer work is not real work {XSS} and I still think about it every day."
XSS_GROUP = ("PREC-04", "oh_region", "5")  # indicator, breakdown, group code whose name is replaced
XSS_LABEL = f"Toronto {XSS}"
CSV_TOLERANCE = 1e-6  # the release prints 6 decimals

# Everything a keyboard user can reach, among what is rendered (not inside a closed <details>).
CONTROLS_JS = """() => {
  const sel = 'a[href], button, summary, input, select, textarea, [tabindex]:not([tabindex="-1"])';
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden'
                     && !e.closest('details:not([open]) > :not(summary)') && !e.disabled;
  const els = [...document.querySelectorAll(sel)].filter(shown);
  els.forEach((e, i) => e.dataset.kb = String(i));
  return els.map(e => e.outerHTML.slice(0, 120));
}"""


# --- the report, once per module --------------------------------------------------------------


def _plant_hostile_text(paths: Paths) -> None:
    """An approved quote and a group name carrying script: both must show as text and never run."""
    con = duckdb.connect(str(paths.warehouse))
    try:
        wave, key = con.execute("SELECT wave, respondent_key FROM respondents ORDER BY wave DESC, 2 LIMIT 1").fetchall()[0]
        con.execute("INSERT INTO open_text VALUES (?, ?, 'comments_changes', ?, 0)", [key, wave, QUOTE])
        ind, breakdown, code = XSS_GROUP
        con.execute("UPDATE indicator_estimates SET group_label = ? WHERE indicator_id = ? AND breakdown = ? "
                    "AND group_code = ?", [XSS_LABEL, ind, breakdown, code])
    finally:
        con.close()
    path = review_file(paths, wave)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"id": quote_id(wave, "comments_changes", QUOTE), "question": "comments_changes",
             "status": "approved", "text": QUOTE}
    path.write_text(yaml.safe_dump({"quotes": [entry]}, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, loaded_template: Path) -> Paths:
    from pipeline.release import build_release
    from pipeline.report import build_report

    root = tmp_path_factory.mktemp("browser") / "project"
    paths = loaded_copy(loaded_template, root)
    _plant_hostile_text(paths)
    build_report(paths, engine="offline", french=True)  # the French pages too: their labels are longer
    build_release(paths)  # after the report: rendering replaces the whole site
    return paths


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
                    "(`apt-get install -y chromium`; `bash .ci/run` installs it)", pytrace=False)
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci --prefix tests/browser` (`make test` does)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Opened:
    """A page opened from disk, with every console error and every request that tried to leave."""

    def __init__(self, browser, path: Path, **device) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.context = browser.new_context(**device)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.goto(path.as_uri(), wait_until="load")

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:", "about:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def opened(browser, site: Paths) -> Iterator[dict[str, Opened]]:
    """Both pages, loaded once and only read by the tests that use them (no clicking, no tabbing)."""
    pages = {name: Opened(browser, site.site / name) for name in PAGES}
    yield pages
    for page in pages.values():
        page.close()


@pytest.fixture
def fresh(browser, site: Paths) -> Iterator:
    """A page of one's own, for tests that open, click or tab."""
    pages: list[Opened] = []

    def open_page(name: str) -> Opened:
        pages.append(Opened(browser, site.site / name))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()


def _rows(paths: Paths, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _plot_data(page, div_id: str) -> list[dict]:
    return page.evaluate("(id) => document.getElementById(id).data.map(t => ({name: t.name, type: t.type, "
                         "x: Array.from(t.x || []), y: Array.from(t.y || []), "
                         "err: t.error_x ? Array.from(t.error_x.array) : (t.error_y ? Array.from(t.error_y.array) : [])}))",
                         div_id)


# --- charts -----------------------------------------------------------------------------------


def test_every_chart_is_present_and_drawn(opened: dict[str, Opened], site: Paths) -> None:
    page = opened["index.html"].page
    latest = {ind: wave for ind, wave in _rows(site, "SELECT indicator_id, max(wave) FROM indicator_estimates GROUP BY 1")}
    expected = {f"chart-{ind}-region" for (ind,) in _rows(
        site, "SELECT DISTINCT e.indicator_id FROM indicator_estimates e JOIN (SELECT indicator_id, max(wave) AS w "
        "FROM indicator_estimates GROUP BY 1) m ON e.indicator_id = m.indicator_id AND e.wave = m.w "
        "WHERE e.breakdown = 'oh_region'")}
    expected |= {f"chart-{ind}-trend" for (ind,) in _rows(
        site, "SELECT indicator_id FROM indicator_estimates WHERE breakdown = 'all' GROUP BY 1 HAVING count(*) > 1")}
    assert len(expected) > 40 and len(latest) == 37
    drawn = page.evaluate("""() => [...document.querySelectorAll('div.plotly-graph-div')].map(d => ({
        id: d.id,
        svg: d.querySelectorAll('svg.main-svg').length,
        traces: d.querySelectorAll('g.trace').length,
        marks: d.querySelectorAll('g.trace.bars path, g.trace.scatter path.point').length,
        width: d.getBoundingClientRect().width}))""")
    assert {d["id"] for d in drawn} == expected
    for chart in drawn:
        assert chart["svg"] >= 1 and chart["traces"] >= 1 and chart["marks"] >= 1 and chart["width"] > 200, chart


def test_suppressed_groups_are_labelled_never_drawn_as_bars(opened: dict[str, Opened], site: Paths) -> None:
    page = opened["index.html"].page
    hidden = _rows(site, "SELECT e.indicator_id, e.group_label FROM indicator_estimates e JOIN (SELECT indicator_id, "
                   "max(wave) AS w FROM indicator_estimates GROUP BY 1) m ON e.indicator_id = m.indicator_id "
                   "AND e.wave = m.w WHERE e.breakdown = 'oh_region' AND e.suppressed")
    assert hidden, "the synthetic consultation should have at least one suppressed region"
    for ind, label in hidden:
        traces = {t["name"]: t for t in _plot_data(page, f"chart-{ind}-region")}
        assert html.escape(label) not in traces["estimate"]["y"]
        assert html.escape(label) in traces["suppressed"]["y"]
    texts = page.evaluate("(id) => [...document.querySelectorAll(`#${id} g.annotation text`)].map(t => t.textContent.trim())",
                          f"chart-{hidden[0][0]}-region")
    assert "suppressed" in texts


def test_every_chart_has_a_text_summary_and_a_data_table(opened: dict[str, Opened]) -> None:
    page = opened["index.html"].page
    figures = page.evaluate("""() => [...document.querySelectorAll('figure.chart')].map(f => {
        const caption = document.getElementById(f.getAttribute('aria-labelledby'));
        const link = caption && caption.querySelector('a[href^="#table-"]');
        const table = link && document.getElementById(link.getAttribute('href').slice(1));
        return {id: f.id, caption: caption ? caption.textContent : '',
                plot: f.querySelector('[role="group"]')?.getAttribute('aria-label') || '',
                table: table ? table.tagName : null,
                tableCaption: table?.querySelector('caption')?.textContent || '',
                colHeads: table ? table.querySelectorAll('thead th[scope="col"]').length : 0,
                rowHeads: table ? [...table.querySelectorAll('tbody th[scope="row"]')].map(t => t.textContent) : []};
    })""")
    assert len(figures) > 40
    for fig in figures:
        assert fig["plot"] and fig["table"] == "TABLE" and fig["tableCaption"], fig["id"]
        assert fig["colHeads"] >= 4 and fig["rowHeads"], fig["id"]
        for group in fig["rowHeads"]:  # the text summary names every group (or year) the table has
            assert f"{group}:" in fig["caption"], (fig["id"], group)


def test_every_csv_link_resolves_to_the_numbers_the_chart_draws(opened: dict[str, Opened], site: Paths) -> None:
    page = opened["index.html"].page
    links = page.evaluate("() => [...document.querySelectorAll('a')].filter(a => a.textContent.trim() === "
                          "'Download the data (CSV)').map(a => [a.getAttribute('href'), a.href])")
    catalogue = [ind for (ind,) in _rows(site, "SELECT indicator_id FROM indicator_catalogue ORDER BY 1")]
    assert sorted(href for href, _ in links) == sorted(f"data/{ind}.csv" for ind in catalogue)
    checked = 0
    for href, url in links:
        path = Path(url.removeprefix("file://"))
        assert path.is_file(), href
        ind = path.stem
        rows = _read_csv(path)
        wave = max(int(r["wave"]) for r in rows)
        for chart, breakdown, name_of in ((f"chart-{ind}-region", "oh_region", lambda r: r["group_label"]),
                                          (f"chart-{ind}-trend", "all", lambda r: r["wave"])):
            if not page.evaluate("(id) => !!document.getElementById(id)", chart):
                continue
            wanted = [r for r in rows if r["breakdown"] == breakdown and (breakdown == "all" or int(r["wave"]) == wave)]
            line = {t["name"]: t for t in _plot_data(page, chart)}["estimate" if breakdown != "all" else "Ontario"]
            drawn = {html.unescape(str(name)): (x, err) for name, x, err in zip(
                line["y"] if breakdown != "all" else line["x"], line["x"] if breakdown != "all" else line["y"],
                line["err"])}
            for row in wanted:
                name = name_of(row)
                if row["status"] == "suppressed":
                    assert row["value"] == "" and (name not in drawn or drawn[name][0] is None), (chart, name)
                    continue
                value, err = drawn[name]
                assert abs(value - float(row["value"])) <= CSV_TOLERANCE, (chart, name)
                assert abs(err - (float(row["ci_high"]) - float(row["value"]))) <= 2 * CSV_TOLERANCE, (chart, name)
                checked += 1
    assert checked > 200


# --- anchors, headings, keyboard ----------------------------------------------------------------


def test_every_figure_id_and_every_link_in_the_report_resolves(opened: dict[str, Opened], site: Paths) -> None:
    ids = yaml.safe_load(site.indicators_file.read_text(encoding="utf-8"))["indicators"]
    ids = [str(i["id"]) for i in ids]
    assert "PREC-01" in ids
    present = {name: set(o.page.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)"))
               for name, o in opened.items()}
    for name in PAGES:
        assert set(ids) <= present[name], (name, sorted(set(ids) - present[name]))
        links = opened[name].page.evaluate("() => [...document.querySelectorAll('a[href*=\"#\"]')].map(a => a.getAttribute('href'))")
        for href in links:
            target, _, fragment = href.partition("#")
            if target.startswith(("http:", "https:")):
                continue
            assert fragment in present[target or name], (name, href)
    cites = opened["index.html"].page.evaluate("() => [...document.querySelectorAll('.figure-footer .cite')]"
                                               ".map(c => c.textContent)")
    assert len(cites) == len(ids)
    cite = next(c for c in cites if "Figure PREC-01:" in c)
    release = yaml.safe_load((site.surveys / "release.yaml").read_text(encoding="utf-8"))
    for part in (release["title"], release["publisher"], release["version"], str(release["date"]), "PREC-01",
                 f"{release['url']}#PREC-01"):
        assert part in cite


def test_headings_are_in_order(opened: dict[str, Opened]) -> None:
    for name, o in opened.items():
        levels = o.page.evaluate("() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1])")
        assert levels[0] == 1 and levels.count(1) == 1, name
        skips = [(i, a, b) for i, (a, b) in enumerate(zip(levels, levels[1:])) if b > a + 1]
        assert not skips, (name, skips)


@pytest.mark.parametrize("name", PAGES)
def test_every_control_is_reachable_with_the_keyboard_in_order(fresh, name: str) -> None:
    page = fresh(name).page
    controls = page.evaluate(CONTROLS_JS)
    assert len(controls) > (300 if name == "index.html" else 20)
    order: list[str] = []
    for _ in range(len(controls) + 5):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.dataset.kb ?? document.activeElement.tagName"))
        if order[-1] == "BODY" or order.count(order[-1]) > 1:
            break
    reached = [int(k) for k in order if k.isdigit()]
    missed = [controls[i] for i in range(len(controls)) if i not in set(reached)]
    assert not missed, missed[:5]
    assert reached == sorted(reached)  # focus follows the reading order


# --- on a phone, and zoomed in (WCAG 1.4.10 reflow, 2.5.8 target size) ----------------------------

# Phones readers use, and a 1280 px laptop window at 400% zoom: 320 CSS px wide (WCAG 1.4.10).
DEVICES = {
    "phone-360": dict(viewport={"width": 360, "height": 740}, device_scale_factor=3, is_mobile=True, has_touch=True),
    "phone-390": dict(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True),
    "reflow-320": dict(viewport={"width": 320, "height": 256}),
}
TARGET = 24  # CSS px, WCAG 2.5.8
# The same pages on a laptop, for the chart checks that matter at every width.
LAYOUTS = {**DEVICES, "desktop-1280": dict(viewport={"width": 1280, "height": 800})}

# Every text plotly.js drew in each chart: outside the chart (cut off by its SVG), run past the plot
# area by a data label (clipped there), or on top of another text. Data labels drawn as trace text sit
# in g.scatterlayer (plotly.js 3 has no g.plot: with that selector the plot-area check never ran).
CHART_TEXT_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')].map(div => {
  const box = div.getBoundingClientRect();
  const area = div.querySelector('rect.nsewdrag').getBoundingClientRect();
  const texts = [...div.querySelectorAll('svg.main-svg text')].filter(t => t.textContent.trim())
    .map(t => ({text: t.textContent.trim(), r: t.getBoundingClientRect(), plot: !!t.closest('g.scatterlayer')}))
    .filter(t => t.r.width > 0);
  const out = (r, b) => r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1;
  const cut = texts.filter(t => out(t.r, box) || (t.plot && (t.r.left < area.left - 1 || t.r.right > area.right + 1)))
    .map(t => t.text);
  const overlaps = [];
  texts.forEach((a, i) => texts.slice(i + 1).forEach(b => {
    const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
    const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
    if (w > 1 && h > 1) overlaps.push([a.text, b.text]);
  }));
  return {id: div.id, width: box.width, cut, overlaps};
})"""

# Controls a finger must hit, with their boxes. A link inside running text is exempt from 2.5.8.
TARGETS_JS = """() => {
  const inText = e => e.tagName === 'A' && getComputedStyle(e).display === 'inline'
    && [...e.parentElement.childNodes].some(n => n !== e && n.textContent.trim());
  return [...document.querySelectorAll('a[href], button, summary, input, select, textarea')]
    .filter(e => e.getClientRects().length && !e.closest('details:not([open]) > :not(summary)'))
    .map(e => { const r = e.getBoundingClientRect();
      return {html: e.outerHTML.slice(0, 100), tag: e.tagName, inText: inText(e),
              x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; });
}"""


@pytest.fixture(scope="module")
def on_device(browser, site: Paths) -> Iterator:
    """Both pages on each device, opened once and only read."""
    pages: dict[tuple[str, str], Opened] = {}

    def open_page(device: str, name: str) -> Opened:
        if (device, name) not in pages:
            pages[device, name] = Opened(browser, site.site / name, **LAYOUTS[device])
        return pages[device, name]

    yield open_page
    for page in pages.values():
        page.close()


def _too_close(target: dict, others: list[dict]) -> bool:
    """WCAG 2.5.8 spacing: a 24 px circle on an undersized target's centre must not touch another target."""
    cx, cy = target["x"] + target["w"] / 2, target["y"] + target["h"] / 2
    for o in others:
        if o is target:
            continue
        dx = max(o["x"] - cx, 0, cx - (o["x"] + o["w"]))
        dy = max(o["y"] - cy, 0, cy - (o["y"] + o["h"]))
        if (dx * dx + dy * dy) ** 0.5 < TARGET / 2:
            return True
    return False


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", PAGES)
def test_the_page_never_scrolls_sideways_on_a_phone_or_zoomed_in(on_device, device: str, name: str) -> None:
    page = on_device(device, name).page
    width, wide = page.evaluate("() => [document.documentElement.clientWidth, document.documentElement.scrollWidth]")
    assert wide <= width, (device, name, wide, width)  # tables scroll inside their own box, not the page
    assert page.evaluate("() => document.documentElement.scrollWidth") == DEVICES[device]["viewport"]["width"]


@pytest.mark.parametrize("device", ["phone-360", "reflow-320"])
@pytest.mark.parametrize("name", ["index.html", "fr/index.html"])  # "81,9 %" is wider than "81.9%"
def test_every_chart_fits_its_box_and_no_label_covers_another_on_a_phone(on_device, device: str, name: str) -> None:
    page = on_device(device, name).page
    charts = page.evaluate(CHART_TEXT_JS)
    assert len(charts) > 40
    for chart in charts:
        assert chart["width"] <= DEVICES[device]["viewport"]["width"], chart["id"]
        assert not chart["cut"], (device, chart["id"], chart["cut"])
        assert not chart["overlaps"], (device, chart["id"], chart["overlaps"])


# The dashed Ontario line of a bar chart, and every text it crosses that is not on an opaque backing
# drawn after the line (so over it). A label's backing must hold the whole text. Labels on a backing
# (the values, "suppressed") must also stay inside the plot area: they are annotations, never clipped.
ONTARIO_LINE_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')]
  .filter(div => div.querySelector('.shapelayer path')).map(div => {
  const line = div.querySelector('.shapelayer path'), g = line.getBoundingClientRect();
  const half = parseFloat(getComputedStyle(line).strokeWidth) / 2;  // a path's box leaves out its stroke
  const l = {left: g.left - half, right: g.right + half, top: g.top, bottom: g.bottom};
  const area = div.querySelector('rect.nsewdrag').getBoundingClientRect();
  const meet = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0
                         && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
  const holds = (b, r) => b.left <= r.left + 1 && b.right >= r.right - 1 && b.top <= r.top + 1 && b.bottom >= r.bottom - 1;
  const opaque = e => { const s = getComputedStyle(e);
    return s.fill !== 'none' && !/^rgba\\(.*,\\s*0\\)$/.test(s.fill) && +s.fillOpacity >= 0.99 && +s.opacity >= 0.99; };
  const backing = t => { const bg = t.closest('g.annotation')?.querySelector('rect.bg');
    return bg && opaque(bg) && (line.compareDocumentPosition(bg) & Node.DOCUMENT_POSITION_FOLLOWING) ? bg : null; };
  const texts = [...div.querySelectorAll('svg.main-svg text')].filter(t => t.textContent.trim())
    .map(t => ({text: t.textContent.trim(), r: t.getBoundingClientRect(), bg: backing(t)})).filter(t => t.r.width > 0);
  return {id: div.id,
          crossed: texts.filter(t => meet(t.r, l) && !(t.bg && holds(t.bg.getBoundingClientRect(), t.r))).map(t => t.text),
          backed: texts.filter(t => t.bg).length,
          outside: texts.filter(t => t.bg && (t.r.left < area.left - 1 || t.r.right > area.right + 1)).map(t => t.text)};
})"""


@pytest.mark.parametrize("device", ["desktop-1280", "phone-360", "reflow-320"])
@pytest.mark.parametrize("name", ["index.html", "fr/index.html"])
def test_the_ontario_line_never_runs_through_a_bar_label(on_device, device: str, name: str) -> None:
    # White labels inside the bars, dark ones past them and "suppressed" were crossed by the dashed
    # line wherever the Ontario figure fell on them: at 320 px, 10 of the English charts.
    charts = on_device(device, name).page.evaluate(ONTARIO_LINE_JS)
    assert len(charts) > 30
    for chart in charts:
        assert not chart["crossed"], (device, chart["id"], chart["crossed"])
        assert not chart["outside"], (device, chart["id"], chart["outside"])
    assert sum(chart["backed"] for chart in charts) > 6 * 30  # every value label has its backing


# A trend chart's value labels and notes: inside the plot area on every side (scatter text past it is
# clipped; the notes above it stay in the chart), clear of the line and the intervals (points along
# each path, in screen pixels) and of each other.
TREND_TEXT_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')].filter(div => div.id.endsWith('-trend'))
  .map(div => {
  const box = div.getBoundingClientRect(), area = div.querySelector('rect.nsewdrag').getBoundingClientRect();
  const labels = [...div.querySelectorAll('g.scatterlayer text')].filter(t => t.textContent.trim())
    .map(t => ({text: t.textContent.trim(), r: t.getBoundingClientRect()}));
  const notes = [...div.querySelectorAll('g.annotation text')].map(t => ({text: t.textContent.trim(), r: t.getBoundingClientRect()}));
  const out = (r, b) => r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1;
  const crossed = new Set();
  for (const path of div.querySelectorAll('g.scatterlayer path.js-line, g.scatterlayer g.errorbar path')) {
    const m = path.getScreenCTM(), length = path.getTotalLength();
    for (let s = 0; s <= length; s += 1) {
      const p = path.getPointAtLength(s).matrixTransform(m);
      labels.filter(t => p.x > t.r.left + 1 && p.x < t.r.right - 1 && p.y > t.r.top + 2 && p.y < t.r.bottom - 2)
        .forEach(t => crossed.add(t.text));
    }
  }
  const all = [...labels, ...notes], overlaps = [];
  all.forEach((a, i) => all.slice(i + 1).forEach(b => {
    if (Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left) > 1
        && Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top) > 1) overlaps.push([a.text, b.text]);
  }));
  return {id: div.id, labels: labels.length, notes: notes.map(n => n.text),
          outside: [...labels.filter(t => out(t.r, area)), ...notes.filter(t => out(t.r, box))].map(t => t.text),
          crossed: [...crossed], overlaps};
})"""


@pytest.mark.parametrize("device", ["desktop-1280", "phone-360", "reflow-320"])
@pytest.mark.parametrize("name", ["index.html", "fr/index.html"])  # "12,3 %" is wider than "12.3%"
def test_trend_labels_stay_in_the_plot_clear_of_the_line_and_of_each_other(on_device, device: str,
                                                                            name: str) -> None:
    charts = on_device(device, name).page.evaluate(TREND_TEXT_JS)
    assert len(charts) > 30 and all(chart["labels"] >= 2 for chart in charts)
    assert any(chart["notes"] for chart in charts)  # some years do not compare: their note is checked too
    for chart in charts:
        assert not chart["outside"], (device, chart["id"], chart["outside"])
        assert not chart["crossed"], (device, chart["id"], chart["crossed"])
        assert not chart["overlaps"], (device, chart["id"], chart["overlaps"])


# --- a decade of waves -------------------------------------------------------------------------


def _add_waves(paths: Paths, last: int) -> None:
    """The latest wave's estimates, gaps and changes copied to every year up to `last`, each year's
    figures a point or two from the year before: close values are where labels run into each other."""
    con = duckdb.connect(str(paths.warehouse))
    try:
        (latest,) = con.execute("SELECT max(wave) FROM indicator_estimates").fetchone()
        for wave in range(latest + 1, last + 1):
            shift = (wave * 37 % 7 - 3) * 0.8  # -2.4 .. +2.4
            moved = ", ".join(f"CASE WHEN {c} IS NULL THEN NULL ELSE least(greatest({c} + {shift}, 0), 100) END AS {c}"
                              for c in ("estimate", "ci_low", "ci_high"))
            con.execute(f"INSERT INTO indicator_estimates SELECT * REPLACE ({wave} AS wave, {moved}) "
                        "FROM indicator_estimates WHERE wave = ?", [latest])
            con.execute(f"INSERT INTO indicator_gaps SELECT * REPLACE ({wave} AS wave) FROM indicator_gaps "
                        "WHERE wave = ?", [latest])
            # Comparable with the year before: the synthetic consultation's own breaks are kept.
            con.execute(f"INSERT INTO indicator_changes SELECT * REPLACE ({wave} AS wave, {wave - 1} AS previous_wave, "
                        "'comparable' AS comparability, '' AS comparability_note) "
                        "FROM indicator_changes WHERE wave = ?", [latest])
    finally:
        con.close()


def _break_years(paths: Paths, after: list[int], suppressed: list[int]) -> None:
    """Every indicator's Ontario-wide figure of each year in `after` not comparable with the year
    before; in every other indicator, the Ontario-wide figure of each year in `suppressed` suppressed."""
    con = duckdb.connect(str(paths.warehouse))
    try:
        for wave in after:
            con.execute("UPDATE indicator_changes SET comparability = 'not_comparable', comparability_note = "
                        "'The question changed.', change = NULL, change_low = NULL, change_high = NULL "
                        "WHERE breakdown = 'all' AND wave = ?", [wave])
        ids = [i for (i,) in con.execute("SELECT DISTINCT indicator_id FROM indicator_estimates ORDER BY 1").fetchall()]
        for wave in suppressed:
            con.execute("UPDATE indicator_estimates SET suppressed = true WHERE breakdown = 'all' AND wave = ? "
                        "AND indicator_id IN (SELECT unnest(?))", [wave, ids[::2]])
    finally:
        con.close()


# The synthetic consultation has 2023-2025: each case adds yearly waves up to its last year, then makes
# the years in its breaks not comparable with the year before (every indicator) and suppresses the
# Ontario-wide figure of its suppressed years (every other indicator).
WAVES = {
    "4-years": dict(last=2026, breaks=[], suppressed=[]),
    "10-years": dict(last=2032, breaks=[], suppressed=[]),
    # Two breaks in a row (2024|2025, 2025|2026): their notes ran into each other on a phone; a
    # suppressed year beside a break.
    "4-years-two-breaks": dict(last=2026, breaks=[2025, 2026], suppressed=[2024]),
    # Breaks in a row at the right edge of ten years, and beside a suppressed year.
    "10-years-breaks": dict(last=2032, breaks=[2027, 2028, 2030, 2031, 2032], suppressed=[2029]),
}


@pytest.fixture(scope="module", params=list(WAVES))
def decade_site(request, browser, tmp_path_factory: pytest.TempPathFactory, loaded_template: Path) -> Iterator:
    """The report of 4 and of 10 yearly waves (some with years that do not compare), both languages,
    with each page opened once per layout."""
    from pipeline.report import build_report

    case = WAVES[request.param]
    root = tmp_path_factory.mktemp(f"waves-{request.param}") / "project"
    paths = loaded_copy(loaded_template, root)
    _add_waves(paths, case["last"])
    _break_years(paths, case["breaks"], case["suppressed"])
    build_report(paths, engine="offline", french=True)
    pages: dict[tuple[str, str], Opened] = {}

    def open_page(device: str, name: str) -> Opened:
        if (device, name) not in pages:
            pages[device, name] = Opened(browser, paths.site / name, **LAYOUTS[device])
        return pages[device, name]

    yield case["last"], open_page
    for page in pages.values():
        page.close()


# The latest year's value as the chart's data holds it (the label trace's point at the last year), and
# the year names under the axis: none on another.
TREND_LATEST_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')].filter(div => div.id.endsWith('-trend'))
  .map(div => {
  const line = div.data[0], labels = div.data[1];
  const years = Array.from(line.x).filter((x, i) => line.y[i] !== null && Number.isInteger(x));
  const latest = Math.max(...years), at = Array.from(labels.x).indexOf(latest);
  const ticks = [...div.querySelectorAll('g.xtick text')].map(t => ({text: t.textContent.trim(), r: t.getBoundingClientRect()}));
  const clash = [];
  ticks.forEach((a, i) => ticks.slice(i + 1).forEach(b => {
    if (Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left) > -4) clash.push([a.text, b.text]); }));
  return {id: div.id, latest, lastYear: String(Math.max(...Array.from(line.x).filter(Number.isInteger))),
          text: at < 0 ? null : (Array.isArray(labels.text) ? labels.text[at] : labels.text),
          drawn: [...div.querySelectorAll('g.scatterlayer text')].map(t => t.textContent.trim()),
          ticks: ticks.map(t => t.text), clash};
})"""


# Each break of a trend line (the empty point between two years that do not compare) and the notes
# drawn over it: centred on the gap (within 3 px on screen), with what they read; and the chart's
# other notes (a key, "suppressed").
TREND_BREAKS_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')].filter(div => div.id.endsWith('-trend'))
  .map(div => {
  const line = div.data[0], xa = div._fullLayout.xaxis, left = div.querySelector('svg.main-svg').getBoundingClientRect().left;
  const drawn = i => { const t = div.querySelector(`g.annotation[data-index="${i}"] text`);
    const r = t && t.getBoundingClientRect();
    return r && r.width > 0 ? {text: t.textContent.trim(), centre: (r.left + r.right) / 2} : null; };
  const notes = (div.layout.annotations || []).map((a, i) => ({...drawn(i), x: a.xref === 'paper' ? null : a.x}));
  const gaps = Array.from(line.x).filter((x, i) => line.y[i] === null && !Number.isInteger(x));
  return {id: div.id, breaks: gaps.map(x => ({x, at: left + xa._offset + xa.l2p(x),
            notes: notes.filter(n => n.x === x && n.text).map(n => ({text: n.text, centre: n.centre}))})),
          others: notes.filter(n => n.x === null && n.text).map(n => n.text)};
})"""
NOT_COMPARABLE = {"index.html": "not comparable", "fr/index.html": "non comparable"}

# Each point of a trend line as drawn (its year, its box) and each value label's box.
TREND_POINTS_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')].filter(div => div.id.endsWith('-trend'))
  .map(div => {
  const line = div.data[0], years = Array.from(line.x).filter((x, i) => line.y[i] !== null);
  const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  const points = [...div.querySelectorAll('g.scatterlayer g.trace')[0].querySelectorAll('path.point')]
    .map((p, i) => ({year: years[i], ...box(p)}));
  return {id: div.id, labelled: Array.from(div.data[1].x), points,
          labels: [...div.querySelectorAll('g.scatterlayer text')].filter(t => t.textContent.trim()).map(box)};
})"""


@pytest.mark.parametrize("device", ["desktop-1280", "phone-360", "reflow-320"])
@pytest.mark.parametrize("name", ["index.html", "fr/index.html"])
def test_trend_labels_stay_readable_with_many_years(decade_site, device: str, name: str) -> None:
    # With a fourth year, neighbouring labels ran into each other on a phone; with ten, on a desktop
    # too, and the first and latest labels ran past the plot's edges. Two breaks in a row (2024|2025,
    # 2025|2026) had their "not comparable" notes on top of each other on a phone, and a break between
    # the last two of ten years ran its note past the chart's right edge.
    last, open_page = decade_site
    page = open_page(device, name).page
    charts = page.evaluate(TREND_TEXT_JS)
    assert len(charts) > 30 and any(chart["notes"] for chart in charts)
    for chart in charts:
        assert chart["labels"] >= 1, (device, chart["id"])
        assert not chart["outside"], (device, chart["id"], chart["outside"])
        assert not chart["crossed"], (device, chart["id"], chart["crossed"])
        assert not chart["overlaps"], (device, chart["id"], chart["overlaps"])
    # Every break stays labelled, just over its gap: in words, or (no room for the words side by side
    # on a phone) with a mark that a key in the same chart explains.
    breaks = page.evaluate(TREND_BREAKS_JS)
    assert len(breaks) == len(charts) and any(chart["breaks"] for chart in breaks)
    words = NOT_COMPARABLE[name]
    for chart in breaks:
        for gap in chart["breaks"]:
            assert len(gap["notes"]) == 1 and abs(gap["notes"][0]["centre"] - gap["at"]) < 3, (device, chart["id"], gap)
        marks = {gap["notes"][0]["text"] for gap in chart["breaks"]}
        assert marks <= {words, "\u2260"}, (device, chart["id"], marks)
        if "\u2260" in marks:
            assert f"\u2260 {words}" in chart["others"] and len(marks) == 1, (device, chart["id"], chart)
    # Where only some values are labelled, their points are drawn larger than the others (the first
    # label reads rightwards over the next year's point), and no point reaches the figures of a label:
    # a text's box holds some 3 px below its figures at 14 px (ordinary points come 2.4 px into it at
    # 360 px; the larger ones, had their labels not risen with them, 3.4 px).
    meet = lambda a, b: min(a["right"], b["right"]) - max(a["left"], b["left"]) > 1 and \
        min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 3
    for chart in page.evaluate(TREND_POINTS_JS):
        big = [p["right"] - p["left"] for p in chart["points"] if p["year"] in chart["labelled"]]
        small = [p["right"] - p["left"] for p in chart["points"] if p["year"] not in chart["labelled"]]
        if small:
            assert big and min(big) > max(small) + 2, (device, chart["id"], big, small)
        assert not [p["year"] for p in chart["points"] if any(meet(p, label) for label in chart["labels"])], \
            (device, chart["id"])
    latest = page.evaluate(TREND_LATEST_JS)
    assert len(latest) == len(charts) and sum(chart["latest"] == last for chart in latest) > 30
    for chart in latest:
        # The latest year with a value is labelled, and the label is drawn (not clipped away).
        assert chart["text"] and chart["text"] in chart["drawn"], (device, chart["id"], chart)
        assert not chart["clash"], (device, chart["id"], chart["ticks"])
        assert chart["lastYear"] in chart["ticks"], (device, chart["id"], chart["ticks"])  # the year readers cite


@pytest.mark.parametrize("device", ["phone-360", "reflow-320"])
@pytest.mark.parametrize("name", PAGES)
def test_tap_targets_are_24_px_or_spaced_apart(on_device, device: str, name: str) -> None:
    page = on_device(device, name).page
    targets = page.evaluate(TARGETS_JS)
    assert len(targets) > (100 if name == "index.html" else 20)
    # Buttons and disclosure summaries stand alone: no spacing excuse, at least 24 x 24.
    small = [t["html"] for t in targets if t["tag"] in ("BUTTON", "SUMMARY") and min(t["w"], t["h"]) < TARGET - 0.5]
    assert not small, (device, small[:3])
    others = [t for t in targets if not t["inText"]]
    crowded = [t["html"] for t in others if min(t["w"], t["h"]) < TARGET - 0.5 and _too_close(t, targets)]
    assert not crowded, (device, crowded[:3])


@pytest.mark.parametrize("name", PAGES)
def test_every_table_caption_is_read_without_scrolling_sideways_on_a_phone(browser, site: Paths, name: str) -> None:
    o = Opened(browser, site.site / name, **DEVICES["phone-360"])
    try:
        o.page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        captions = o.page.evaluate("""() => [...document.querySelectorAll('.table-scroll')].map(box => {
            const shown = box.getBoundingClientRect(), caption = box.querySelector('caption');
            const range = document.createRange(); range.selectNodeContents(caption);
            const text = range.getBoundingClientRect();
            return {id: caption.id, wide: box.scrollWidth > box.clientWidth,
                    inside: text.left >= shown.left - 1 && text.right <= shown.right + 1};
        })""")
    finally:
        o.close()
    assert any(c["wide"] for c in captions), "some table should be wider than a phone"
    assert [c["id"] for c in captions if not c["inside"]] == []


# --- accessibility, console, network ------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_no_serious_or_critical_violation(fresh, name: str) -> None:
    page = fresh(name).page
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")  # audit the tables too
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                               ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length, "
                               "first: v.nodes[0].target.join(' ')}))")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, json.dumps(serious, indent=1)


def test_no_console_error_and_no_request_leaves_the_machine(opened: dict[str, Opened], fresh) -> None:
    for name, o in opened.items():
        assert o.errors == [], name
        assert o.outside == [], name
    # Hovering and opening everything must not fetch anything either.
    o = fresh("index.html")
    o.page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    o.page.hover("#chart-PREC-01-region")
    o.page.wait_for_timeout(300)
    assert o.errors == [] and o.outside == []


def test_routing_catches_a_request_that_leaves(fresh) -> None:
    # The check above can fail: a page asking for a remote resource is caught and blocked.
    o = fresh("methods.html")
    o.page.evaluate("() => { const i = new Image(); i.src = 'https://cdn.example.org/x.png'; document.body.append(i); }")
    o.page.wait_for_timeout(300)
    assert o.outside == ["https://cdn.example.org/x.png"]


# --- hostile text ---------------------------------------------------------------------------------


def test_script_in_a_quote_or_a_group_name_shows_as_text_and_never_runs(opened: dict[str, Opened]) -> None:
    page = opened["index.html"].page
    assert page.evaluate("() => window.__xss") is None
    quote = page.locator("blockquote.quote", has_text="peer work is not real work")
    assert quote.count() == 1 and quote.is_visible()
    assert XSS in quote.inner_text()
    ind, breakdown, _ = XSS_GROUP
    row_head = page.evaluate("(id) => [...document.querySelectorAll(`#${id} tbody th`)].map(t => t.textContent)",
                             f"table-{ind}-{breakdown}")
    assert XSS_LABEL in row_head
    ticks = page.evaluate("(id) => [...document.querySelectorAll(`#${id} .ytick text`)].map(t => t.textContent)",
                          f"chart-{ind}-region")
    assert any(XSS.split("<img")[0] in t for t in ticks), ticks
    assert page.evaluate("() => [...document.querySelectorAll('img')].filter(i => i.getAttribute('src') === 'x').length") == 0


def test_a_quote_in_a_group_name_shows_as_typed_in_the_chart(fresh) -> None:
    # plotly.js decodes &lt; and &gt; but not &quot;: a name escaped for HTML attributes showed
    # `onerror=&quot;window...` in the hover box. Quotes show as typed, and still no tag opens.
    page = fresh("index.html").page
    ind, _, _ = XSS_GROUP
    shown = page.evaluate("""(id) => {
        const div = document.getElementById(id), ours = y => String(y).startsWith('Toronto');
        const curve = div.data.findIndex(t => t.hoverinfo !== 'skip' && [...(t.y || [])].some(ours));
        Plotly.Fx.hover(div, [{curveNumber: curve, pointNumber: [...div.data[curve].y].findIndex(ours)}]);
        return {hover: [...div.querySelectorAll('.hoverlayer text')].map(t => t.textContent).join(' '),
                ticks: [...div.querySelectorAll('.ytick text')].map(t => t.textContent).join(' ')};
    }""", f"chart-{ind}-region")
    assert "Toronto" in shown["hover"], shown
    assert 'onerror="window.__xss=2"' in shown["hover"], shown
    assert "&quot;" not in shown["hover"] + shown["ticks"], shown
    assert page.evaluate("() => window.__xss") is None
