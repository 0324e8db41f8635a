"""Loading the synthetic consultation: accounting, idempotence, atomicity, and the privacy boundary."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import duckdb
import pytest

from builders import response, write_export
from builders import warehouse_rows as query
from conftest import make_project
from pipeline import indicators as indicators_module
from pipeline.config import Paths, export_files
from pipeline.instrument import load_instrument
from pipeline.load import ledger_identity_violations
from pipeline.run import RunError, run_load
from pipeline.validate import StructuralError


def snapshot(paths: Paths) -> dict[str, list[tuple]]:
    """Every table's full contents, in a stable order."""
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def records_in(path: Path, header_rows: int = 3) -> int:
    """Responses in an export, counted independently of the pipeline: CSV records minus headers."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    return len([r for r in rows[header_rows:] if any(r)])


def test_ledger_accounts_for_every_row(loaded: Paths) -> None:
    files = export_files(loaded.synthetic)
    assert len(files) == 3
    ledger = query(loaded, "SELECT file_name, rows_read, rows_loaded, rows_quarantined, rows_excluded, rows_duplicate FROM load_ledger ORDER BY file_name")
    for (name, read, stored, quarantined, excluded, duplicate), path in zip(ledger, files):
        assert name == path.name
        assert read == records_in(path)
        assert read == stored + quarantined + excluded + duplicate
        assert quarantined > 0 and excluded > 0 and duplicate > 0  # the synthetic defects are caught
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    assert ledger_identity_violations(con) == []
    con.close()
    respondents = query(loaded, "SELECT count(*) FROM respondents")[0][0]
    assert respondents == sum(row[2] for row in ledger)


def test_second_run_loads_nothing_and_gives_the_same_figures(loaded: Paths) -> None:
    before = snapshot(loaded)
    again = run_load(loaded)
    assert [f.status for f in again.files] == ["already loaded"] * 3
    assert not again.indicators_rebuilt
    assert snapshot(loaded) == before


def test_a_file_is_loaded_once_even_under_another_name(loaded: Paths) -> None:
    before = snapshot(loaded)
    copy = loaded.synthetic / "2025" / "copy-of-export.csv"
    copy.write_bytes((loaded.synthetic / "2025" / "qualtrics-2025.csv").read_bytes())
    summary = run_load(loaded)
    assert {f.status for f in summary.files} == {"already loaded"}
    assert snapshot(loaded)["respondents"] == before["respondents"]


def test_a_re_export_counts_earlier_responses_as_duplicates(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    first = write_export(empty_project.raw / "2025" / "week1.csv", instrument, [response(i) for i in range(12)])
    run_load(empty_project)
    write_export(empty_project.raw / "2025" / "week2.csv", instrument, [response(i) for i in range(15)])
    run_load(empty_project)
    ledger = dict(query(empty_project, "SELECT file_name, rows_duplicate FROM load_ledger"))
    assert ledger == {"week1.csv": 0, "week2.csv": 12}
    assert query(empty_project, "SELECT count(*) FROM respondents")[0][0] == 15
    assert first.exists()  # raw exports are read, never moved or changed


def test_a_bad_file_stops_the_run_and_changes_nothing(loaded: Paths) -> None:
    before = snapshot(loaded)
    instrument = load_instrument(loaded.surveys / "2025" / "instrument.yaml")
    good = write_export(loaded.synthetic / "2025" / "late.csv", instrument, [response(1)])
    bad = write_export(loaded.synthetic / "2025" / "zz-empty.csv", instrument, [])
    with pytest.raises(StructuralError, match="zz-empty.csv"):
        run_load(loaded)
    assert snapshot(loaded) == before
    bad.unlink()
    summary = run_load(loaded)  # the next run completes and loads the good file once
    assert [f.file for f in summary.files if f.status == "loaded"] == [good.name]


def test_a_failure_while_writing_rolls_everything_back(loaded: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(loaded)
    instrument = load_instrument(loaded.surveys / "2025" / "instrument.yaml")
    write_export(loaded.synthetic / "2025" / "late.csv", instrument, [response(1), response(2)])

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full while computing indicators")

    monkeypatch.setattr("pipeline.run.compute", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run_load(loaded)
    assert snapshot(loaded) == before


def test_real_and_synthetic_data_never_share_a_warehouse(loaded: Paths) -> None:
    instrument = load_instrument(loaded.surveys / "2025" / "instrument.yaml")
    write_export(loaded.raw / "2025" / "real.csv", instrument, [response(1)])
    with pytest.raises(RunError, match="never mixed"):
        run_load(loaded)


def test_wave_comes_from_the_folder_name(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    write_export(empty_project.raw / "export.csv", instrument, [response(1)])
    with pytest.raises(RunError, match="data/raw/2025"):
        run_load(empty_project)


# --- the privacy boundary ---------------------------------------------------------------------

IDENTIFIER_COLUMNS = ["IPAddress", "ResponseId", "RecipientLastName", "RecipientFirstName", "RecipientEmail",
                      "LocationLatitude", "LocationLongitude", "StartDate", "EndDate", "RecordedDate"]


def raw_identifier_values(files: list[Path], instrument_dir: Path) -> set[str]:
    """Identifier values as they stand in the raw exports: platform columns and `direct` questions."""
    values: set[str] = set()
    for path in files:
        instrument = load_instrument(instrument_dir / path.parent.name / "instrument.yaml")
        direct = {q.aliases[0] for q in instrument.questions if q.disclosure.value == "direct"}
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))[2:]
        for row in rows:
            for column in IDENTIFIER_COLUMNS + sorted(direct):
                if row.get(column) and len(row[column]) >= 4:
                    values.add(row[column])
    return values


def test_no_identifier_value_reaches_the_warehouse(loaded: Paths) -> None:
    identifiers = raw_identifier_values(export_files(loaded.synthetic), loaded.surveys)
    assert len(identifiers) > 1000
    contents = snapshot(loaded)
    stored = {str(v) for rows in contents.values() for row in rows for v in row if v is not None}
    text = "\n".join(stored)
    leaked = sorted(v for v in identifiers if v in stored or (("@" in v or len(v) > 8) and v in text))
    assert leaked == []
    # Free text kept its meaning, with the findings replaced by typed placeholders.
    scrubbed = query(loaded, "SELECT text FROM open_text WHERE placeholders > 0")
    assert scrubbed and all(re.search(r"\[(NAME|EMAIL|PHONE|ORGANIZATION|PLACE|ADDRESS)\]", t) for (t,) in scrubbed)


def test_direct_questions_are_described_but_not_stored(loaded: Paths) -> None:
    direct = query(loaded, "SELECT DISTINCT concept FROM concepts WHERE disclosure = 'direct' AND NOT stored")
    assert {"contact_email", "employer_name"} <= {c for (c,) in direct}
    stored = query(loaded, "SELECT count(*) FROM answers WHERE concept IN ('contact_email', 'employer_name')")
    texts = query(loaded, "SELECT count(*) FROM open_text WHERE concept IN ('contact_email', 'employer_name')")
    assert stored[0][0] == 0 and texts[0][0] == 0


def test_respondent_keys_are_random_for_every_load(tmp_path: Path, synthetic_exports: Path) -> None:
    one = make_project(tmp_path / "one", synthetic_exports)
    two = make_project(tmp_path / "two", synthetic_exports)
    run_load(one)
    run_load(two)
    keys_one = {k for (k,) in query(one, "SELECT respondent_key FROM respondents")}
    keys_two = {k for (k,) in query(two, "SELECT respondent_key FROM respondents")}
    assert len(keys_one) == len(keys_two) > 0
    assert keys_one.isdisjoint(keys_two)
    # ...while the figures are the same.
    figures = "SELECT indicator_id, wave, breakdown, group_code, n, count, estimate FROM indicator_estimates ORDER BY ALL"
    assert query(one, figures) == query(two, figures)


def test_a_warehouse_keyed_by_text_takes_new_loads_and_publishes_the_same_figures(
        tmp_path: Path, synthetic_exports: Path) -> None:
    """Warehouses made before respondent keys were whole numbers hold them as text (16 hex digits):
    later loads add to them, and the figures are those of a warehouse made today."""
    from pipeline.load import schema_sql

    old = make_project(tmp_path / "old", synthetic_exports)
    new = make_project(tmp_path / "new", synthetic_exports)
    con = duckdb.connect(str(old.warehouse))
    con.execute(schema_sql().replace("respondent_key BIGINT", "respondent_key VARCHAR"))
    con.close()
    files = export_files(old.synthetic)
    for paths in (old, new):
        run_load(paths, files=files[:1], synthetic=True)
        run_load(paths, files=files, synthetic=True)
    # every table holding the key holds it as `respondents` does (joined without a cast)
    key_types = "SELECT DISTINCT data_type FROM information_schema.columns WHERE column_name = 'respondent_key'"
    assert query(old, key_types) == [("VARCHAR",)] and query(new, key_types) == [("BIGINT",)]
    loaded = query(new, "SELECT sum(rows_loaded) FROM load_ledger")[0][0]
    assert query(old, "SELECT count(*) FROM respondents") == [(loaded,)]
    figures = "SELECT indicator_id, wave, breakdown, group_code, n, count, estimate FROM indicator_estimates ORDER BY ALL"
    published = query(new, figures)
    assert len(published) > 100 and query(old, figures) == published


def test_a_question_with_one_answer_has_one_answer_row_per_respondent(loaded: Paths) -> None:
    # what the audit's l-diversity relies on: only a multiple choice has several rows for one person
    several = query(loaded, """
        SELECT c.type, count(*) FROM (SELECT wave, respondent_key, concept FROM answers GROUP BY ALL HAVING count(*) > 1) a
        JOIN concepts c USING (wave, concept) GROUP BY c.type ORDER BY c.type""")
    assert [kind for kind, _ in several] == ["multiple"]


def test_every_domain_has_an_indicator_by_wave_and_region(loaded: Paths) -> None:
    rows = query(loaded, """
        SELECT c.domain, count(DISTINCT e.wave), count(*) FILTER (WHERE e.breakdown = 'oh_region')
        FROM indicator_estimates e JOIN indicator_catalogue c USING (indicator_id)
        GROUP BY c.domain ORDER BY 1""")
    domains = {d: (waves, regions) for d, waves, regions in rows}
    assert set(domains) == {"precarity", "disrespect", "resources", "drift", "wellbeing"}
    assert all(waves >= 2 and regions >= 6 for waves, regions in domains.values())


def test_indicator_definitions_changing_recomputes_without_reloading(loaded: Paths) -> None:
    text = loaded.indicators_file.read_text(encoding="utf-8")
    changed = re.sub(r"(?m)^default_min_n: \d+$", "default_min_n: 400", text)
    assert changed != text
    loaded.indicators_file.write_text(changed, encoding="utf-8")
    summary = run_load(loaded)
    assert summary.indicators_rebuilt and {f.status for f in summary.files} == {"already loaded"}
    small = query(loaded, "SELECT count(*) FROM indicator_estimates WHERE n < 400 AND NOT suppressed")
    assert small[0][0] == 0
    assert indicators_module  # the module the run uses is the one under test


def test_the_same_content_twice_in_one_run_is_loaded_once(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    first = write_export(empty_project.raw / "2025" / "a.csv", instrument, [response(i) for i in range(11)])
    (empty_project.raw / "2025" / "b.csv").write_bytes(first.read_bytes())
    summary = run_load(empty_project)
    assert [f.status for f in summary.files] == ["loaded", "already loaded"]
    assert query(empty_project, "SELECT count(*) FROM respondents")[0][0] == 11


def test_a_failed_first_run_leaves_no_warehouse(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    write_export(empty_project.raw / "2025" / "empty.csv", instrument, [])
    with pytest.raises(StructuralError):
        run_load(empty_project)
    assert not empty_project.warehouse.exists()


def test_a_run_scrubs_each_respondents_own_name_from_their_free_text(empty_project: Paths) -> None:
    # "Xyzzy Qwertz" is in no list of names: only the respondent's own identifier columns find it
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    rows = [response(i) for i in range(11)]
    rows.append(response(11, {"comments_changes": "Ask Xyzzy Qwertz, the one who wrote the budget."},
                         RecipientFirstName="Xyzzy", RecipientLastName="Qwertz"))
    write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)
    run_load(empty_project)
    assert query(empty_project, "SELECT text, placeholders FROM open_text WHERE concept = 'comments_changes'") == [
        ("Ask [NAME], the one who wrote the budget.", 2)]


def test_office_lock_files_hidden_files_and_readmes_are_not_exports(tmp_path: Path) -> None:
    # Excel leaves "~$export.xlsx" beside an export open in it; that must not stop a run.
    folder = tmp_path / "raw" / "2025"
    folder.mkdir(parents=True)
    for name in ("export.csv", "~$export.xlsx", ".export.csv", "README.txt", "second.xlsx"):
        (folder / name).write_bytes(b"x")
    assert [p.name for p in export_files(tmp_path / "raw")] == ["export.csv", "second.xlsx"]
