"""Report: render the Quarto project in reports/ from the warehouse, and record how.

Quarto renders it where the Quarto CLI is installed; elsewhere the offline engine (a Jupyter
kernel for the cells, pandoc for the page) renders the same .qmd files. The manifest beside the
site records the engine and the hashes of every input, without a timestamp, so two runs on the
same inputs give the same files.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from pipeline.config import Paths
from pipeline.load import connect
from pipeline.plotly_bundle import VENDOR, page_bundle
from pipeline.render import Detail, RenderResult, choose_engine, load_project, render_project

MANIFEST = "manifest.json"
QA_PROJECT = "qa"  # reports/qa/: the internal QA report, its own Quarto project
FRENCH_PROJECT = "fr"  # reports/fr/: the French pages, their own Quarto project, written to _site/fr/
# Beyond the declared dependencies (recorded too): what the numbers and pages also depend on.
RECORDED_PACKAGES = ("numpy", "jupyter-client", "nbformat")


def build_report(paths: Paths, engine: str = "auto", progress=lambda _m: None, force: bool = False,
                 french: bool = False, pdf: bool = False) -> RenderResult:
    """Render the report, unless nothing it depends on changed since the last rendering; with `french`,
    the French pages too (reports/fr/ into the site's fr/ folder). `pdf`: the printable PDF will be
    made next (build_pdf_report), so the page footers link to it."""
    from pipeline.pdf import PDF_NAME

    base = inputs_key(paths, choose_engine(engine, shutil.which("quarto")))
    # A PDF or French pages already in the site stay (and stay linked) only while the site is not
    # rendered again.
    key = _site_key(base, pdf or (paths.site / PDF_NAME).is_file(),
                    french or (paths.site / FRENCH_PROJECT / "index.html").is_file())
    previous = _previous_manifest(paths.site)
    if not force and previous.get("inputs_key") == key and all((paths.site / p).is_file() for p in previous["pages"]):
        progress(Detail("the report is up to date (same data, definitions and report sources): not rendered again"))
        result = RenderResult(previous["engine"], paths.site, [paths.site / p for p in previous["pages"]],
                              rendered=False)
    else:
        key = _site_key(base, pdf, french)  # rendering replaces the whole folder, earlier PDF and French with it
        progress("rendering the report")
        if page_bundle().notice:
            progress(page_bundle().notice)
        result = render_project(paths.reports, engine=engine, env=_page_env(paths, pdf, french_link=french),
                                progress=progress)
        write_manifest(paths, result, key)
    if french:
        build_french_report(paths, engine, progress, force, key, pdf)
    return result


# French typography: a no-break space inside « », so that a line never ends on « or starts with ».
# Texts come from many places (report strings, the catalogue's French, questionnaire wording, the
# pages' prose, which pandoc wraps at any space): the rendered page is where they all meet.
_AFTER_OPENING, _BEFORE_CLOSING = re.compile(r"«[ \t\r\n]+"), re.compile(r"[ \t\r\n]+»")


def french_spacing(page: str) -> str:
    return _BEFORE_CLOSING.sub("\u00a0»", _AFTER_OPENING.sub("«\u00a0", page))


def _site_key(base: str, pdf_link: bool, french_link: bool = False) -> str:
    links = ("\0pdf-link" if pdf_link else "") + ("\0french-link" if french_link else "")
    return hashlib.sha256(f"{base}{links}".encode()).hexdigest() if links else base


def _page_env(paths: Paths, pdf: bool, lang: str = "en", french_link: bool = False) -> dict[str, str]:
    """What the cells read: the warehouse, the project, the report's language, the PDF to link to,
    whether the English pages link to French ones (only when those are rendered too)."""
    from pipeline.pdf import PDF_NAME

    env = {"CONSULT_WAREHOUSE": str(paths.warehouse), "CONSULT_HOME": str(paths.root), "CONSULT_LANG": lang}
    if french_link:
        env["CONSULT_FRENCH"] = "1"
    return {**env, "CONSULT_PDF": PDF_NAME} if pdf else env


def build_french_report(paths: Paths, engine: str, progress, force: bool, key: str, pdf: bool) -> RenderResult:
    """The French pages (reports/fr/) into the site's fr/ folder, recorded in the site's manifest
    under "fr"; skipped when the site's inputs did not change since they were rendered. Every
    indicator and group needs its French text first (a TranslationError names what is missing)."""
    from pipeline.translations import french_catalogue

    french_catalogue(paths.indicators_file, paths.surveys)
    recorded = _previous_manifest(paths.site).get(FRENCH_PROJECT, {})
    if not force and recorded.get("inputs_key") == key and all((paths.site / p).is_file() for p in recorded["pages"]):
        progress("the French report is up to date: not rendered again")
        return RenderResult(recorded["engine"], paths.site / FRENCH_PROJECT,
                            [paths.site / p for p in recorded["pages"]], rendered=False)
    progress("rendering the French report")
    result = render_project(paths.reports / FRENCH_PROJECT, engine=engine, env=_page_env(paths, pdf, "fr"),
                            progress=progress)
    for page in result.pages:
        page.write_text(french_spacing(page.read_text(encoding="utf-8")), encoding="utf-8")
    record_output(paths.site, FRENCH_PROJECT, {"engine": result.engine, "inputs_key": key,
                                               "pages": [str(p.relative_to(paths.site)) for p in result.pages]})
    return result


def inputs_key(paths: Paths, engine: str) -> str:
    """A hash of everything the report shows: the published figures, the ledger, the catalogue,
    the report's sources and the code that draws it. Same key, same report."""
    digest = hashlib.sha256(engine.encode())
    digest.update(page_bundle().name.encode())  # after a plotly upgrade the pages change library
    hash_published(paths, digest)
    sources = sorted(p for p in paths.reports.rglob("*") if p.is_file()
                     and not {"_site", ".quarto", "qa"} & set(p.relative_to(paths.reports).parts))
    code = [Path(__file__).with_name(n) for n in ("charts.py", "render.py", "report.py", "quotes.py",
                                                  "plotly_bundle.py")]
    code += sorted(p for p in VENDOR.iterdir() if p.is_file())  # the plotly.js bundle the pages embed
    # Definitions (privacy rules, labels) and quote decisions change what a page says.
    decisions = sorted(paths.surveys.rglob("*.yaml")) + sorted((paths.root / "data" / "review").rglob("*.yaml"))
    hash_files(paths, digest, [*sources, *code, *decisions])
    return digest.hexdigest()


def hash_published(paths: Paths, digest) -> None:
    """Feed `digest` everything that leaves the warehouse: the published figures, the catalogue,
    the breakdowns, the scores, the question wording and the ledger (also the open data release's key)."""
    with connect(paths.warehouse, read_only=True) as con:  # a clear error when there is no warehouse
        shown = [name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'published%' "
            "OR table_name IN ('indicator_catalogue', 'indicator_breakdowns', 'indicator_scores', 'concepts', "
            "'choices') ORDER BY 1"
        ).fetchall()]
        queries = [f"SELECT * FROM {name} ORDER BY ALL" for name in shown]
        queries.append("SELECT file_sha256, wave, synthetic, rows_read, rows_loaded, rows_quarantined, "
                       "rows_excluded, rows_duplicate FROM load_ledger ORDER BY ALL")
        for sql in queries:
            digest.update(repr(con.execute(sql).fetchall()).encode())


def hash_files(paths: Paths, digest, files: list[Path]) -> None:
    """Feed `digest` each file's name (relative to the project) and content."""
    for path in files:
        digest.update(str(path.relative_to(paths.root) if path.is_relative_to(paths.root) else path.name).encode()
                      + b"\0" + path.read_bytes())


def _previous_manifest(output_dir: Path) -> dict:
    try:
        return json.loads((output_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build_reports(paths: Paths, engine: str = "auto",
                  progress: Callable[[str], None] = lambda _m: None) -> tuple[RenderResult, RenderResult]:
    """The public report and the internal QA report, rendered side by side: every page runs in its
    own kernel process, so on two cores the QA report adds next to nothing to the public report's
    time. The QA report's messages are marked [QA]."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        qa = pool.submit(build_qa_report, paths, engine, lambda message: progress(type(message)(f"[QA] {message}")))
        public = build_report(paths, engine=engine, progress=progress)
        return public, qa.result()


# --- the printable PDF of the public report (on request: it runs every page again) --------------


def build_pdf_report(paths: Paths, engine: str = "auto", progress=lambda _m: None, force: bool = False):
    """The public report as one PDF in the site (reports/_site/peer-support-consultation.pdf),
    recorded in the site's manifest. Build the HTML first: rendering the site replaces the folder."""
    from pipeline.pdf import PDF_NAME, PdfResult, build_pdf

    target = paths.site / PDF_NAME
    digest = hashlib.sha256(inputs_key(paths, choose_engine(engine, shutil.which("quarto"))).encode())
    hash_files(paths, digest, [Path(__file__).with_name("pdf.py")])
    key = digest.hexdigest()
    recorded = _previous_manifest(paths.site).get("pdf", {})
    if not force and recorded.get("inputs_key") == key and target.is_file():
        progress("the PDF is up to date: not rendered again")
        return PdfResult(recorded["engine"], target, "", [])
    with connect(paths.warehouse, read_only=True) as con:
        synthetic = bool(con.execute("SELECT coalesce(bool_or(synthetic), false) FROM load_ledger").fetchall()[0][0])
    env = {"CONSULT_WAREHOUSE": str(paths.warehouse), "CONSULT_HOME": str(paths.root)}
    progress("rendering the PDF")
    result = build_pdf(paths.reports, target, engine=engine, synthetic=synthetic, env=env, progress=progress)
    record_output(paths.site, "pdf", {"file": PDF_NAME, "engine": result.engine, "inputs_key": key,
                                      "sha256": _sha256(target)})
    return result


def record_output(site: Path, name: str, entry: dict) -> None:
    """Add an output made after the site (the PDF, a translation) to the site's manifest."""
    manifest = _previous_manifest(site)
    manifest[name] = entry
    (site / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --- the internal QA report (reports/qa/, rendered beside the warehouse, never published) --------


def build_qa_report(paths: Paths, engine: str = "auto", progress=lambda _m: None, force: bool = False) -> RenderResult:
    """Render the internal QA report into its own output folder (outside the public site), unless
    nothing it shows changed since the last rendering."""
    project = paths.reports / QA_PROJECT
    output_dir = load_project(project).output_dir
    key = qa_inputs_key(paths, choose_engine(engine, shutil.which("quarto")))
    previous = _previous_manifest(output_dir)
    if not force and previous.get("inputs_key") == key and all((output_dir / p).is_file() for p in previous["pages"]):
        progress(Detail("the QA report is up to date: not rendered again"))
        return RenderResult(previous["engine"], output_dir, [output_dir / p for p in previous["pages"]],
                            rendered=False)
    env = {"CONSULT_WAREHOUSE": str(paths.warehouse), "CONSULT_HOME": str(paths.root)}
    progress("rendering the internal QA report")
    result = render_project(project, engine=engine, env=env, progress=progress)
    manifest = {"engine": result.engine, "inputs_key": key,
                "pages": [str(p.relative_to(result.output_dir)) for p in result.pages]}
    (result.output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return result


def qa_inputs_key(paths: Paths, engine: str) -> str:
    """Everything the QA report shows derives from the files in the ledger (immutable once loaded),
    the rules files, the QA sources and the code that writes it."""
    digest = hashlib.sha256(engine.encode())
    with connect(paths.warehouse, read_only=True) as con:
        digest.update(repr(con.execute("SELECT * FROM load_ledger ORDER BY ALL").fetchall()).encode())
    sources = sorted((paths.reports / QA_PROJECT).glob("*.*")) + [paths.reports / "styles.css"]
    rules = sorted(paths.surveys.glob("*/rules.yaml"))
    code = [Path(__file__).with_name(n) for n in ("qa.py", "charts.py", "render.py", "report.py", "validate.py")]
    hash_files(paths, digest, [*sources, *rules, *code])
    return digest.hexdigest()


def write_manifest(paths: Paths, result: RenderResult, key: str) -> Path:
    with connect(paths.warehouse, read_only=True) as con:
        inputs = con.execute(
            "SELECT file_name, wave, platform, synthetic, file_sha256, instrument_sha256 "
            "FROM load_ledger ORDER BY wave, file_name"
        ).fetchall()
    manifest = {
        "engine": result.engine,
        "inputs_key": key,
        "synthetic": any(row[3] for row in inputs),
        "inputs": [
            {"file": r[0], "wave": r[1], "platform": r[2], "sha256": r[4], "instrument_sha256": r[5]} for r in inputs
        ],
        # Every definition: instruments, wave rules, indicators, disclosure, de-identification,
        # privacy, reference rates, the synthetic consultation's recipe and the release settings.
        "definitions": {str(p.relative_to(paths.root)): _sha256(p) for p in sorted(paths.surveys.rglob("*.yaml"))},
        "code_version": _code_version(paths.root),
        "python": platform.python_version(),
        "plotly.js": page_bundle().name,  # the chart library inlined in the pages
        "packages": {name: _version(name) for name in sorted({*RECORDED_PACKAGES, *_declared_dependencies()})},
        "pages": [str(p.relative_to(result.output_dir)) for p in result.pages],
    }
    target = result.output_dir / MANIFEST
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _declared_dependencies() -> list[str]:
    """The package's own dependencies (pyproject.toml), as installed."""
    try:
        requires = metadata.requires("peerworks-consult") or []
    except metadata.PackageNotFoundError:
        return []
    return [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]


def _code_version(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or metadata.version("peerworks-consult")
    except (OSError, subprocess.SubprocessError):
        return metadata.version("peerworks-consult")
