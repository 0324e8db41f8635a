"""Where things live. Every path the pipeline touches is derived from one project root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WAREHOUSE_FILE = "consultation.duckdb"
EXPORT_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx")
# Set by the offline engine, whose kernels each run one page and end: the report's cells may then keep
# one read-only connection to the warehouse for the kernel's life (pipeline/charts.py).
HOLD_WAREHOUSE_VARIABLE = "CONSULT_HOLD_WAREHOUSE"


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def surveys(self) -> Path:
        return self.root / "surveys"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def synthetic(self) -> Path:
        """The built-in synthetic consultation: generated, never committed, never mixed with raw."""
        return self.root / "data" / "synthetic"

    @property
    def warehouse_dir(self) -> Path:
        return self.root / "data" / "warehouse"

    @property
    def warehouse(self) -> Path:
        return self.warehouse_dir / WAREHOUSE_FILE

    @property
    def runs(self) -> Path:
        """Per-run records (validation results as JSON, run manifests). Never committed."""
        return self.warehouse_dir / "runs"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def site(self) -> Path:
        return self.reports / "_site"

    @property
    def indicators_file(self) -> Path:
        return self.surveys / "indicators.yaml"

    @property
    def disclosure_file(self) -> Path:
        return self.surveys / "disclosure.yaml"

    @property
    def deid_file(self) -> Path:
        return self.surveys / "deidentification.yaml"

    @property
    def living_wage_file(self) -> Path:
        return self.surveys / "reference" / "living_wage.yaml"

    @property
    def synth_file(self) -> Path:
        return self.surveys / "synthetic.yaml"


def find_root(start: Path | None = None) -> Path:
    """The project root: $CONSULT_HOME, else the nearest folder above `start` holding surveys/."""
    if env := os.environ.get("CONSULT_HOME"):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / "surveys").is_dir() and (folder / "pipeline").is_dir():
            return folder
    # Installed package used outside a checkout: fall back to the package's own checkout.
    return Path(__file__).resolve().parent.parent


def project_paths(root: Path | None = None) -> Paths:
    return Paths(root.resolve() if root else find_root())


def export_files(folder: Path) -> list[Path]:
    """Survey exports under a folder, in a stable order; READMEs, hidden files and the lock files
    Excel and Word leave beside an open file (~$name) are not exports."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in EXPORT_SUFFIXES
        and not p.name.startswith((".", "~$"))
        and not p.name.lower().startswith("readme")
    )
