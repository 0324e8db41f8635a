"""Report: render the Quarto project in reports/ from the warehouse, and record how.

Quarto renders it where the Quarto CLI is installed; elsewhere the offline engine (a Jupyter
kernel for the cells, pandoc for the page) renders the same .qmd files. The manifest beside the
site records the engine and the hashes of every input, without a timestamp, so two runs on the
same inputs give the same files.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

from pipeline.config import Paths
from pipeline.load import connect
from pipeline.render import RenderResult, render_project

MANIFEST = "manifest.json"
RECORDED_PACKAGES = ("duckdb", "pandas", "plotly", "great-expectations", "pypandoc-binary", "nbclient", "ipykernel")


def build_report(paths: Paths, engine: str = "auto", progress=lambda _m: None) -> RenderResult:
    with connect(paths.warehouse, read_only=True):
        pass  # fails early, with a clear message, when there is no warehouse yet
    env = {"CONSULT_WAREHOUSE": str(paths.warehouse), "CONSULT_HOME": str(paths.root)}
    progress("rendering the report")
    result = render_project(paths.reports, engine=engine, env=env, progress=progress)
    write_manifest(paths, result)
    return result


def write_manifest(paths: Paths, result: RenderResult) -> Path:
    with connect(paths.warehouse, read_only=True) as con:
        inputs = con.execute(
            "SELECT file_name, wave, platform, synthetic, file_sha256, instrument_sha256 "
            "FROM load_ledger ORDER BY wave, file_name"
        ).fetchall()
    manifest = {
        "engine": result.engine,
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
