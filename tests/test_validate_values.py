"""Validation judges each value the same way wherever it appears: values written differently
(case, spaces, decimal comma, time zone) and values repeated on many rows."""

from __future__ import annotations

from pathlib import Path

from builders import complete_answers, response, write_export
from conftest import REPO
from pipeline.ingest import read_export
from pipeline.instrument import load_instrument
from pipeline.validate import Validation, validate

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
SECRET = b"test-secret"
INCIVILITY = ("incivility_condescending", "incivility_ignored", "incivility_demeaning", "incivility_doubted")
VALUED = ("valued_administrators", "valued_clinicians", "valued_people_served", "valued_peers")
CBI_OFTEN = ("cbi_worn_out", "cbi_exhausted_morning", "cbi_every_hour_tiring", "cbi_energy_leisure")  # Q40_1-4


def run(tmp_path: Path, rows: list[dict]) -> Validation:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, rows)
    return validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)


def full(number: int, answers: dict | None = None, **metadata: str) -> dict:
    return response(number, complete_answers(INSTRUMENT, **(answers or {})), **metadata)


def got(result: Validation) -> list[tuple[str, str | None]]:
    return list(zip(result.outcome.tolist(), result.reason.tolist()))


def test_response_types_are_read_whatever_their_case_and_spaces(tmp_path: Path) -> None:
    rows = [full(1, Status=" SPAM "), full(2, Status="survey preview"), full(3, Status="  Survey Test"),
            full(4, Finished=" TRUE "), full(5, Finished="0"), full(6, Finished="true"), full(7, Status="0"),
            full(8, Status=" spam ")]
    assert got(run(tmp_path, rows)) == [
        ("excluded", "spam"), ("excluded", "preview"), ("excluded", "preview"), ("loaded", None),
        ("excluded", "incomplete"), ("loaded", None), ("loaded", None), ("excluded", "spam"),
    ]


def test_a_wage_repeated_on_many_rows_is_judged_the_same_on_each(tmp_path: Path) -> None:
    # hourly_wage: 0 to 150 (instrument). "24,50" is a decimal comma, "$ 24.50" a currency sign.
    wages = ["2450", "24,50", "2450", "abc", "$ 24.50", "2450", "24,50", "abc"]
    result = run(tmp_path, [full(i, {"hourly_wage": wage}) for i, wage in enumerate(wages, start=1)])
    assert got(result) == [
        ("quarantined", "out_of_range"), ("loaded", None), ("quarantined", "out_of_range"),
        ("quarantined", "not_a_number"), ("loaded", None), ("quarantined", "out_of_range"), ("loaded", None),
        ("quarantined", "not_a_number"),
    ]
    # "abc" holds words where a number is expected: not shown, as a name would not be (shown_value)
    hidden = "(text of 3 characters, not shown: it may identify someone)"
    assert [(i.row, i.rule, i.value) for i in result.issues] == [
        (0, "out_of_range", "2450"), (2, "out_of_range", "2450"), (3, "not_a_number", hidden),
        (5, "out_of_range", "2450"), (7, "not_a_number", hidden),
    ]


def test_a_resubmission_is_recognised_whatever_the_case_and_spaces_of_the_email(tmp_path: Path) -> None:
    first = full(1, {"contact_email": " Pat@Example.ORG "})
    again = full(2, {"contact_email": "pat@example.org"}, StartDate="2025-03-20 09:00:00",
                 EndDate="2025-03-20 09:15:00")
    someone_else = full(3, {"contact_email": "pat@example.com"}, StartDate="2025-03-21 09:00:00",
                        EndDate="2025-03-21 09:15:00")
    assert got(run(tmp_path, [first, again, someone_else])) == [
        ("loaded", None), ("duplicate", "resubmitted"), ("loaded", None),
    ]


def test_timestamps_with_a_utc_offset_are_judged_on_their_own_day(tmp_path: Path) -> None:
    """The 2025 window runs from 3 March to 30 May. 23:30 on 30 May at UTC-5 is already 31 May in
    UTC, yet still inside the window; 23:50 on 2 March at UTC-5 is outside."""
    rows = [
        full(1, StartDate="2025-03-02T23:50:00-05:00", EndDate="2025-03-03T00:20:00-05:00"),
        full(2, StartDate="2025-05-30T23:00:00-05:00", EndDate="2025-05-30T23:30:00-05:00"),
        full(3, StartDate="2025-05-30T23:50:00-05:00", EndDate="2025-05-31T00:05:00-05:00"),
        full(4, StartDate="2025-03-03T00:00:00-05:00", EndDate="2025-03-03T00:30:00-05:00"),
    ]
    result = run(tmp_path, rows)
    assert got(result) == [("quarantined", "outside_collection_window"), ("loaded", None),
                           ("quarantined", "outside_collection_window"), ("loaded", None)]
    assert [(i.row, i.concept, i.value) for i in result.issues] == [(0, "started_at", None), (2, "ended_at", None)]


def test_offsets_that_change_within_a_file_and_unreadable_times_are_judged_row_by_row(tmp_path: Path) -> None:
    """A file spanning the change to daylight saving time carries -05:00 and -04:00; one timestamp
    is unreadable. Each time is read as the local time written: no crash, one outcome per row."""
    rows = [
        full(1, StartDate="2025-03-08T10:00:00-05:00", EndDate="2025-03-08T10:20:00-05:00"),
        full(2, StartDate="2025-03-10T10:00:00-04:00", EndDate="2025-03-10T10:20:00-04:00"),
        full(3, StartDate="2025-05-30T23:50:00-04:00", EndDate="2025-05-31T00:10:00-04:00"),
        full(4, StartDate="2025-03-10T10:00:00-04:00", EndDate="yesterday, around ten"),
    ]
    result = run(tmp_path, rows)
    assert got(result) == [("loaded", None), ("loaded", None), ("quarantined", "outside_collection_window"),
                           ("quarantined", "not_a_date")]
    assert [(i.row, i.rule, i.concept, i.value) for i in result.issues] == [
        (2, "outside_collection_window", "ended_at", None), (3, "not_a_date", "ended_at", None)]


def test_each_straight_lined_grid_is_named_in_the_flag(tmp_path: Path) -> None:
    """Grids of four items or more: incivility (Q21), valued (Q22) and the cbi items of Q40."""
    incivility, valued, cbi = ({q: code for q in items} for items, code in
                               ((INCIVILITY, "3"), (VALUED, "2"), (CBI_OFTEN, "4")))
    one_blank = {**incivility, "incivility_doubted": None}  # three alike and one unanswered: not a line
    rows = [full(1, {**incivility, **cbi}), full(2, valued), full(3), full(4, {**incivility, **valued, **cbi}),
            full(5, one_blank), full(6, cbi)]
    result = run(tmp_path, rows)
    straight = result.flags[result.flags["flag"] == "straightlining"]
    assert straight[["row", "detail"]].values.tolist() == [
        [0, "incivility, cbi"], [1, "valued"], [3, "incivility, valued, cbi"], [5, "cbi"],
    ]
