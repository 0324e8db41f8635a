"""`consult unload`: taking back an export loaded by mistake, as if it had never been loaded."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from builders import response, write_export
from builders import warehouse_rows as query
from conftest import make_project
from pipeline import unload as unload_module
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.load import WarehouseError
from pipeline.quotes import read_review, refresh_review_files, review_file, write_review
from pipeline.anonymity import load_privacy_rules, privacy_path
from pipeline.run import run_load
from pipeline.unload import UnloadError, unload

WRONG = "wrong.csv"
TEXT = "The training we got last spring was far too short for the work we are asked to do now"


def wrong_rows() -> list[dict]:
    """A test export of wave 2025: loaded, quarantined (wage out of range) and excluded (no consent)
    rows, and open answers long enough to be candidate quotes."""
    rows = [response(9000 + i, {"oh_region": str(1 + i % 3), "comments_other": f"{TEXT} (note {i})"})
            for i in range(20)]
    rows += [response(9100, {"hourly_wage": 900}), response(9101, {"consent": "2"})]
    return rows


def table_rows(paths: Paths, table: str, where: str = "true") -> list[tuple]:
    return sorted(query(paths, f"SELECT * FROM {table} WHERE {where}"), key=repr)


def tables_with(paths: Paths, column: str) -> list[str]:
    return [t for (t,) in query(paths, "SELECT DISTINCT table_name FROM duckdb_columns() WHERE NOT internal "
                                f"AND column_name = '{column}' AND table_name IN (SELECT table_name FROM duckdb_tables())")]


def snapshot(paths: Paths) -> dict[str, list[tuple]]:
    return {t: table_rows(paths, t) for (t,) in query(paths, "SELECT table_name FROM duckdb_tables() ORDER BY 1")}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, synthetic_exports: Path) -> tuple[Path, Path]:
    """The synthetic consultation loaded with a wrong export added to wave 2025, and without it
    (built independently: what the warehouse should look like after the unload)."""
    base = tmp_path_factory.mktemp("unload")
    secret = tmp_path_factory.getbasetemp() / "secret.key"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONSULT_SECRET_FILE", str(secret))
        with_wrong = make_project(base / "with" / "project", synthetic_exports)
        instrument = load_instrument(with_wrong.surveys / "2025" / "instrument.yaml")
        write_export(with_wrong.synthetic / "2025" / WRONG, instrument, wrong_rows())
        run_load(with_wrong)
        refresh_review_files(with_wrong, load_privacy_rules(privacy_path(with_wrong)).quotes)
        never = make_project(base / "never" / "project", synthetic_exports)
        run_load(never)
    return with_wrong.root, never.root


@pytest.fixture
def loaded(templates: tuple[Path, Path], tmp_path: Path) -> Paths:
    """A copy of the project with the wrong export loaded, the export moved out of the folder read."""
    root = tmp_path / "project"
    shutil.copytree(templates[0], root, symlinks=True)
    paths = Paths(root)
    (paths.synthetic / "2025" / WRONG).rename(tmp_path / WRONG)
    return paths


def wrong_sha(paths: Paths) -> str:
    return query(paths, f"SELECT file_sha256 FROM load_ledger WHERE file_name = '{WRONG}'")[0][0]


def test_unload_removes_exactly_that_files_rows(loaded: Paths) -> None:
    sha = wrong_sha(loaded)
    mine = f"respondent_key IN (SELECT respondent_key FROM respondents WHERE file_sha256 = '{sha}')"
    by_file, by_respondent = tables_with(loaded, "file_sha256"), tables_with(loaded, "respondent_key")
    assert {"load_ledger", "row_outcomes", "quarantine_issues", "respondents"} <= set(by_file)
    assert query(loaded, f"SELECT count(*) FROM open_text WHERE {mine}")[0][0] == 20
    # k-anonymity works again on wave 2025's key quasi-identifiers: those answers may be re-grouped
    keys = ("'" + "', '".join(load_privacy_rules(privacy_path(loaded)).microdata.key_quasi_identifiers) + "'")
    kept = {t: table_rows(loaded, t, f"file_sha256 <> '{sha}'") for t in by_file}
    others = {t: table_rows(loaded, t, f"NOT {mine} AND (wave <> 2025 OR concept NOT IN ({keys}))"
                            if t == "answers" else f"NOT {mine}")
              for t in by_respondent if t in ("answers", "open_text", "quality_flags")}

    unload(loaded, WRONG, confirm=True)

    for table in by_file:
        assert table_rows(loaded, table, f"file_sha256 = '{sha}'") == [], table
        assert table_rows(loaded, table) == kept[table], table
    for table, rows in others.items():
        assert table_rows(loaded, table, "true" if table != "answers" else
                          f"wave <> 2025 OR concept NOT IN ({keys})") == rows, table
    orphans = "SELECT count(*) FROM {} WHERE respondent_key NOT IN (SELECT respondent_key FROM respondents)"
    assert all(query(loaded, orphans.format(t))[0][0] == 0 for t in by_respondent), "answers of no respondent"


def test_figures_after_unload_equal_a_warehouse_that_never_loaded_it(loaded: Paths, templates: tuple[Path, Path]) -> None:
    never = Paths(templates[1])
    figures = ["indicator_estimates", "indicator_gaps", "indicator_changes", "concepts", "choices"]
    assert table_rows(loaded, "indicator_estimates") != table_rows(never, "indicator_estimates")

    unload(loaded, WRONG, confirm=True)

    for table in figures:
        assert table_rows(loaded, table) == table_rows(never, table), table
    counts = "SELECT file_name, wave, rows_read, rows_loaded, rows_quarantined, rows_excluded, rows_duplicate FROM load_ledger"
    assert sorted(query(loaded, counts)) == sorted(query(never, counts))
    stored = "SELECT r.wave, a.concept, a.value, count(*) FROM answers a JOIN respondents r USING (respondent_key) GROUP BY ALL"
    assert sorted(query(loaded, stored)) == sorted(query(never, stored))
    # k-anonymity was worked out again over the respondents left (no group under k)
    protected = "SELECT wave, k, respondents, smallest_class >= k FROM anonymity_summary ORDER BY wave"
    assert query(loaded, protected) == query(never, protected)


def test_the_next_run_loads_nothing_and_rebuilds_report_and_release(loaded: Paths) -> None:
    from pipeline.release import release_key
    from pipeline.report import inputs_key

    keys = release_key(loaded), inputs_key(loaded, "offline")
    unload(loaded, WRONG, confirm=True)
    summary = run_load(loaded)
    assert [f.status for f in summary.files] == ["already loaded"] * 3
    # the report and the release are made again: what they are keyed on changed
    assert release_key(loaded) != keys[0] and inputs_key(loaded, "offline") != keys[1]


def test_the_files_quote_decisions_go_and_the_others_stay(loaded: Paths) -> None:
    path = review_file(loaded, 2025)
    entries = read_review(path)
    theirs = [q for q in entries.values() if q.text.startswith(TEXT)]
    ours = next(q for q in entries.values() if not q.text.startswith(TEXT))
    assert len(theirs) == 20
    approved = {theirs[0].id, ours.id}
    write_review(path, 2025, [q if q.id not in approved else q.__class__(**{**q.__dict__, "status": "approved"})
                              for q in entries.values()])

    plan = unload(loaded, WRONG)
    assert (plan.open_text, plan.quotes, plan.quotes_decided) == (20, 20, 1)
    unload(loaded, WRONG, confirm=True)

    after = read_review(path)
    assert not any(q.text.startswith(TEXT) for q in after.values())
    assert after[ours.id].status == "approved" and len(after) == len(entries) - 20


def test_dry_run_changes_nothing(loaded: Paths, capsys: pytest.CaptureFixture) -> None:
    before = hashlib.sha256(loaded.warehouse.read_bytes()).hexdigest()
    assert main(["--root", str(loaded.root), "unload", WRONG]) == 0
    out = capsys.readouterr().out
    assert "Would remove wrong.csv (wave 2025" in out and "responses loaded: 20" in out
    assert "rows quarantined: 1, excluded: 1" in out and "--yes" in out
    assert hashlib.sha256(loaded.warehouse.read_bytes()).hexdigest() == before


def test_a_failure_midway_leaves_the_warehouse_unchanged(loaded: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(loaded)
    original, calls = unload_module._delete, []

    def first_delete_then_fail(con, sql, params):
        if calls:
            raise RuntimeError("killed after the first delete")
        calls.append(sql)
        original(con, sql, params)

    monkeypatch.setattr(unload_module, "_delete", first_delete_then_fail)
    with pytest.raises(RuntimeError, match="killed"):
        unload(loaded, WRONG, confirm=True)
    assert calls and snapshot(loaded) == before


def test_a_file_still_in_the_folder_read_is_refused(loaded: Paths, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    (tmp_path / WRONG).rename(loaded.synthetic / "2025" / WRONG)
    before = snapshot(loaded)
    assert main(["--root", str(loaded.root), "unload", WRONG, "--yes"]) != 0
    err = capsys.readouterr().err
    assert "data/synthetic/2025/wrong.csv" in err and "Move it out" in err
    assert snapshot(loaded) == before


# --- names: several loads of the same name ---------------------------------------------------------


@pytest.fixture
def same_name_twice(empty_project: Paths, tmp_path: Path) -> Paths:
    """export.csv loaded, then overwritten by another export.csv (a different file) loaded too."""
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    target = empty_project.raw / "2025" / "export.csv"
    write_export(target, instrument, [response(i) for i in range(12)])
    run_load(empty_project)
    write_export(target, instrument, [response(i) for i in range(100, 113)])
    run_load(empty_project)
    return empty_project


def test_an_ambiguous_name_lists_the_loaded_exports_to_choose_from(same_name_twice: Paths,
                                                                   capsys: pytest.CaptureFixture) -> None:
    before = snapshot(same_name_twice)
    assert main(["--root", str(same_name_twice.root), "unload", "export.csv", "--wave", "2025"]) != 0
    err = capsys.readouterr().err
    ledger = query(same_name_twice, "SELECT file_sha256, rows_loaded FROM load_ledger")
    assert len(ledger) == 2 and "2 loaded exports match in wave 2025" in err
    for sha, responses in ledger:
        assert f"sha256 {sha[:12]}" in err and f"{responses} response(s)" in err
    assert snapshot(same_name_twice) == before


def test_unload_by_hash_start_once_the_file_is_gone(same_name_twice: Paths) -> None:
    """The first export.csv was overwritten (as retention would delete it): its hash names it."""
    first = query(same_name_twice, "SELECT file_sha256 FROM load_ledger WHERE rows_loaded = 12")[0][0]
    with pytest.raises(UnloadError, match="2 loaded exports match"):
        unload(same_name_twice, "export.csv", confirm=True)
    import duckdb

    with duckdb.connect(str(same_name_twice.warehouse)) as con:  # as `consult purge-raw` records its deletion
        con.execute("INSERT INTO purges VALUES (?, 'export.csv', 2025, 1234, DATE '2026-06-02', '2025.1')", [first])
    unload(same_name_twice, first[:8], confirm=True)
    assert query(same_name_twice, "SELECT rows_loaded FROM load_ledger") == [(13,)]
    assert query(same_name_twice, "SELECT count(*) FROM respondents") == [(13,)]
    # that the raw export was deleted stays recorded: unloading does not undo the deletion
    assert query(same_name_twice, "SELECT file_sha256 FROM purges") == [(first,)]


def test_unloading_a_waves_only_export_empties_the_wave_and_the_next_run_still_works(
        same_name_twice: Paths) -> None:
    current = same_name_twice.raw / "2025" / "export.csv"
    current.rename(same_name_twice.root / "moved.csv")
    for sha, in query(same_name_twice, "SELECT file_sha256 FROM load_ledger ORDER BY rows_loaded"):
        unload(same_name_twice, sha[:10], confirm=True)
    for table in ("load_ledger", "respondents", "answers", "concepts", "choices", "anonymity_summary",
                  "indicator_estimates"):
        assert query(same_name_twice, f"SELECT count(*) FROM {table}") == [(0,)], table
    (same_name_twice.root / "moved.csv").rename(current)  # the right file, back: it loads again
    summary = run_load(same_name_twice)
    assert [(f.file, f.status, f.loaded) for f in summary.files] == [("export.csv", "loaded", 13)]


def test_an_export_others_count_duplicates_of_is_refused_until_they_go(empty_project: Paths,
                                                                      tmp_path: Path) -> None:
    """b.csv repeats 6 responses a.csv loaded (counted as duplicates): a.csv alone cannot go, or
    those responses would be lost; once b.csv is unloaded, it can."""
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    first = write_export(empty_project.raw / "2025" / "a.csv", instrument, [response(i) for i in range(12)])
    second = write_export(empty_project.raw / "2025" / "b.csv", instrument, [response(i) for i in range(6, 19)])
    run_load(empty_project)
    for path in (first, second):
        path.rename(tmp_path / path.name)
    before = snapshot(empty_project)
    with pytest.raises(UnloadError, match=r"b\.csv \(wave 2025: 6 row\(s\)\)"):
        unload(empty_project, "a.csv", confirm=True)
    assert snapshot(empty_project) == before
    unload(empty_project, "b.csv", confirm=True)
    unload(empty_project, "a.csv", confirm=True)
    assert query(empty_project, "SELECT count(*) FROM load_ledger") == [(0,)]


# --- the warehouse busy or not writable --------------------------------------------------------------


def test_a_run_holding_the_warehouse_is_named_and_nothing_changes(loaded: Paths, capsys: pytest.CaptureFixture) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(120)", str(loaded.warehouse)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["--root", str(loaded.root), "unload", WRONG, "--yes"]) == 2
        err = capsys.readouterr().err
        assert f"in use by another program (process {holder.pid})" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()
    assert query(loaded, f"SELECT count(*) FROM load_ledger WHERE file_name = '{WRONG}'") == [(1,)]


def test_a_read_only_warehouse_is_a_clear_error(loaded: Paths, tmp_path: Path) -> None:
    import subprocess

    kept = tmp_path / "kept"
    shutil.copytree(loaded.warehouse_dir, kept)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256M", "tmpfs", str(loaded.warehouse_dir)], check=True)
    try:
        shutil.copytree(kept, loaded.warehouse_dir, dirs_exist_ok=True)
        before = snapshot(loaded)
        subprocess.run(["mount", "-o", "remount,ro", str(loaded.warehouse_dir)], check=True)
        with pytest.raises(WarehouseError) as error:
            unload(loaded, WRONG, confirm=True)
        assert str(loaded.warehouse) in str(error.value)
        assert snapshot(loaded) == before
    finally:
        subprocess.run(["umount", str(loaded.warehouse_dir)], check=False)
