"""An export opened in Excel (to look at it or fix a typo) and saved again as CSV, then loaded as
staff load it. Each variant is built from a platform export here, as Excel writes it:

| what Excel did                                        | outcome                                         |
|-------------------------------------------------------|-------------------------------------------------|
| dropped the empty cells at the end of rows (CRLF)     | loaded as blanks, counted in the ledger         |
| ... and a row has more fields than the header         | ExportError naming the file and the row         |
| saved "CSV (Comma delimited)": Windows-1252, no BOM   | read as the same text, never mojibake           |
| dates as 03/06/2025 14:22, day and month undecidable  | StructuralError naming file, row, column, fix   |
| dates as 13/06/2025 14:22 or 2025-06-03 14:22         | read (the file shows the order)                 |
| response ids written as 1.23457E+11                   | StructuralError: they would count as duplicates |
| French Excel: `;`, decimal commas, Windows-1252       | read as the original                            |
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from builders import response, warehouse_rows, write_export
from pipeline.config import Paths
from pipeline.ingest import ExportError, read_export
from pipeline.instrument import load_instrument
from pipeline.run import run_load
from pipeline.validate import StructuralError, numbers
from test_load import snapshot

COMMENT = "Plus de formation à Montréal — l’équipe est épuisée"


def records_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


def save_as_excel(path: Path, records: list[list[str]], encoding: str = "utf-8-sig") -> Path:
    """Write the records as Excel saves a CSV: CRLF line ends, quotes only where needed."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(records)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def without_trailing_blanks(record: list[str]) -> list[str]:
    """A row as Excel writes it: nothing after its last filled cell."""
    end = len(record)
    while end and record[end - 1] == "":
        end -= 1
    return record[:end]


def export_with_comments(paths: Paths, name: str, count: int = 8) -> Path:
    """A Qualtrics export whose last questions are mostly blank; some rows answer a comment."""
    instrument = load_instrument(paths.surveys / "2025" / "instrument.yaml")
    rows = [response(i, {"comments_other": COMMENT} if i % 3 == 1 else None) for i in range(count)]
    return write_export(paths.raw / "2025" / name, instrument, rows)


def test_rows_without_their_trailing_empty_fields_load_as_blanks(empty_project: Paths) -> None:
    original = export_with_comments(empty_project, "original.csv")
    records = records_of(original)
    trimmed = [records[0], records[1], records[2], *map(without_trailing_blanks, records[3:])]
    assert len({len(r) for r in trimmed[3:]}) > 1 and len(trimmed[-1]) < len(records[0])  # the last row too
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    expected = read_export(original, instrument).answers
    original.unlink()
    excel = save_as_excel(empty_project.raw / "2025" / "opened-in-excel.csv", trimmed)

    assert read_export(excel, instrument).answers.equals(expected)
    run_load(empty_project)
    assert warehouse_rows(empty_project, "SELECT file_name, rows_read, rows_loaded FROM load_ledger") == [
        ("opened-in-excel.csv", 8, 8)]


def test_a_row_with_more_fields_than_the_header_is_still_refused(empty_project: Paths) -> None:
    original = export_with_comments(empty_project, "original.csv")
    records = records_of(original)
    trimmed = [records[0], records[1], records[2], *map(without_trailing_blanks, records[3:])]
    trimmed[6] = records[6] + ["stray text"]  # row 7 of the sheet
    original.unlink()
    save_as_excel(empty_project.raw / "2025" / "opened-in-excel.csv", trimmed)
    with pytest.raises(ExportError, match=r"opened-in-excel.csv: row 7 has \d+ fields but the header has"):
        run_load(empty_project)
    assert not empty_project.warehouse.exists() or snapshot(empty_project).get("load_ledger", []) == []


def test_windows_1252_text_reads_as_the_same_answers(empty_project: Paths) -> None:
    # Excel's "CSV (Comma delimited)": Windows-1252, no byte order mark, rows without their empty end.
    original = export_with_comments(empty_project, "original.csv")
    records = records_of(original)
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    expected = read_export(original, instrument).answers
    assert COMMENT in expected["comments_other"].tolist()
    original.unlink()
    trimmed = [*records[:3], *map(without_trailing_blanks, records[3:])]
    excel = save_as_excel(empty_project.raw / "2025" / "windows.csv", trimmed, encoding="cp1252")
    assert not excel.read_bytes().startswith(b"\xef\xbb\xbf") and "’".encode("cp1252") in excel.read_bytes()
    assert read_export(excel, instrument).answers.equals(expected)


# --- dates Excel wrote in the computer's own format -------------------------------------------------

TIMES = ("StartDate", "EndDate", "RecordedDate")
# All inside the 2025 collection window (2025-03-03 to 2025-05-30) whichever of day and month comes
# first: a wrong guess would load silently.
AMBIGUOUS_DAYS = ["2025-04-03", "2025-04-05", "2025-05-04", "2025-04-04", "2025-05-03", "2025-03-04"]


def export_dated(paths: Paths, days: list[str], layout: str, as_written: int = 0) -> Path:
    """A Qualtrics export started on `days` at 10:00, its dates saved by Excel as `layout`
    (strftime codes), but for the first `as_written` responses."""
    import datetime as dt

    instrument = load_instrument(paths.surveys / "2025" / "instrument.yaml")
    rows = [response(i, StartDate=f"{day} 10:00:00", EndDate=f"{day} 10:20:00", RecordedDate=f"{day} 10:20:00")
            for i, day in enumerate(days)]
    path = write_export(paths.raw / "2025" / "dated.csv", instrument, rows)
    records = records_of(path)
    columns = [records[0].index(name) for name in TIMES]
    for record in records[3 + as_written:]:
        for column in columns:
            record[column] = dt.datetime.strptime(record[column], "%Y-%m-%d %H:%M:%S").strftime(layout)
    return save_as_excel(path, records)


def test_dates_whose_day_and_month_cannot_be_told_apart_are_refused(empty_project: Paths) -> None:
    export_dated(empty_project, AMBIGUOUS_DAYS, "%d/%m/%Y %H:%M")
    with pytest.raises(StructuralError) as error:
        run_load(empty_project)
    message = str(error.value)
    for phrase in ("dated.csv: row 4, column StartDate", "03/06 is 3 June or March 6", "Excel", ".xlsx",
                   "Nothing was loaded"):
        assert phrase in message
    assert not empty_project.warehouse.exists() or snapshot(empty_project).get("load_ledger", []) == []


def test_an_undecidable_date_after_dates_as_the_platform_wrote_them_is_named_by_its_own_row(
        empty_project: Paths) -> None:
    # the first two responses keep the platform's dates; the third (4 May, 04/05) is the first undecidable
    export_dated(empty_project, AMBIGUOUS_DAYS, "%d/%m/%Y %H:%M", as_written=2)
    with pytest.raises(StructuralError, match=r"dated.csv: row 6, column StartDate"):
        run_load(empty_project)


@pytest.mark.parametrize("layout", ["%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M"],
                         ids=["day first", "month first", "no seconds"])
def test_dates_whose_order_the_file_shows_load(empty_project: Paths, layout: str) -> None:
    # One response on the 20th shows which number is the day; every response is in the window.
    export_dated(empty_project, [*AMBIGUOUS_DAYS, "2025-04-20"], layout)
    run_load(empty_project)
    assert warehouse_rows(empty_project, "SELECT rows_read, rows_loaded FROM load_ledger") == [(7, 7)]


def test_response_ids_excel_rounded_are_refused_not_counted_as_duplicates(empty_project: Paths) -> None:
    # Excel shows a long numeric id as 1.23457E+11 and saves it so: eight responses, one id.
    path = export_with_comments(empty_project, "rounded-ids.csv")
    records = records_of(path)
    column = records[0].index("ResponseId")
    for number, record in enumerate(records[3:]):
        record[column] = "1.23457E+11" if number else "R_first0000001"
    save_as_excel(path, records)
    with pytest.raises(StructuralError) as error:
        run_load(empty_project)
    for phrase in ("rounded-ids.csv: row 5, column ResponseId", "rounded number", "in 7 rows", "duplicates",
                   "Excel Workbook (.xlsx)", "Nothing was loaded"):
        assert phrase in str(error.value)
    assert not empty_project.warehouse.exists() or snapshot(empty_project).get("load_ledger", []) == []


def test_french_excel_semicolons_decimal_commas_and_windows_1252_read_as_the_original(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    rows = [response(i, {"hourly_wage": 23.5 + i, "comments_other": COMMENT if i % 2 else None}) for i in range(6)]
    original = write_export(empty_project.raw / "2025" / "original.csv", instrument, rows)
    export = read_export(original, instrument)
    expected, records = export.answers, records_of(original)
    wage = records[0].index(next(c.name for c in export.columns if c.maps_to == "hourly_wage"))
    original.unlink()
    for record in records[3:]:
        record[wage] = record[wage].replace(".", ",")  # 23,5
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows(
        [*records[:3], *map(without_trailing_blanks, records[3:])])
    french = empty_project.raw / "2025" / "francais.csv"
    french.write_bytes(buffer.getvalue().encode("cp1252"))
    answers = read_export(french, instrument).answers
    assert answers.drop(columns="hourly_wage").equals(expected.drop(columns="hourly_wage"))
    assert numbers(answers["hourly_wage"]).tolist() == [23.5 + i for i in range(6)]  # as validation reads them
    run_load(empty_project)
    assert warehouse_rows(empty_project, "SELECT rows_read, rows_loaded FROM load_ledger") == [(6, 6)]
