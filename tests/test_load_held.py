"""A run holds the answers to the key quasi-identifiers out of `answers` until k-anonymity replaces
them (so that DuckDB does not write the run's answers a second time at commit). What the warehouse
stores must be exactly what it stores when they are written to `answers` straight away, on a first
run and on a later run that adds a wave to protected ones."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import numpy as np
import pytest

from conftest import make_project
from pipeline import deidentify as deidentify_module
from pipeline import run as run_module
from pipeline.config import Paths, export_files
from pipeline.run import run_load

KEY_QUASI_IDENTIFIER = "gender"  # one of surveys/privacy.yaml's, asked by every synthetic wave


def warehouse_contents(paths: Paths) -> dict[str, list[tuple]]:
    """Every table, rows sorted; the ledger without the run's id and time (the clock's, not the data's)."""
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * {'EXCLUDE (run_id, loaded_at)' if t == 'load_ledger' else ''} "
                               f"FROM {t} ORDER BY ALL").fetchall() for t in tables}
    finally:
        con.close()


def load_in_two_runs(paths: Paths, monkeypatch: pytest.MonkeyPatch, hold: bool) -> None:
    """The oldest wave, then the others, with respondent keys numbered in load order (not random)
    so that two warehouses can be compared row for row."""
    numbers = itertools.count(1)
    monkeypatch.setattr(deidentify_module, "new_keys",
                        lambda count: np.fromiter(itertools.islice(numbers, count), dtype=np.int64, count=count))
    if not hold:
        monkeypatch.setattr(run_module, "deidentify", lambda *arguments, held=(), **options:
                            deidentify_module.deidentify(*arguments, **options))
    files = export_files(paths.synthetic)
    run_load(paths, files=files[:1], synthetic=True)
    run_load(paths, files=files, synthetic=True)


def test_holding_the_key_answers_stores_the_same_warehouse(tmp_path: Path, synthetic_exports: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    held = make_project(tmp_path / "held", synthetic_exports)
    direct = make_project(tmp_path / "direct", synthetic_exports)
    with monkeypatch.context() as patch:
        load_in_two_runs(held, patch, hold=True)
    with monkeypatch.context() as patch:
        load_in_two_runs(direct, patch, hold=False)
    stored = warehouse_contents(held)
    assert len(stored["anonymity_summary"]) >= 2  # waves protected, in two runs
    assert any(row[2] == KEY_QUASI_IDENTIFIER for row in stored["answers"])  # key answers were stored
    assert stored == warehouse_contents(direct)
