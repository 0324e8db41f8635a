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


# A year of rates a loaded wave was compared with (synthetic 2025 uses the 2024 rates), revised.
REVISED_2024_RATE = ("  2024: {1: 26.00,", "  2024: {1: 26.50,")
# Next year's rates and the new wave's rate year: what runbook step 1 asks for every year.
NEXT_YEAR = ("rates:\n", "rates:\n  2025: {1: 27.70, 2: 24.00, 3: 23.50, 4: 22.40, 5: 23.00, 6: 22.10, 7: 21.60, "
             "8: 21.00, 9: 21.50, 10: 20.20}\n")


def edit(path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def add_next_year(paths: Paths) -> None:
    table = paths.surveys / "reference" / "living_wage.yaml"
    edit(table, *NEXT_YEAR)
    table.write_text(table.read_text(encoding="utf-8").rstrip("\n") + "\n  2026: {year: 2025}\n", encoding="utf-8")


@pytest.mark.parametrize("changed", ["derived.yaml", "reference/living_wage.yaml"])
def test_a_changed_definition_stops_the_run_and_says_how_to_rebuild(loaded: Paths, changed: str) -> None:
    before = digest(loaded)
    target = loaded.surveys / changed
    if changed == "derived.yaml":  # any byte counts, as the stored answers cannot be checked
        target.write_text(target.read_text(encoding="utf-8") + "\n# revised\n", encoding="utf-8")
    else:  # a rate a loaded wave was compared with
        edit(target, *REVISED_2024_RATE)
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


def test_next_years_rates_and_rate_year_are_not_a_change(loaded: Paths) -> None:
    """Runbook step 1 for a new wave: its rates and rate year change nothing stored, so the run goes
    on (a rebuild would need every past export, deleted once published)."""
    before = digest(loaded)
    add_next_year(loaded)
    summary = run_load(loaded)
    assert [f.status for f in summary.files] and all(f.status == "already loaded" for f in summary.files)
    assert digest(loaded) == before
    # a loaded wave's rates revised afterwards still stop the run
    edit(loaded.surveys / "reference" / "living_wage.yaml", *REVISED_2024_RATE)
    with pytest.raises(RunError, match="make clean-warehouse"):
        run_load(loaded)


def test_a_loaded_waves_rate_year_removed_stops_the_run(loaded: Paths) -> None:
    edit(loaded.surveys / "reference" / "living_wage.yaml", "  2025: {year: 2024}\n", "")
    with pytest.raises(RunError, match="make clean-warehouse"):
        run_load(loaded)


def built_before_the_per_wave_record(paths: Paths) -> None:
    """The warehouse as an earlier version left it: one checksum of derived.yaml and the whole rates file."""
    files = [paths.surveys / "derived.yaml", paths.surveys / "reference" / "living_wage.yaml"]
    whole_files = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    con = duckdb.connect(str(paths.warehouse))
    con.execute("DELETE FROM warehouse_meta WHERE key LIKE 'derived%'")
    con.execute("INSERT INTO warehouse_meta VALUES ('derived_sha256', ?)", [whole_files])
    con.close()


def test_a_warehouse_from_before_the_per_wave_record_takes_next_years_rates(loaded: Paths) -> None:
    """Warehouses built before recorded one checksum of derived.yaml and the whole rates file: a run
    with them unchanged records what each wave read, and next year's rates then go through."""
    built_before_the_per_wave_record(loaded)
    run_load(loaded)
    add_next_year(loaded)
    assert all(f.status == "already loaded" for f in run_load(loaded).files)


def test_an_upgraded_warehouse_given_next_years_rates_first_says_how_to_go_on(loaded: Paths) -> None:
    """The upgrade the other way round: next year's rates added before the first run on this
    version. The old checksum cannot tell them from a revision, so the run refuses once, and says
    what to do; doing it records what each wave read, and the rates then go through."""
    built_before_the_per_wave_record(loaded)
    rates = loaded.surveys / "reference" / "living_wage.yaml"
    before = rates.read_text(encoding="utf-8")
    add_next_year(loaded)
    with pytest.raises(RunError, match="take those lines out again, run `consult run` once, then add them back"):
        run_load(loaded)
    with_next_year = rates.read_text(encoding="utf-8")
    rates.write_text(before, encoding="utf-8")  # what the message says
    run_load(loaded)
    rates.write_text(with_next_year, encoding="utf-8")
    assert all(f.status == "already loaded" for f in run_load(loaded).files)
    # a warehouse of this version never gets the upgrade hint
    edit(rates, *REVISED_2024_RATE)
    with pytest.raises(RunError) as error:
        run_load(loaded)
    assert "earlier version" not in str(error.value)
