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
from pipeline.render import RenderResult, choose_engine, render_project

MANIFEST = "manifest.json"
RECORDED_PACKAGES = ("duckdb", "pandas", "plotly", "great-expectations", "pypandoc-binary", "nbclient", "ipykernel")


def build_report(paths: Paths, engine: str = "auto", progress=lambda _m: None, force: bool = False) -> RenderResult:
    """Render the report, unless nothing it depends on changed since the last rendering."""
    key = inputs_key(paths, choose_engine(engine, shutil.which("quarto")))
    previous = _previous_manifest(paths)
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
        for sql in (
            "SELECT * FROM published_estimates ORDER BY ALL",
            "SELECT file_sha256, wave, synthetic, rows_read, rows_loaded, rows_quarantined, rows_excluded, "
            "rows_duplicate FROM load_ledger ORDER BY ALL",
            "SELECT * FROM indicator_catalogue ORDER BY ALL",
            "SELECT * FROM concepts ORDER BY ALL",
        ):
            digest.update(repr(con.execute(sql).fetchall()).encode())
    sources = sorted(p for p in paths.reports.rglob("*") if p.is_file() and "_site" not in p.parts and ".quarto" not in p.parts)
    code = [Path(__file__).with_name(n) for n in ("charts.py", "render.py", "report.py")]
    for path in [*sources, *code, paths.disclosure_file]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _previous_manifest(paths: Paths) -> dict:
    try:
        return json.loads((paths.site / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


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
