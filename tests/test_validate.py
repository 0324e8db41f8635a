"""Every row gets one outcome, for the documented reason; broken files stop with a clear error."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from builders import response, write_export
from conftest import REPO, SHARED_FIXTURES
from pipeline.ingest import ExportError, read_export
from pipeline.instrument import load_instrument
from pipeline.validate import StructuralError, validate

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
SECRET = b"test-secret"


def outcomes(tmp_path: Path, rows: list[dict]) -> tuple[list[tuple[str, str | None]], object]:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, rows)
    export = read_export(path, INSTRUMENT)
    result = validate(export, INSTRUMENT, SECRET)
    return list(zip(result.outcome.tolist(), result.reason.tolist())), result


def test_valid_rows_are_loaded(tmp_path: Path) -> None:
    got, result = outcomes(tmp_path, [response(1), response(2)])
    assert got == [("loaded", None), ("loaded", None)]
    assert result.issues == []


def test_exclusions_name_their_reason(tmp_path: Path) -> None:
    rows = [
        response(1, {"consent": "2", "eligible_role": None, "oh_region": None}),
        response(2, {"eligible_role": "3", "oh_region": None}),
        response(3, Finished="0", Progress="40"),
        response(4),
    ]
    got, _ = outcomes(tmp_path, rows)
    assert got == [("excluded", "no_consent"), ("excluded", "ineligible"), ("excluded", "incomplete"), ("loaded", None)]


def test_duplicates_are_kept_once(tmp_path: Path) -> None:
    same_id = response(1)
    resubmitted = response(3, {"contact_email": "Pat@Example.org"})
    again = response(4, {"contact_email": "pat@example.org"})  # same person, same answers, new response id
    got, _ = outcomes(tmp_path, [same_id, response(2), dict(same_id), resubmitted, again])
    assert got == [
        ("loaded", None),
        ("loaded", None),
        ("duplicate", "same_response_id"),
        ("loaded", None),
        ("duplicate", "resubmitted"),
    ]


def test_same_email_with_different_answers_is_not_a_duplicate(tmp_path: Path) -> None:
    # Two people can share an address (a shared agency inbox): only identical answers count.
    got, _ = outcomes(
        tmp_path,
        [response(1, {"contact_email": "team@agency.ca"}), response(2, {"contact_email": "team@agency.ca", "oh_region": "3"})],
    )
    assert got == [("loaded", None), ("loaded", None)]


def test_responses_loaded_before_are_duplicates(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "a.csv", INSTRUMENT, [response(1), response(2)])
    first = validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    seen = set(first.response_keys.dropna())
    later = write_export(tmp_path / "2025" / "b.csv", INSTRUMENT, [response(2), response(3)])
    second = validate(read_export(later, INSTRUMENT), INSTRUMENT, SECRET, seen)
    assert second.outcome.tolist() == ["duplicate", "loaded"]
    assert second.reason.tolist()[0] == "loaded_before"


def test_row_level_problems_quarantine_with_reason_column_and_value(tmp_path: Path) -> None:
    rows = [
        response(1, {"paid_sick_days": "7"}),  # not a code of the question
        response(2, {"hourly_wage": 2450}),  # typed without its decimal point
        response(3, {"hourly_wage": "twenty"}),
        response(4, {"discrimination_any": "2", "discrimination_grounds": ["1"]}),  # skip logic hid it
        response(5, {"oh_region": None}),  # required
        response(6, {"tasks_clinical": ["1", "42"]}),
    ]
    got, result = outcomes(tmp_path, rows)
    assert [o for o, _ in got] == ["quarantined"] * 6
    found = {(i.source_row, i.rule, i.concept, i.value) for i in result.issues}
    assert found == {
        (4, "invalid_code", "paid_sick_days", "7"),
        (5, "out_of_range", "hourly_wage", "2450"),
        (6, "not_a_number", "hourly_wage", "twenty"),
        (7, "skip_logic", "discrimination_grounds", None),
        (8, "required_missing", "oh_region", None),
        (9, "invalid_code", "tasks_clinical", "42"),
    }


def test_a_row_with_two_problems_lists_both(tmp_path: Path) -> None:
    _, result = outcomes(tmp_path, [response(1, {"paid_sick_days": "7", "hourly_wage": 999})])
    assert sorted(i.rule for i in result.issues) == ["invalid_code", "out_of_range"]
    assert result.outcome.tolist() == ["quarantined"]


def test_every_row_has_exactly_one_outcome(tmp_path: Path) -> None:
    rows = [response(i) for i in range(20)] + [response(3)] + [response(30, {"consent": "2"})]
    _, result = outcomes(tmp_path, rows)
    counts = {o: result.count(o) for o in ("loaded", "quarantined", "excluded", "duplicate")}
    assert sum(counts.values()) == len(rows) == 22
    assert counts == {"loaded": 20, "quarantined": 0, "excluded": 1, "duplicate": 1}


def test_missing_required_column_is_structural(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1)])
    records = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    # Remove the oh_region column (alias of the required question) from every line.
    column = records[0].index(INSTRUMENT.question("oh_region").aliases[0])
    buffer = io.StringIO()
    csv.writer(buffer).writerows([r[:column] + r[column + 1 :] for r in records])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    with pytest.raises(StructuralError) as error:
        validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    assert str(path) in str(error.value) and "oh_region" in str(error.value)


def test_header_without_responses_is_structural(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [])
    with pytest.raises(StructuralError, match="no responses"):
        validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)


def test_empty_file_is_an_export_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(ExportError, match="empty"):
        read_export(path, INSTRUMENT)


def test_a_different_survey_is_refused(tmp_path: Path) -> None:
    other = SHARED_FIXTURES / "qualtrics" / "qualtrics-modern-3row.csv"
    with pytest.raises(StructuralError) as error:
        validate(read_export(other, INSTRUMENT), INSTRUMENT, SECRET)
    assert str(other) in str(error.value)


def test_truncated_file_names_the_row(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1), response(2)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40] + b'"unterminated')
    with pytest.raises(ExportError) as error:
        read_export(path, INSTRUMENT)
    assert str(path) in str(error.value)


def test_legacy_encoding_is_read(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1, {"comments_other": "Très bien, merci"})])
    path.write_bytes(path.read_bytes().decode("utf-8-sig").encode("cp1252"))
    export = read_export(path, INSTRUMENT)
    assert export.answers.at[0, "comments_other"] == "Très bien, merci"
