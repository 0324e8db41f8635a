"""`consult inspect` on real exports written by the platforms (../shared/fixtures/exports/)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHARED_FIXTURES
from pipeline.ingest import ExportError, inspect_file

# file -> (platform, header rows)
EXPORTS = {
    "qualtrics/qualtrics-modern-3row.csv": ("qualtrics", 3),
    "qualtrics/qualtrics-legacy-2row.csv": ("qualtrics", 2),
    "surveymonkey/surveymonkey-2row-excerpt.csv": ("surveymonkey", 2),
    "limesurvey/limesurvey-codes.csv": ("limesurvey", 1),
    "googleforms/googleforms-responses.csv": ("googleforms", 1),
    "kobo/kobo-transportation.csv": ("kobo", 1),
    "redcap/redcap-simple-data.csv": ("redcap", 1),
    "redcap/redcap-repeating-sparse.csv": ("redcap", 1),
}


def records(path: Path) -> list[list[str]]:
    """The file's CSV records, read with the standard library alone."""
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


def expected_rows(name: str, header_rows: int) -> int:
    rows = [r for r in records(SHARED_FIXTURES / name)[header_rows:] if any(c.strip() for c in r)]
    if name.endswith("repeating-sparse.csv"):  # repeating-instrument instances are not respondents
        rows = [r for r in rows if not r[1].strip()]
    return len(rows)


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_platform_and_row_count(name: str) -> None:
    platform, header_rows = EXPORTS[name]
    info = inspect_file(SHARED_FIXTURES / name)
    assert (info.platform, info.header_rows) == (platform, header_rows)
    assert info.rows == expected_rows(name, header_rows)
    assert len(info.columns) == len([h for h in records(SHARED_FIXTURES / name)[0] if h.strip()])


def classes(name: str) -> dict[str, tuple[str, str | None]]:
    return {c.name: (c.kind, c.maps_to) for c in inspect_file(SHARED_FIXTURES / name).columns}


def test_qualtrics_current_export_columns() -> None:
    found = classes("qualtrics/qualtrics-modern-3row.csv")
    identifiers = {"StartDate", "EndDate", "IPAddress", "RecordedDate", "ResponseId", "RecipientLastName",
                   "RecipientFirstName", "RecipientEmail", "ExternalReference", "LocationLatitude", "LocationLongitude"}
    assert {n for n, (k, _) in found.items() if k == "identifier"} == identifiers
    assert found["ResponseId"] == ("identifier", "response_id")
    assert found["Finished"] == ("metadata", "finished")
    assert found["Q2 - Topics"][0] == "metadata"  # Text iQ's analysis of Q2, not an answer
    assert {n for n, (k, _) in found.items() if k == "question"} == {"Q1", "Q2"}


def test_qualtrics_legacy_export_reads_names_from_the_second_row() -> None:
    found = classes("qualtrics/qualtrics-legacy-2row.csv")
    assert found["ResponseID"] == ("identifier", "response_id")
    assert found["Name"][0] == found["EmailAddress"][0] == found["IPAddress"][0] == "identifier"
    assert found["Finished"] == ("metadata", "finished")
    assert {n for n, (k, _) in found.items() if k == "question"} == {"Q1", "Q2"}
    assert "" not in found  # the trailing comma of every line is no column


def test_surveymonkey_columns() -> None:
    found = classes("surveymonkey/surveymonkey-2row-excerpt.csv")
    assert found["RespondentID"] == ("identifier", "response_id")
    assert sum(k == "question" for k, _ in found.values()) == 14


def test_redcap_columns() -> None:
    found = classes("redcap/redcap-simple-data.csv")
    assert found["record_id"] == ("identifier", "response_id")
    for name in ("name_first", "name_last", "address", "telephone", "email", "dob"):
        assert found[name][0] == "identifier", name
    assert found["health_complete"][0] == "metadata"
    assert found["race___3"][0] == "question" and found["comments"][0] == "question"


def test_kobo_columns() -> None:
    found = classes("kobo/kobo-transportation.csv")
    assert found["_uuid"] == ("identifier", "response_id")
    assert found["_submission_time"][0] == found["meta/instanceID"][0] == "identifier"
    assert found["_version"][0] == "metadata"
    assert sum(k == "question" for k, _ in found.values()) == 20


def test_google_forms_and_limesurvey_columns() -> None:
    forms = classes("googleforms/googleforms-responses.csv")
    assert forms["Timestamp"] == ("identifier", "recorded_at")
    assert sum(k == "question" for k, _ in forms.values()) == 3
    lime = classes("limesurvey/limesurvey-codes.csv")
    assert lime["QMIQ02[QMI01]"][0] == "question" and len(lime) == 45


@pytest.mark.parametrize("name", ["kobo/xlsform-widgets.csv", "redcap/redcap-simple-dictionary.csv"])
def test_questionnaire_files_are_named_as_such(name: str) -> None:
    info = inspect_file(SHARED_FIXTURES / name)
    assert info.platform in ("xlsform", "redcap_data_dictionary")
    assert "instrument draft" in " ".join(info.notes)


def consult(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_inspect_command_prints_json_for_scripts() -> None:
    path = SHARED_FIXTURES / "surveymonkey" / "surveymonkey-2row-excerpt.csv"
    result = consult("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["platform"] == "surveymonkey" and info["rows"] == 23 and info["header_rows"] == 2
    assert info["encoding"] == "utf-8" and info["delimiter"] == ","
    assert {"column": "RespondentID", "class": "identifier", "role": "response_id"} in info["columns"]


def test_inspect_command_text_and_platform_override() -> None:
    path = SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv"
    result = consult("inspect", str(path))
    assert result.returncode == 0, result.stderr
    assert "Google Forms" in result.stdout and "79 row(s)" in result.stdout and "CRLF" in result.stdout
    forced = consult("inspect", str(path), "--platform", "csv", "--json")
    assert json.loads(forced.stdout)["platform"] == "csv"


def test_a_surveymonkey_export_missing_its_second_header_row_is_refused(tmp_path: Path) -> None:
    lines = (SHARED_FIXTURES / "surveymonkey" / "surveymonkey-2row-excerpt.csv").read_text().splitlines()
    header = lines[0].replace("RespondentID,", "Respondent ID,Collector ID,", 1)
    data = [line.replace(",", ",431234567,", 1) for line in lines[2:]]
    broken = tmp_path / "export.csv"
    broken.write_text("\n".join([header, *data]) + "\n", encoding="utf-8")
    before = broken.read_bytes()
    with pytest.raises(ExportError, match="second header row removed") as caught:
        inspect_file(broken)
    assert str(broken) in str(caught.value)
    result = consult("inspect", str(broken))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert broken.read_bytes() == before


def test_a_questionnaire_file_given_as_responses_says_what_to_do(tmp_path: Path) -> None:
    from pipeline.ingest import read_export
    from pipeline.instrument import load_instrument

    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    with pytest.raises(ExportError, match="REDCap data dictionary.*instrument draft"):
        read_export(SHARED_FIXTURES / "redcap" / "redcap-simple-dictionary.csv", instrument)


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "Excel 97-2003"),
    (b"PK\x03\x04garbage", "ZIP"),
    (b"%PDF-1.4\n", "PDF"),
])
def test_unreadable_files_name_the_file_and_the_problem(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(ExportError, match=problem) as caught:
        inspect_file(path)
    assert str(path) in str(caught.value)


def test_a_column_named_francophone_is_a_question_and_phone_columns_are_identifiers(tmp_path: Path) -> None:
    # "phone" inside francophone and anglophone is part of another word, not a phone number
    path = tmp_path / "export.csv"
    path.write_text("francophone,anglophone,phone,telephone,phone_number,HomePhone,homephone,Q7_phone\n"
                    "1,2,416-555-0199,416-555-0198,416-555-0197,416-555-0196,416-555-0195,416-555-0194\n",
                    encoding="utf-8")
    found = {c.name: (c.kind, c.maps_to) for c in inspect_file(path).columns}
    phones = ["phone", "telephone", "phone_number", "HomePhone", "homephone", "Q7_phone"]
    assert found == {"francophone": ("question", None), "anglophone": ("question", None),
                     **{name: ("identifier", "phone") for name in phones}}


def test_the_note_on_repeating_instruments_is_a_whole_sentence() -> None:
    result = consult("inspect", str(SHARED_FIXTURES / "redcap" / "redcap-repeating-sparse.csv"))
    assert result.returncode == 0, result.stderr
    [note] = [line for line in result.stdout.splitlines() if "repeating instruments" in line]
    assert note.endswith("one row per record (and event) is one response, so the answers in those rows are not "
                         "loaded")
