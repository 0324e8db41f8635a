"""Reading exports as people receive them: any common encoding, line end, delimiter and quoting."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.ingest import ExportError, inspect_file, read_export
from pipeline.instrument import Instrument

INSTRUMENT = Instrument.model_validate({
    "wave": 2025,
    "title": {"en": "Test", "fr": "Test"},
    "languages": ["en", "fr"],
    "collection_window": {"start": "2025-01-01", "end": "2025-12-31"},
    "sections": [{"id": "main", "title": {"en": "Main", "fr": "Principal"}, "questions": [
        {"id": "region", "type": "single", "label": {"en": "Where do you work?", "fr": "Où travaillez-vous?"},
         "choices": [{"code": 1, "label": {"en": "Montréal area", "fr": "Région de Montréal"}},
                     {"code": 2, "label": {"en": "Elsewhere", "fr": "Ailleurs"}}]},
        {"id": "wage", "type": "numeric", "label": {"en": "Hourly wage", "fr": "Salaire horaire"}},
        {"id": "comment", "type": "text", "label": {"en": "Comment", "fr": "Commentaire"}},
    ]}],
})
ROWS = [["R1", "1", "24.5", "Café, déjà vu — “ok”"], ["R2", "2", "19", "Straße"]]


def table(rows: list[list[str]], delimiter: str = ",", line_end: str = "\n") -> str:
    def cell(value: str) -> str:
        needs = any(c in value for c in (delimiter, '"', "\n", "\r"))
        return '"' + value.replace('"', '""') + '"' if needs else value
    lines = [delimiter.join(cell(v) for v in row) for row in [["response_id", "region", "wage", "comment"], *rows]]
    return line_end.join(lines) + line_end


def read(tmp_path: Path, data: bytes, name: str = "export.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return read_export(path, INSTRUMENT), inspect_file(path)


@pytest.mark.parametrize("encoding, bom", [
    ("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("cp1252", b""), ("utf-16-le", b"\xff\xfe"),
])
def test_encodings_are_detected(tmp_path: Path, encoding: str, bom: bytes) -> None:
    text = table(ROWS)
    export, info = read(tmp_path, bom + text.encode(encoding))
    assert export.answers["comment"].tolist() == ["Café, déjà vu — “ok”", "Straße"]
    assert info.encoding.replace("_", "-").startswith(encoding.split("-le")[0][:5])


def test_a_legacy_encoding_is_detected_not_assumed(tmp_path: Path) -> None:
    # Mac Roman writes é as 0x8E, which Windows-1252 would read as Ž.
    rows = [["R1", "1", "20", "Un été à Montréal, très réussi"], ["R2", "2", "21", "Ça dépend des équipes"]]
    export, info = read(tmp_path, table(rows).encode("mac_roman"))
    assert info.encoding == "mac_roman"
    assert export.answers["comment"].tolist()[0] == "Un été à Montréal, très réussi"


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
def test_line_ends_and_quoted_newlines(tmp_path: Path, line_end: str) -> None:
    rows = [["R1", "1", "24.5", 'She said "no"\nthen left'], ["R2", "2", "19", ""]]
    export, info = read(tmp_path, table(rows, line_end=line_end).encode())
    assert export.answers["comment"].tolist() == ['She said "no"\nthen left', None]
    assert export.rows == 2 and export.source_row(1) == 3
    assert info.line_ends == {"\n": "LF", "\r\n": "CRLF", "\r": "CR"}[line_end]


def test_missing_final_newline_and_trailing_empty_columns(tmp_path: Path) -> None:
    text = "response_id,region,wage,comment,,\nR1,1,24.5,fine,,\nR2,2,19,ok,,"
    export, info = read(tmp_path, text.encode())
    assert export.rows == 2 and [c.name for c in info.columns] == ["response_id", "region", "wage", "comment"]
    assert export.answers["comment"].tolist() == ["fine", "ok"]


def test_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    rows = [["R1", "1", "24,50", "a; b"], ["R2", "2", "19", "c"]]
    export, info = read(tmp_path, table(rows, delimiter=";").encode("cp1252"))
    assert info.delimiter == ";"
    assert export.answers["wage"].tolist() == ["24.5", "19"]
    assert export.answers["comment"].tolist() == ["a; b", "c"]


def test_excel_workbook(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["response_id", "region", "wage", "comment"])
    book.active.append(["R1", 1, 24.5, "Montréal"])
    book.active.append(["R2", 2.0, 19, None])
    path = tmp_path / "export.xlsx"
    book.save(path)
    export = read_export(path, INSTRUMENT)
    assert export.answers["region"].tolist() == ["1", "2"]
    assert export.answers["wage"].tolist() == ["24.5", "19"]
    assert export.answers["comment"].tolist() == ["Montréal", None]
    assert inspect_file(path).file_format == "xlsx"


def test_a_workbook_without_its_size_recorded_reads_rows_that_end_early(tmp_path: Path) -> None:
    # Some tools write a sheet without its <dimension>: a row then ends at its last filled cell, so
    # a last response with its last answers blank is shorter than the header. Not a cut-off file.
    import re
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["response_id", "region", "wage", "comment"])
    book.active.append(["R1", 1, 24.5, "fine"])
    book.active.append(["R2", 2, None, None])
    saved = tmp_path / "saved.xlsx"
    book.save(saved)
    path = tmp_path / "export.xlsx"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = re.sub(rb"<dimension[^>]*/>", b"", data)
            target.writestr(item, data)
    export = read_export(path, INSTRUMENT)
    assert export.answers["region"].tolist() == ["1", "2"]
    assert export.answers["wage"].tolist() == ["24.5", None]


def test_labels_in_either_language_become_codes(tmp_path: Path) -> None:
    rows = [["R1", "Région de Montréal", "20", ""], ["R2", "elsewhere", "20", ""], ["R3", "Mars", "20", ""]]
    export, _ = read(tmp_path, table(rows).encode())
    assert export.answers["region"].tolist() == ["1", "2", "Mars"]  # an unknown answer is kept for validation


def test_a_row_wider_than_the_header_is_refused_with_its_row_number(tmp_path: Path) -> None:
    text = "response_id,region,wage,comment\nR1,1,24.5,fine\nR2,2,19,a,b,c\n"
    path = tmp_path / "export.csv"
    path.write_text(text)
    with pytest.raises(ExportError, match=r"export.csv: row 3 has 6 fields but the header has 4"):
        read_export(path, INSTRUMENT)


def test_identifier_columns_are_recognised_by_name(tmp_path: Path) -> None:
    text = "Email,Phone number,IP Address,Latitude,region\na@b.ca,555-0100,10.0.0.1,45.5,1\n"
    path = tmp_path / "export.csv"
    path.write_text(text)
    export = read_export(path, INSTRUMENT)
    assert list(export.identifiers.columns) == ["email", "phone", "ip_address", "latitude"]
    assert {c.name: c.kind for c in export.columns}["region"] == "question"


# Files longer than the records read one by one for detection: the columnar reader decides alone.
MANY = [[f"R{i}", str(1 + i % 2), "20", "ok"] for i in range(100)]


def test_row_numbers_of_a_long_file_count_records_not_lines(tmp_path: Path) -> None:
    # A quoted answer over three lines at record 71 and a blank line after record 81.
    rows = [*MANY[:70], ["R70", "1", "20", "first line\nsecond, line\nthird \"quoted\""], *MANY[71:]]
    text = table(rows)
    lines = text.split("\n")
    text = "\n".join([*lines[:84], "", *lines[84:]])  # header, 81 responses on 84 lines, then a blank
    export, _ = read(tmp_path, text.encode())
    assert export.rows == 100
    assert export.answers["comment"].tolist()[70] == "first line\nsecond, line\nthird \"quoted\""
    # Response i is row i + 2 (the header is row 1) whatever the lines; after the blank row 83, i + 3.
    assert [export.source_row(i) for i in (0, 70, 71, 80, 81, 99)] == [2, 72, 73, 82, 84, 102]


def test_a_long_file_cut_off_mid_row_is_refused_with_its_row_number(tmp_path: Path) -> None:
    text = table(MANY) + "R100,1"  # the download stopped mid-row: no line end after it
    with pytest.raises(ExportError, match=r"row 102 has only 2 of the header's 4 fields .* truncated"):
        read(tmp_path, text.encode())


def test_a_split_row_in_a_long_file_is_refused_with_its_row_and_line(tmp_path: Path) -> None:
    # A quoted answer over two lines at record 11 puts every later row one line further down.
    rows = [*MANY[:10], ["R10", "1", "20", "two\nlines"], *MANY[11:90]]
    text = table(rows) + "R90,2\n\nnorth end,20,ok\n" + table(MANY[91:]).split("\n", 1)[1]  # a blank line too
    with pytest.raises(ExportError, match=r"export.csv: row 92 \(line 93 of the file\) has only 2 of the "
                                          r"header's 4 fields, ending at column 2 \(region\)"):
        read(tmp_path, text.encode())


# An answer whose line break the exporting tool did not quote: one response becomes two short rows.
# A bare quote inside an unquoted answer is read by the strict csv reader only, not the columnar one.
@pytest.mark.parametrize("records", [10, 100], ids=["short file", "long file"])
@pytest.mark.parametrize("comment", ["ok", '5" tall'], ids=["columnar reader", "strict reader"])
def test_an_answer_split_by_an_unquoted_line_break_is_refused(tmp_path: Path, records: int, comment: str) -> None:
    lines = ["response_id,region,wage,comment", *(f"R{i},1,20,{comment}" for i in range(records))]
    lines[6] = "R5,1,20 an hour\nbefore tax,ok"  # row 7 ends at the wage; row 8 holds the rest
    with pytest.raises(ExportError, match=r"export.csv: row 7 \(line 7 of the file\) has only 3 of the header's 4 "
                                          r"fields, ending at column 3 \(wage\): an answer with a line break"):
        read(tmp_path, ("\n".join(lines) + "\n").encode())


# Excel saves a row without the empty cells after its last filled one: those rows are read as blanks,
# the last row too when a line end follows it (a file cut off mid-row has none).
@pytest.mark.parametrize("records", [10, 100], ids=["short file", "long file"])
@pytest.mark.parametrize("comment", ["ok", '5" tall'], ids=["columnar reader", "strict reader"])
def test_rows_saved_by_excel_without_their_empty_last_fields_read_as_blanks(tmp_path: Path, records: int,
                                                                            comment: str) -> None:
    rows = [[f"R{i}", "1", "20" if i % 4 else "", comment if i % 2 else ""] for i in range(records)]
    lines = [",".join(r).rstrip(",") for r in [["response_id", "region", "wage", "comment"], *rows]]
    export, _ = read(tmp_path, ("\r\n".join(lines) + "\r\n").encode())
    assert export.rows == records
    assert export.answers["wage"].tolist() == [r[2] or None for r in rows]
    assert export.answers["comment"].tolist() == [r[3] or None for r in rows]


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("block", [8, 64, 1 << 24])
def test_the_columnar_reader_counts_fields_as_the_strict_reader_does(line_end: str, block: int) -> None:
    import csv

    from pipeline.platforms.reading import _lines, _plain_quoting, _record_lengths

    records = [["a", "b", "c"], ["1", "x,y", 'say ""hi""\r\nbye\rnow\n'], [], ["", ""], ["   "], ["only"],
               ["q", "", "\"\"\"\""], *([["é", "d", ""]] * 20), ["1", "2", "3", "4"], [], []]
    lines = [",".join('"' + c + '"' if any(x in c for x in ',\r\n"') else c for c in r) for r in records]
    for text in (line_end.join(lines), line_end.join(lines) + line_end):
        payload = text.encode()
        assert _plain_quoting(payload, 0, ",")  # what the columnar reader is used for
        expected = [len(r) for r in csv.reader(_lines(text), strict=True)]
        assert _record_lengths(payload, 0, ",", block).tolist() == expected
        assert _record_lengths(b"\xef\xbb\xbf" + payload, 3, ",", block).tolist() == expected


def test_empty_last_answers_and_blank_lines_still_read(tmp_path: Path) -> None:
    # Empty last answers, unquoted and quoted, a line of spaces and blank lines: every row is whole.
    lines = ["response_id,region,wage,comment", *(f"R{i},1,20," + ('""' if i % 3 else "") for i in range(100))]
    lines[50:50] = ["", "   "]
    text = "\r\n".join(lines) + "\r\n\r\n\r\n"
    export, _ = read(tmp_path, text.encode())
    assert export.rows == 100 and export.answers["comment"].isna().all()
    assert [export.source_row(i) for i in (0, 48, 49, 99)] == [2, 50, 53, 103]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_reads_as_with_one(tmp_path: Path, encoding: str) -> None:
    text = table(ROWS)
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding]
    with_bom, info_with = read(tmp_path, bom + text.encode(encoding), "with-bom.csv")
    without, info_without = read(tmp_path, text.encode(encoding), "without-bom.csv")
    assert without.answers.equals(with_bom.answers) and without.rows == with_bom.rows == 2
    assert without.answers["comment"].tolist() == ["Café, déjà vu — “ok”", "Straße"]
    assert info_without.encoding == info_with.encoding == encoding


def test_a_wide_row_in_a_long_file_is_refused_with_its_row_number(tmp_path: Path) -> None:
    text = table(MANY) + "R100,1,20,ok,extra\n"
    with pytest.raises(ExportError, match=r"row 102 has 5 fields but the header has 4"):
        read(tmp_path, text.encode())


def test_a_stray_quote_in_a_long_file_is_refused(tmp_path: Path) -> None:
    text = table(MANY) + 'R100,1,20,"ok" then more\n'
    with pytest.raises(ExportError, match=r"not a readable CSV file"):
        read(tmp_path, text.encode())
