"""Report: render the Quarto project in reports/ from the warehouse, and record how.

Quarto renders it where the Quarto CLI is installed; elsewhere the offline engine (a Jupyter
kernel for the cells, pandoc for the page) renders the same .qmd files. The manifest beside the
site records the engine and the hashes of every input, without a timestamp, so two runs on the
same inputs give the same files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from pipeline.config import Paths
from pipeline.load import connect
from pipeline.render import RenderResult, choose_engine, load_project, render_project

MANIFEST = "manifest.json"
QA_PROJECT = "qa"  # reports/qa/: the internal QA report, its own Quarto project
RECORDED_PACKAGES = ("duckdb", "pandas", "plotly", "great-expectations", "pypandoc-binary", "nbclient", "ipykernel")


def build_report(paths: Paths, engine: str = "auto", progress=lambda _m: None, force: bool = False) -> RenderResult:
    """Render the report, unless nothing it depends on changed since the last rendering."""
    key = inputs_key(paths, choose_engine(engine, shutil.which("quarto")))
    previous = _previous_manifest(paths.site)
    if not force and previous.get("inputs_key") == key and all((paths.site / p).is_file() for p in previous["pages"]):
        progress("the report is up to date (same data, definitions and report sources): not rendered again")
        return RenderResult(previous["engine"], paths.site, [paths.site / p for p in previous["pages"]])
    env = {"CONSULT_WAREHOUSE": str(paths.warehouse), "CONSULT_HOME": str(paths.root)}
    progress("rendering the report")
    result = render_project(paths.reports, engine=engine, env=env, progress=progress)
    write_manifest(paths, result, key)
    return result


def inputs_key(paths: Paths, engine: str) -> str:
    """A hash of everything the report shows: the published figures, the ledger, the catalogue,
    the report's sources and the code that draws it. Same key, same report."""
    digest = hashlib.sha256(engine.encode())
    with connect(paths.warehouse, read_only=True) as con:  # a clear error when there is no warehouse
        shown = [name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'published%' "
            "OR table_name IN ('indicator_catalogue', 'indicator_breakdowns', 'concepts', 'choices') ORDER BY 1"
        ).fetchall()]
        queries = [f"SELECT * FROM {name} ORDER BY ALL" for name in shown]
        queries.append("SELECT file_sha256, wave, synthetic, rows_read, rows_loaded, rows_quarantined, "
                       "rows_excluded, rows_duplicate FROM load_ledger ORDER BY ALL")
        for sql in queries:
            digest.update(repr(con.execute(sql).fetchall()).encode())
    sources = sorted(p for p in paths.reports.rglob("*") if p.is_file()
                     and not {"_site", ".quarto", "qa"} & set(p.relative_to(paths.reports).parts))
    code = [Path(__file__).with_name(n) for n in ("charts.py", "render.py", "report.py", "quotes.py")]
    # Definitions (privacy rules, labels) and quote decisions change what a page says.
    decisions = sorted(paths.surveys.rglob("*.yaml")) + sorted((paths.root / "data" / "review").rglob("*.yaml"))
    for path in [*sources, *code, *decisions]:
        digest.update(str(path.relative_to(paths.root) if path.is_relative_to(paths.root) else path.name).encode()
                      + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _previous_manifest(output_dir: Path) -> dict:
    try:
        return json.loads((output_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# --- the internal QA report (reports/qa/, rendered beside the warehouse, never published) --------


def build_qa_report(paths: Paths, engine: str = "auto", progress=lambda _m: None, force: bool = False) -> RenderResult:
    """Render the internal QA report into its own output folder (outside the public site), unless
    nothing it shows changed since the last rendering."""
    project = paths.reports / QA_PROJECT
    output_dir = load_project(project).output_dir
    key = qa_inputs_key(paths, choose_engine(engine, shutil.which("quarto")))
    previous = _previous_manifest(output_dir)
    if not force and previous.get("inputs_key") == key and all((output_dir / p).is_file() for p in previous["pages"]):
        progress("the QA report is up to date: not rendered again")
        return RenderResult(previous["engine"], output_dir, [output_dir / p for p in previous["pages"]])
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
    for path in [*sources, *rules, *code]:
        digest.update(str(path.relative_to(paths.root) if path.is_relative_to(paths.root) else path.name).encode()
                      + b"\0" + path.read_bytes())
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
        "definitions": {
            str(p.relative_to(paths.root)): _sha256(p)
            for p in [paths.indicators_file, paths.disclosure_file, paths.deid_file, paths.living_wage_file]
        },
        "code_version": _code_version(paths.root),
        "packages": {name: _version(name) for name in RECORDED_PACKAGES},
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


def _code_version(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or metadata.version("peerworks-consult")
    except (OSError, subprocess.SubprocessError):
        return metadata.version("peerworks-consult")
