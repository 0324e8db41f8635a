"""The database's memory budget: bounded by default, set with CONSULT_MEMORY_LIMIT, and a run that
exceeds it stops with a clear error and loads nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from pipeline.config import Paths
from pipeline.load import WarehouseError, connect


def setting(paths: Paths) -> str:
    with connect(paths.warehouse) as con:
        return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def test_the_budget_is_bounded_by_default_and_can_be_set(empty_project: Paths, monkeypatch) -> None:
    monkeypatch.delenv("CONSULT_MEMORY_LIMIT", raising=False)
    # DuckDB shows the budget in binary units, one decimal cut off: 1.5 GB = 1.5e9 / 2**30 = 1.397 GiB
    assert setting(empty_project) == "1.3 GiB"
    monkeypatch.setenv("CONSULT_MEMORY_LIMIT", "512MB")
    assert setting(empty_project) == "488.2 MiB"  # 512e6 / 2**20


def test_a_budget_that_is_not_a_size_is_a_clear_error(empty_project: Paths, monkeypatch) -> None:
    monkeypatch.setenv("CONSULT_MEMORY_LIMIT", "lots")
    with pytest.raises(WarehouseError, match="CONSULT_MEMORY_LIMIT='lots': expected a size such as 4GB"):
        setting(empty_project)


def test_a_run_over_budget_stops_clearly_and_loads_nothing(project: Paths) -> None:
    env = {"CONSULT_MEMORY_LIMIT": "2MB", "PATH": "/usr/bin:/bin",
           "CONSULT_SECRET_FILE": str(project.root / "secret.key")}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--root", str(project.root), "run", "--no-report"],
                            capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "ran out of its memory budget (2MB)" in out and "CONSULT_MEMORY_LIMIT=8GB" in out
    assert "Traceback" not in out
    assert not project.warehouse.exists()  # a first run that failed leaves no warehouse behind


def test_a_long_query_prints_nothing_on_standard_output(empty_project: Paths, capfd) -> None:
    # `consult audit --json` writes JSON on standard output: DuckDB's progress bar (drawn there even
    # into a file or a pipe) must not be mixed in, however long a query takes
    with connect(empty_project.warehouse) as con:
        con.execute("SET progress_bar_time = 0")  # a bar, if enabled, would be drawn at once
        con.execute("SELECT count(DISTINCT a % 1000) FROM range(5000000) t(a)").fetchall()
    assert capfd.readouterr().out == ""
