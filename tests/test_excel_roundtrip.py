"""An export opened in Excel (to look at it or fix a typo) and saved again as CSV, then loaded as
staff load it. Each variant is built from a platform export here, as Excel writes it:

| what Excel did                                        | outcome                                         |
|-------------------------------------------------------|-------------------------------------------------|
| dropped the empty cells at the end of rows (CRLF)     | loaded as blanks, counted in the ledger         |
| ... and a row has more fields than the header         | ExportError naming the file and the row         |
| saved "CSV (Comma delimited)": Windows-1252, no BOM   | read as the same text, never mojibake           |
| dates as 03/06/2025 14:22, day and month undecidable  | StructuralError naming file, row, column, fix   |
| dates as 13/06/2025 14:22 or 2025-06-03 14:22         | read (the file shows the order)                 |
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
