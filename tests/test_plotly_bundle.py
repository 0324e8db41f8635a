"""The chart library in the report pages: plotly.js's basic bundle, vendored in pipeline/vendor/.

It must be the plotly.js version plotly.py writes its figures for, draw every trace type the pages
hold, keep a page small, and give way to the full library (saying so) after a plotly upgrade.
What the bundle draws is read from its own code here, never from the pipeline's list.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from conftest import loaded_copy, REPO
from pipeline import audit, charts, plotly_bundle
from pipeline.config import Paths
from pipeline.report import MANIFEST, build_report

VENDOR = REPO / "pipeline" / "vendor"
BUNDLE = VENDOR / "plotly-basic.min.js"
PROVENANCE = json.loads((VENDOR / "plotly-basic.json").read_text(encoding="utf-8"))
MAX_PAGE_BYTES = 2_500_000  # index.html was 6.0 MB with the full library


def bundle_text() -> str:
    return BUNDLE.read_text(encoding="utf-8")


def drawable(library: str) -> set[str]:
    """Trace types a plotly.js build registers: each is a module {moduleType:"trace",name:...}."""
    return set(re.findall(r'moduleType:\s*"trace",\s*name:\s*"(\w+)"', library))


def page_trace_types(page: str) -> set[str]:
    """The type of every trace in every Plotly.newPlot(id, data, layout, config) call of a page."""
    decoder, types, calls = json.JSONDecoder(), set(), 0
    for call in re.finditer(r"Plotly\.newPlot\(\s*", page):
        _, end = decoder.raw_decode(page, call.end())  # the div id
        start = re.compile(r"\s*,\s*").match(page, end).end()
        data, _ = decoder.raw_decode(page, start)
        types |= {trace.get("type", "scatter") for trace in data}  # plotly.js's default type is scatter
        calls += 1
    assert calls, "no chart found in the page"
    return types


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, loaded_template: Path) -> Paths:
    root = tmp_path_factory.mktemp("bundle") / "project"
    paths = loaded_copy(loaded_template, root)
    build_report(paths, engine="offline")
    return paths


@pytest.fixture
def upgraded_plotly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """plotly.py as after an upgrade: it writes figures for plotly.js 9.9.9, here and in the report's
    kernels (started with this environment: a sitecustomize on PYTHONPATH patches them too)."""
    import os

    import plotly.offline

    site_dir = tmp_path / "site-patch"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text(textwrap.dedent("""
        import plotly.offline
        plotly.offline.get_plotlyjs_version = lambda: "9.9.9"
    """), encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site_dir), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(plotly.offline, "get_plotlyjs_version", lambda: "9.9.9")
    plotly_bundle.page_bundle.cache_clear()
    plotly_bundle.page_traces.cache_clear()
    yield
    plotly_bundle.page_bundle.cache_clear()
    plotly_bundle.page_traces.cache_clear()


# (a) an upgrade of plotly forces an update of the vendored file


def test_the_vendored_bundle_is_the_plotly_js_that_plotly_py_writes_for() -> None:
    header = re.search(r"plotly\.js \(basic - minified\) v(\S+)", bundle_text()[:300])
    assert header, f"{BUNDLE} has no plotly.js version in its header comment"
    assert header.group(1) == PROVENANCE["version"] == get_plotlyjs_version(), (
        "plotly was upgraded: vendor plotly.js-basic-dist-min of its plotly.js version (docs/runbook.md)")
    assert PROVENANCE["package"] == "plotly.js-basic-dist-min" and PROVENANCE["version"] in PROVENANCE["tarball"]


def test_the_vendored_bundle_is_the_file_its_provenance_names() -> None:
    assert hashlib.sha256(BUNDLE.read_bytes()).hexdigest() == PROVENANCE["file_sha256"]
    assert PROVENANCE["npm_integrity"].startswith("sha512-")
    assert "MIT License" in (VENDOR / "plotly-basic.LICENSE").read_text(encoding="utf-8")


# (b), (c) the built pages


def test_the_bundle_draws_every_trace_type_the_pages_hold(site: Paths) -> None:
    page = (site.site / "index.html").read_text(encoding="utf-8")
    used = page_trace_types(page)
    assert {"bar", "scatter"} <= used  # the region bars and the trends, at least
    assert used <= drawable(bundle_text()), f"not in the basic bundle: {used - drawable(bundle_text())}"


def test_a_page_is_small_and_carries_plotly_js_once(site: Paths) -> None:
    page = (site.site / "index.html").read_text(encoding="utf-8")
    assert len(page.encode("utf-8")) < MAX_PAGE_BYTES
    assert page.count(bundle_text()) == 1
    assert page.count("* plotly.js") == 1 and get_plotlyjs()[:300] not in page
    manifest = json.loads((site.site / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["plotly.js"] == f"plotly.js-basic-dist-min {get_plotlyjs_version()} (pipeline/vendor)"


def test_the_audit_does_not_scan_the_bundle(site: Paths) -> None:
    page = site.site / "index.html"
    scanned = audit._output_text(page)
    assert "plotly.js (basic" not in scanned and 'moduleType:"trace"' not in scanned
    assert len(scanned) == len(page.read_text(encoding="utf-8")) - len(bundle_text())


# (d) after a plotly upgrade, before the bundle is updated


def test_a_chart_the_bundle_cannot_draw_stops_the_render_with_what_to_do() -> None:
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]]), layout=dict(height=300))
    with pytest.raises(ValueError, match=r"chart x-heat: trace type heatmap .* draws bar, pie, scatter.*runbook"):
        charts._figure_html(fig, "x-heat", "label", "caption")


def test_after_a_plotly_upgrade_the_pages_embed_the_full_library_and_the_run_says_so(
        upgraded_plotly: None, tmp_path: Path, loaded_template: Path) -> None:
    script = charts.plotly_js()
    assert script.count(get_plotlyjs()) == 1 and bundle_text() not in script

    root = tmp_path / "project"
    paths = loaded_copy(loaded_template, root)
    said: list[str] = []
    build_report(paths, engine="offline", progress=said.append)
    notice = [m for m in said if "full plotly.js" in m]
    assert len(notice) == 1
    assert f"plotly.js {PROVENANCE['version']}" in notice[0] and "9.9.9" in notice[0] and "docs/runbook.md" in notice[0]
    page = (paths.site / "index.html").read_text(encoding="utf-8")
    assert page.count(get_plotlyjs()) == 1 and bundle_text() not in page
    manifest = json.loads((paths.site / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["plotly.js"] == "plotly.js 9.9.9 (full, from plotly.py)"
    assert 'moduleType:"trace"' not in audit._output_text(paths.site / "index.html")  # nor is it scanned
