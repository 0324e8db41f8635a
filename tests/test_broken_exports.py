"""A corpus of broken exports, each loaded the way staff load them (`run_load`), each with its
documented outcome: a clear error naming the file (and the column or row) with the warehouse left
exactly as it was, or a load whose bad rows are quarantined with the right reasons.

| export                                   | outcome                                                   |
|------------------------------------------|-----------------------------------------------------------|
| a required question column missing       | StructuralError naming the question and its column        |
| any other question column missing        | StructuralError naming it ("never silent")                |
| a question column renamed on the platform| StructuralError naming old and new column, and the fix    |
| renamed onto another question's name   | StructuralError naming the missing one and the repeated name |
| undecodable bytes                        | ExportError: the encoding                                 |
| truncated inside a quoted answer         | ExportError: not a readable CSV                           |
| an undoubled quote inside an answer      | ExportError: not a readable CSV, the line, the fix        |
| truncated between two fields of a row    | ExportError naming the row: "looks truncated"             |
| an answer's line break outside quotes    | ExportError naming the row, line and field counts         |
| no response id column (removed by hand)  | StructuralError: responses would load twice               |
| an empty file (or a BOM alone) / a header without rows | ExportError "empty" / StructuralError "no responses"      |
| a workbook with a sheet of notes before the export | StructuralError naming the sheet read and the others |
| another survey (shared real exports)     | StructuralError "different survey", or what the file is   |
| another wave's export in this wave folder| StructuralError naming the wave it belongs to             |
| a wave folder without an instrument      | RunError naming the file and the missing instrument       |
| a Google Form dated 03/06/2025-style that| StructuralError naming the row, the column and rules.yaml's |
| neither layout fits the window better    | date_order setting                                        |
| bad codes, out-of-range numbers, skip    | loaded; those rows quarantined, one reason per failed rule|
| logic, dates outside the window          |                                                           |
| repeated and resubmitted responses       | loaded once; the rest counted as duplicates               |
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Callable

import pytest

from builders import complete_answers, response, write_export, write_google_form
from conftest import SHARED_FIXTURES
from pipeline.config import Paths
from pipeline.ingest import ExportError
from pipeline.instrument import load_instrument
from pipeline.run import RunError, run_load
from pipeline.validate import StructuralError
from test_load import query, snapshot


def instrument_of(paths: Paths, wave: int = 2025):
    return load_instrument(paths.surveys / str(wave) / "instrument.yaml")


@pytest.fixture(scope="module")
def warehouse_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_project

    paths = make_project(tmp_path_factory.mktemp("broken") / "project")
    write_export(paths.raw / "2025" / "week1.csv", instrument_of(paths), [response(i) for i in range(6)])
    with pytest.MonkeyPatch.context() as patch:  # the tests' secret (see conftest._secret), never the user's
        patch.setenv("CONSULT_SECRET_FILE", str(tmp_path_factory.getbasetemp() / "secret.key"))
        run_load(paths)
    return paths.root


@pytest.fixture
def warehouse(tmp_path: Path, warehouse_template: Path) -> Paths:
    """A project whose warehouse already holds one good export (week 1, six responses)."""
    root = tmp_path / "project"
    shutil.copytree(warehouse_template, root, symlinks=True)
    return Paths(root)


def drop_column(path: Path, column: str) -> None:
    records = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    index = records[0].index(column)
    _write_records(path, [r[:index] + r[index + 1:] for r in records])


def rename_column(path: Path, old: str, new: str) -> None:
    records = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    index = records[0].index(old)
    records[0][index], records[1][index] = new, "Renamed on the platform"
    _write_records(path, records)


def _write_records(path: Path, records: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(records)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def good_export(paths: Paths, name: str, wave: int = 2025) -> Path:
    return write_export(paths.raw / str(wave) / name, instrument_of(paths, wave), [response(i) for i in range(10, 14)])


def missing_required(paths: Paths) -> Path:
    path = good_export(paths, "no-region.csv")
    drop_column(path, "Q42")
    return path


def missing_optional(paths: Paths) -> Path:
    path = good_export(paths, "no-tokenism.csv")
    drop_column(path, "Q26")
    return path


def renamed(paths: Paths) -> Path:
    path = good_export(paths, "renamed.csv")
    rename_column(path, "Q13", "Q13_hourly")
    return path


def renamed_onto_another(paths: Paths) -> Path:
    path = good_export(paths, "twice.csv")
    rename_column(path, "Q55", "Q54")  # a slip on the platform: two columns named Q54
    return path


def undecodable(paths: Paths) -> Path:
    path = good_export(paths, "garbled.csv")
    data = path.read_bytes()  # starts with a UTF-8 byte order mark, then bytes UTF-8 cannot have
    path.write_bytes(data[:200] + b"\xff\xfe\xc0\x80" + data[200:])
    return path


def truncated(paths: Paths) -> Path:
    path = write_export(paths.raw / "2025" / "cut.csv", instrument_of(paths),
                        [response(i, {"comments_other": "More hours, please, and a real contract"}) for i in range(10, 14)])
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"More hours") + 6])  # the download stopped inside a quoted answer
    return path


def cut_mid_row(paths: Paths) -> Path:
    path = write_export(paths.raw / "2025" / "cut-mid-row.csv", instrument_of(paths), [response(i) for i in range(10, 14)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 60])  # the download stopped between two unquoted fields
    return path


def unquoted_line_break(paths: Paths) -> Path:
    """A tool that writes an answer's line break without quoting the answer: response 11 (row 5,
    after three header rows) ends mid-answer and its rest becomes a short row of its own."""
    answer = "More hours\nand a real contract, please"
    path = write_export(paths.raw / "2025" / "line-break.csv", instrument_of(paths),
                        [response(i, {"comments_other": answer} if i == 11 else None) for i in range(10, 14)])
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"' + answer.encode() + b'"', answer.replace("\n", "\r\n").encode()))
    return path


def empty(paths: Paths) -> Path:
    path = paths.raw / "2025" / "empty.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def without_response_ids(paths: Paths) -> Path:
    """Week 1 exported again with the ResponseId column removed: it would load a second time."""
    import csv
    import io

    path = write_export(paths.raw / "2025" / "no-ids.csv", instrument_of(paths), [response(i) for i in range(6)])
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    drop = rows[0].index("ResponseId")
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(row[:drop] + row[drop + 1:] for row in rows)
    return path


def stray_quote(paths: Paths) -> Path:
    """An answer edited by hand on line 5 with an undoubled quote inside it."""
    path = write_export(paths.raw / "2025" / "quote.csv", instrument_of(paths), [response(i) for i in range(10, 14)])
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    lines[4] = lines[4].replace(",EN", ',"He said "no" and left', 1)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def byte_order_mark_only(paths: Paths) -> Path:
    path = paths.raw / "2025" / "bom.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf")  # what some editors save for an empty file
    return path


def header_only(paths: Paths) -> Path:
    return write_export(paths.raw / "2025" / "header-only.csv", instrument_of(paths), [])


def notes_sheet_first(paths: Paths) -> Path:
    """The export opened in Excel, a sheet of notes added in front of it and saved as .xlsx."""
    from openpyxl import Workbook

    source = good_export(paths, "notes.csv")
    records = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8-sig"))))
    source.unlink()
    book = Workbook()
    book.active.title = "Notes"
    book.active.append(["Checked by Sam, 2 June"])
    data = book.create_sheet("Responses")
    for record in records:
        data.append(record)
    path = paths.raw / "2025" / "notes.xlsx"
    book.save(path)
    return path


def another_wave(paths: Paths) -> Path:
    return write_export(paths.raw / "2025" / "from-2024.csv", instrument_of(paths, 2024), [response(1)])


def no_instrument(paths: Paths) -> Path:
    return write_export(paths.raw / "2031" / "export.csv", instrument_of(paths), [response(1)])


def undecidable_google_form(paths: Paths) -> Path:
    """An English sheet, no day above 12: 6 March and 5 June, or June 3 and May 6 (one inside the
    window either way)."""
    return write_google_form(paths.raw / "2025" / "form.csv", instrument_of(paths),
                             ["06/03/2025 10:00:00", "05/06/2025 10:00:00"])


def shared(relative: str) -> Callable[[Paths], Path]:
    def copy(paths: Paths) -> Path:
        target = paths.raw / "2025" / Path(relative).name
        shutil.copy(SHARED_FIXTURES / relative, target)
        return target
    return copy


FAILURES = [
    (missing_required, StructuralError, ["oh_region (column Q42)", "missing"]),
    (missing_optional, StructuralError, ["tokenism (column Q26)", "missing"]),
    (renamed, StructuralError, ["hourly_wage (column Q13)", "Q13_hourly", "aliases"]),
    (renamed_onto_another, StructuralError, ["(column Q55)", "appear more than once (Q54)"]),
    (undecodable, ExportError, ["utf-8"]),
    (truncated, ExportError, ["not a readable CSV"]),
    (cut_mid_row, ExportError, ["row 7", "truncated"]),
    (unquoted_line_break, ExportError, ["row 5 (line 5 of the file) has only", "of the header's", "line break",
                                        "in quotes"]),
    (empty, ExportError, ["empty"]),
    (byte_order_mark_only, ExportError, ["empty"]),
    (stray_quote, ExportError, ["not a readable CSV file: line 5:", "must be doubled"]),
    (without_response_ids, StructuralError, ["no response id column (ResponseId)", "loaded twice"]),
    (header_only, StructuralError, ["no responses"]),
    (notes_sheet_first, StructuralError, ["no responses", "only the first sheet, 'Notes', is read",
                                          "'Responses' (7 rows)", "must be on the first sheet"]),
    (another_wave, StructuralError, ["2024 questionnaire, not 2025", "data/raw/2024/"]),
    (no_instrument, RunError, ["no instrument for wave 2031", "2023, 2024, 2025"]),
    (undecidable_google_form, StructuralError, ["row 2, column Timestamp", "3 June or March 6",
                                                "date_order: day_first", "date_order: month_first",
                                                "surveys/2025/rules.yaml", "Nothing was loaded"]),
    (shared("qualtrics/qualtrics-modern-3row.csv"), StructuralError, ["different survey"]),
    (shared("qualtrics/qualtrics-legacy-2row.csv"), StructuralError, ["different survey"]),
    (shared("surveymonkey/surveymonkey-2row-excerpt.csv"), StructuralError, ["different survey"]),
    (shared("limesurvey/limesurvey-codes.csv"), StructuralError, ["different survey"]),
    (shared("redcap/redcap-simple-dictionary.csv"), ExportError, ["data dictionary", "not survey responses"]),
]


@pytest.mark.parametrize("make, error, phrases", FAILURES, ids=lambda v: getattr(v, "__name__", None))
def test_a_broken_export_stops_with_a_clear_error_and_changes_nothing(
    warehouse: Paths, make: Callable[[Paths], Path], error: type, phrases: list[str]
) -> None:
    before, file_bytes = snapshot(warehouse), warehouse.warehouse.read_bytes()
    fine = good_export(warehouse, "week2.csv")  # a good file in the same run is not loaded either
    bad = make(warehouse)
    with pytest.raises(error) as raised:
        run_load(warehouse)
    message = str(raised.value)
    assert str(bad) in message
    for phrase in phrases:
        assert phrase.lower() in message.lower(), (phrase, message)
    assert "Traceback" not in message
    assert snapshot(warehouse) == before
    assert warehouse.warehouse.read_bytes() == file_bytes  # "exactly as it was": byte for byte
    assert fine.exists()


def test_a_run_with_nothing_new_leaves_the_warehouse_file_byte_for_byte(warehouse: Paths) -> None:
    before = warehouse.warehouse.read_bytes()
    summary = run_load(warehouse)
    assert [f.status for f in summary.files] == ["already loaded"] and not summary.indicators_rebuilt
    assert warehouse.warehouse.read_bytes() == before


@pytest.mark.parametrize("make", [missing_required, truncated, no_instrument], ids=lambda f: f.__name__)
def test_re_running_after_a_failure_never_double_counts(warehouse: Paths, make: Callable[[Paths], Path]) -> None:
    fine = good_export(warehouse, "week2.csv")
    bad = make(warehouse)
    with pytest.raises((StructuralError, ExportError, RunError)):
        run_load(warehouse)
    with pytest.raises((StructuralError, ExportError, RunError)):
        run_load(warehouse)  # the same failure again: still nothing written
    bad.unlink()  # staff remove (or fix) the bad file and run again
    first = run_load(warehouse)
    assert [(f.file, f.status) for f in first.files] == [("week1.csv", "already loaded"), (fine.name, "loaded")]
    again = run_load(warehouse)
    assert {f.status for f in again.files} == {"already loaded"}
    copy = warehouse.raw / "2025" / "week2-copy.csv"  # the same export saved twice under another name
    copy.write_bytes(fine.read_bytes())
    assert {f.status for f in run_load(warehouse).files} == {"already loaded"}
    ledger = query(warehouse, "SELECT file_name, rows_read, rows_loaded FROM load_ledger ORDER BY file_name")
    assert ledger == [("week1.csv", 6, 6), ("week2.csv", 4, 4)]
    assert query(warehouse, "SELECT count(*) FROM respondents")[0][0] == 6 + 4


def test_row_level_problems_are_quarantined_with_their_reasons(warehouse: Paths) -> None:
    instrument = instrument_of(warehouse)
    rows = [
        response(20),
        response(21, {"paid_sick_days": "4", "tasks_clinical": ["6", "77"]}),  # codes not in the instrument
        response(22, {"hourly_wage": 2450}),  # out of range
        response(23, {"hourly_wage": "lots"}),  # not a number
        response(24, {"discrimination_any": "2", "discrimination_grounds": ["2"]}),  # hidden by skip logic
        response(25, {"oh_region": None}),  # required, shown, not answered
        response(26, StartDate="2025-01-15 09:00:00", EndDate="2025-01-15 09:20:00"),  # a January test
        response(27, {"contract_type": "2", "several_jobs": "1", "hours_per_week": 60}),  # rules.yaml
    ]
    path = write_export(warehouse.raw / "2025" / "week2.csv", instrument, rows)
    run_load(warehouse)
    sha = query(warehouse, f"SELECT file_sha256 FROM load_ledger WHERE file_name = '{path.name}'")[0][0]
    ledger = query(warehouse, "SELECT rows_read, rows_loaded, rows_quarantined, rows_excluded, rows_duplicate "
                              f"FROM load_ledger WHERE file_sha256 = '{sha}'")[0]
    assert ledger == (8, 1, 7, 0, 0)
    issues = set(query(warehouse, f"SELECT source_row, rule, concept, value FROM quarantine_issues WHERE file_sha256 = '{sha}'"))
    # Rows count the three header lines: response 21 is line 5.
    assert issues == {
        (5, "invalid_code", "paid_sick_days", "4"),
        (5, "invalid_code", "tasks_clinical", "77"),
        (6, "out_of_range", "hourly_wage", "2450"),
        (7, "not_a_number", "hourly_wage", "lots"),
        (8, "skip_logic", "discrimination_grounds", "2"),
        (9, "required_missing", "oh_region", None),
        (10, "outside_collection_window", "started_at", None),
        (11, "part_time_hours", "hours_per_week", "60"),
    }
    outcomes = dict(query(warehouse, f"SELECT source_row, reason FROM row_outcomes WHERE file_sha256 = '{sha}' "
                                     "AND outcome = 'quarantined'"))
    assert set(outcomes) == {5, 6, 7, 8, 9, 10, 11}


def test_repeated_and_resubmitted_responses_are_kept_once(warehouse: Paths) -> None:
    instrument = instrument_of(warehouse)
    person = complete_answers(instrument, contact_email="sam@example.org")
    rows = [
        response(2),  # already loaded from week1.csv (same response id)
        response(30, person),
        response(30, person),  # the same response exported twice
        response(31, person, StartDate="2025-04-20 10:00:00", EndDate="2025-04-20 10:30:00"),  # answered again
        response(32),
    ]
    path = write_export(warehouse.raw / "2025" / "week2.csv", instrument, rows)
    run_load(warehouse)
    ledger = query(warehouse, "SELECT rows_read, rows_loaded, rows_duplicate FROM load_ledger "
                              f"WHERE file_name = '{path.name}'")[0]
    assert ledger == (5, 2, 3)
    reasons = sorted(r for (r,) in query(warehouse, "SELECT reason FROM row_outcomes o JOIN load_ledger l USING "
                                                    f"(file_sha256) WHERE l.file_name = '{path.name}' AND outcome = 'duplicate'"))
    assert reasons == ["loaded_before", "resubmitted", "same_response_id"]
    assert query(warehouse, "SELECT count(*) FROM respondents")[0][0] == 6 + 2


def test_the_ledger_identity_holds_for_every_file_after_the_whole_corpus(warehouse: Paths) -> None:
    instrument = instrument_of(warehouse)
    write_export(warehouse.raw / "2025" / "week2.csv", instrument,
                 [response(i) for i in range(3)] + [response(40, {"hourly_wage": 999}), response(41, {"consent": "2"})])
    summary = run_load(warehouse)
    for item in summary.files:
        if item.status == "loaded":
            assert item.read == item.loaded + item.quarantined + item.excluded + item.duplicates == 5
    rows = query(warehouse, """
        SELECT l.file_name, l.rows_read, count(o.source_row) FROM load_ledger l JOIN row_outcomes o USING (file_sha256)
        GROUP BY ALL""")
    assert all(read == outcomes for _, read, outcomes in rows) and len(rows) == 2
