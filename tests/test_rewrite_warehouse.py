"""Text the pipeline removes from the warehouse leaves the database file too: DuckDB keeps the old
bytes of updated and deleted rows in the file's free blocks, where `strings` would find a name no
table holds any more. After open answers are scrubbed again, failing values masked, or an export
unloaded, the warehouse is rewritten (pipeline.load.rewrite_warehouse); a rewrite cut short leaves
the old file whole."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from builders import response, write_export
from builders import warehouse_rows as query
from pipeline import load as load_module
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.load import REWRITING, connect, rewrite_path
from pipeline.run import run_load
from pipeline.unload import unload

NAME = "Zebulonsky"  # a surname no list knows: only the warehouse's own bytes can hold it


def file_holds(paths: Paths, text: str) -> bool:
    return text.encode("utf-8") in paths.warehouse.read_bytes()


def leftovers(paths: Paths) -> list[Path]:
    wal = paths.warehouse.with_name(paths.warehouse.name + ".wal")
    fresh = rewrite_path(paths.warehouse)
    return [p for p in (wal, fresh, fresh.with_name(fresh.name + ".wal")) if p.exists()]


def every_table(paths: Paths) -> dict[str, list[tuple]]:
    tables = [t for (t,) in query(paths, "SELECT table_name FROM duckdb_tables() ORDER BY 1")]
    return {t: sorted(query(paths, f"SELECT * FROM {t}"), key=repr) for t in tables}


def _name_stored_as_typed(project: Paths, *more: dict) -> None:
    """A loaded warehouse holding NAME in a failing wage value, as an older pipeline stored it
    (before shown_value masked such values)."""
    instrument = load_instrument(project.surveys / "2025" / "instrument.yaml")
    rows = [response(i) for i in range(3)] + [response(3, {"hourly_wage": "twenty"}), *more]
    write_export(project.raw / "2025" / "export.csv", instrument, rows)
    run_load(project)
    con = duckdb.connect(str(project.warehouse))
    con.execute(f"UPDATE quarantine_issues SET value = 'Rivka {NAME}' WHERE value = 'twenty'")
    con.execute("DELETE FROM warehouse_meta WHERE key = 'shown_values'")
    con.close()


def test_a_failing_value_masked_again_leaves_the_file(empty_project: Paths) -> None:
    """A warehouse of an older pipeline kept a name typed as a wage: the next run masks it, and the
    name is then nowhere in the file's bytes, while the data answer as before."""
    _name_stored_as_typed(empty_project, response(4, {"hourly_wage": "4000"}))
    assert file_holds(empty_project, NAME)

    progress: list[str] = []
    run_load(empty_project, progress=progress.append)

    assert not file_holds(empty_project, NAME) and not file_holds(empty_project, "Rivka")
    assert REWRITING in progress
    assert leftovers(empty_project) == []
    values = sorted(v for (v,) in query(empty_project, "SELECT value FROM quarantine_issues "
                                                       "WHERE concept = 'hourly_wage'"))
    assert len(values) == 2 and "4000" in values and not any(NAME in v for v in values)
    # the rewritten warehouse is the same warehouse: keys, views, and a next run with nothing to do
    before = every_table(empty_project)
    assert query(empty_project, "SELECT count(*) FROM published_estimates")[0][0] > 0
    assert {c for (c,) in query(empty_project, "SELECT constraint_type FROM duckdb_constraints() "
                                               "WHERE table_name = 'warehouse_meta'")} >= {"PRIMARY KEY"}
    again: list[str] = []
    assert not run_load(empty_project, progress=again.append).indicators_rebuilt
    assert REWRITING not in again and every_table(empty_project) == before


def test_a_name_added_to_the_scrub_lists_leaves_the_file(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    said = f"The night shift at {NAME} Manor is far too short staffed for the residents we care for"
    rows = [response(i, {"comments_other": said if i == 2 else "Fine"}) for i in range(6)]
    write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)
    run_load(empty_project)
    assert query(empty_project, f"SELECT count(*) FROM open_text WHERE text LIKE '%{NAME}%'") == [(1,)]
    text = empty_project.deid_file.read_text(encoding="utf-8")
    assert "organizations:\n" in text
    empty_project.deid_file.write_text(text.replace("organizations:\n", f"organizations:\n  - {NAME} Manor\n", 1),
                                       encoding="utf-8")
    # the same process: the lists' hash must not be remembered from the first run
    progress: list[str] = []
    run_load(empty_project, progress=progress.append)

    assert query(empty_project, "SELECT count(*) FROM open_text WHERE text LIKE '%night shift at [ORGANIZATION]%'") \
        == [(1,)]
    assert not file_holds(empty_project, NAME)
    assert REWRITING in progress
    assert leftovers(empty_project) == []
    again: list[str] = []
    run_load(empty_project, progress=again.append)
    assert REWRITING not in again


def test_an_unloaded_export_leaves_the_file(empty_project: Paths, tmp_path: Path) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    kept = write_export(empty_project.raw / "2025" / "a.csv", instrument, [response(i) for i in range(12)])
    said = f"Ask for {NAME} on the third floor, he knows what happened that night"
    wrong = write_export(empty_project.raw / "2025" / "b.csv", instrument,
                         [response(100 + i, {"comments_other": said}) for i in range(12)])
    run_load(empty_project)
    assert kept.exists()
    wrong.rename(tmp_path / wrong.name)
    assert query(empty_project, f"SELECT count(*) FROM open_text WHERE text LIKE '%{NAME}%'") == [(12,)]
    respondents = query(empty_project, "SELECT count(*) FROM respondents")[0][0]

    progress: list[str] = []
    unload(empty_project, "b.csv", confirm=True, progress=progress.append)

    assert not file_holds(empty_project, NAME) and not file_holds(empty_project, "third floor")
    assert progress == [REWRITING]
    assert leftovers(empty_project) == []
    assert query(empty_project, "SELECT file_name FROM load_ledger") == [("a.csv",)]
    assert query(empty_project, "SELECT count(*) FROM respondents")[0][0] == respondents - 12
    assert not run_load(empty_project).indicators_rebuilt  # nothing else to do


def test_a_rewrite_cut_short_leaves_the_old_warehouse_whole_and_the_next_run_does_it(
        empty_project: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed before the swap: the old file stays in place, whole, with the change committed; the
    copy goes (a copy a killed process left behind: at the next read-write opening), and the next
    `consult run`, with nothing else to do, does the rewrite."""
    _name_stored_as_typed(empty_project)

    def killed(*_args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(load_module.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        run_load(empty_project)
    monkeypatch.undo()
    assert leftovers(empty_project) == []
    masked = query(empty_project, "SELECT value FROM quarantine_issues WHERE concept = 'hourly_wage'")
    assert masked and not any(NAME in v for (v,) in masked)  # the old file, whole, with the change in it
    before = every_table(empty_project)

    fresh = rewrite_path(empty_project.warehouse)  # as a process killed mid-copy leaves it
    fresh.write_bytes(b"half a database " + NAME.encode())
    progress: list[str] = []
    assert not run_load(empty_project, progress=progress.append).indicators_rebuilt

    assert REWRITING in progress
    assert not file_holds(empty_project, NAME) and leftovers(empty_project) == []
    after = every_table(empty_project)
    assert after.pop("warehouse_meta") != before.pop("warehouse_meta")  # only the pending mark went
    assert after == before
    again: list[str] = []
    run_load(empty_project, progress=again.append)
    assert REWRITING not in again
