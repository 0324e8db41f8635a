"""Derived answers are computed at load from raw values the warehouse does not keep: when their
definitions (surveys/derived.yaml, the living-wage rates) change, a run refuses, says how to rebuild,
and leaves the warehouse as it was."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import duckdb
import pytest

from conftest import REPO
from pipeline.config import Paths
from pipeline.run import RunError, run_load


def digest(paths: Paths) -> str:
    """Every table's rows (the file's bytes change on any write-mode open, content does not)."""
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        rows = [(t, con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall()) for t in tables]
    finally:
        con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_an_unchanged_definition_lets_the_next_run_through(loaded: Paths) -> None:
    summary = run_load(loaded)
    assert [f.status for f in summary.files] and all(f.status == "already loaded" for f in summary.files)


@pytest.mark.parametrize("changed", ["derived.yaml", "reference/living_wage.yaml"])
def test_a_changed_definition_stops_the_run_and_says_how_to_rebuild(loaded: Paths, changed: str) -> None:
    before = digest(loaded)
    target = loaded.surveys / changed
    # a real edit: a rate or a label changes; any byte counts, as the stored answers cannot be checked
    target.write_text(target.read_text(encoding="utf-8") + "\n# revised\n", encoding="utf-8")
    with pytest.raises(RunError) as error:
        run_load(loaded)
    message = str(error.value)
    assert "derived.yaml" in message and "make clean-warehouse" in message and "Nothing was loaded" in message
    assert digest(loaded) == before
    # the command line says the same and exits non-zero, without a traceback
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--root", str(loaded.root), "run", "--no-report"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode != 0
    assert "make clean-warehouse" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert digest(loaded) == before


def test_after_a_rebuild_the_new_definition_is_used(loaded: Paths) -> None:
    target = loaded.surveys / "derived.yaml"
    target.write_text(target.read_text(encoding="utf-8") + "\n# revised\n", encoding="utf-8")
    loaded.warehouse.unlink()
    summary = run_load(loaded)
    assert summary.totals()["loaded"] > 0
    assert run_load(loaded).totals()["loaded"] == 0  # and the rebuilt warehouse is accepted from then on
