"""Every row gets one outcome, for the documented reason; broken files stop with a clear error."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from builders import complete_answers, response, write_export, write_google_form
from conftest import REPO, SHARED_FIXTURES
from pipeline.ingest import ExportError, read_export
from pipeline.instrument import load_instrument
from pipeline.validate import StructuralError, validate

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
SECRET = b"test-secret"


def outcomes(tmp_path: Path, rows: list[dict], seen: frozenset[str] = frozenset()) -> tuple[list[tuple[str, str | None]], object]:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, rows)
    export = read_export(path, INSTRUMENT)
    result = validate(export, INSTRUMENT, SECRET, seen)
    return list(zip(result.outcome.tolist(), result.reason.tolist())), result


def full(number: int, answers: dict | None = None, **metadata: str) -> dict:
    """A response answering every question shown to it (see builders.complete_answers)."""
    return response(number, complete_answers(INSTRUMENT, **(answers or {})), **metadata)


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


def test_previews_tests_and_spam_are_not_responses(tmp_path: Path) -> None:
    """Qualtrics' Status (response type) as exported with numeric values or as choice text: the
    survey authors' previews and tests, and what Qualtrics flagged as spam, are excluded with their
    reason; ordinary, imported and offline responses load."""
    statuses = ["0", "1", "2", "4", "8", "16", "17", "Survey Preview", "Spam", "IP Address", "Offline", "Survey Test"]
    rows = [response(i, Status=status) for i, status in enumerate(statuses, start=1)]
    rows.append(response(len(rows) + 1, DistributionChannel="preview"))
    got, _ = outcomes(tmp_path, rows)
    assert got == [("loaded", None), ("excluded", "preview"), ("excluded", "preview"), ("loaded", None),
                   ("excluded", "spam"), ("loaded", None), ("excluded", "preview"), ("excluded", "preview"),
                   ("excluded", "spam"), ("loaded", None), ("loaded", None), ("excluded", "preview"),
                   ("excluded", "preview")]


def test_a_preview_is_excluded_before_its_other_problems_are_looked_at(tmp_path: Path) -> None:
    """An author testing the survey may type anything: their preview is excluded, not quarantined."""
    rows = [response(1, {"hourly_wage": "abc"}, Status="1"), response(2, {"hourly_wage": "abc"})]
    got, _ = outcomes(tmp_path, rows)
    assert got[0] == ("excluded", "preview")
    assert got[1][0] == "quarantined"


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


def test_responses_loaded_before_are_duplicates(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "a.csv", INSTRUMENT, [response(1), response(2)])
    first = validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    seen = set(first.response_keys.dropna())
    later = write_export(tmp_path / "2025" / "b.csv", INSTRUMENT, [response(2), response(3)])
    second = validate(read_export(later, INSTRUMENT), INSTRUMENT, SECRET, seen)
    assert second.outcome.tolist() == ["duplicate", "loaded"]
    assert second.reason.tolist()[0] == "loaded_before"


# --- the same person answering twice: caught when it is, not merged when it is not ------------


def test_near_identical_resubmission_with_the_same_email_is_a_duplicate(tmp_path: Path) -> None:
    first = full(1, {"contact_email": "pat@example.org"})
    # A few days later, one answer of 60-odd changed (agreement above 0.9).
    second = full(2, {"contact_email": "pat@example.org", "tokenism": "5"}, StartDate="2025-03-20 09:00:00",
                  EndDate="2025-03-20 09:15:00")
    got, _ = outcomes(tmp_path, [first, second])
    assert got == [("loaded", None), ("duplicate", "resubmitted")]


def test_a_resubmission_from_the_same_recipient_email_is_a_duplicate_whatever_the_contact_question(tmp_path: Path) -> None:
    # Qualtrics' RecipientEmail (a personal link) is the person; the contact question, answered the
    # first time only, or with another address, must not hide it.
    first = full(1, {"contact_email": "pat.home@example.org"}, RecipientEmail="pat@agency.example")
    second = full(2, {"contact_email": None, "tokenism": "5"}, RecipientEmail="pat@agency.example",
                  StartDate="2025-03-20 09:00:00", EndDate="2025-03-20 09:15:00", IPAddress="192.0.2.77")
    third = full(3, {"contact_email": "other@example.org", "tokenism": "5"}, RecipientEmail="pat@agency.example",
                 StartDate="2025-03-21 09:00:00", EndDate="2025-03-21 09:15:00", IPAddress="192.0.2.78")
    got, _ = outcomes(tmp_path, [first, second, third])
    assert got == [("loaded", None), ("duplicate", "resubmitted"), ("duplicate", "resubmitted")]


def test_two_people_sharing_an_inbox_are_not_merged(tmp_path: Path) -> None:
    # A shared agency address: same region and workplace answers, different people otherwise.
    one = full(1, {"contact_email": "team@agency.ca"})
    other_answers = {q: "2" for q in ("incivility_condescending", "incivility_ignored", "valued_administrators",
                                      "valued_clinicians", "tokenism", "unpaid_work", "age_band", "gender",
                                      "cbi_burnt_out", "cbi_worn_out", "moral_betrayed", "epi_on_call")}
    two = full(2, {"contact_email": "team@agency.ca", **other_answers})
    got, _ = outcomes(tmp_path, [one, two])
    assert got == [("loaded", None), ("loaded", None)]


def test_same_address_identical_answers_one_after_the_other_is_a_duplicate(tmp_path: Path) -> None:
    first = full(1, IPAddress="198.51.100.7", StartDate="2025-03-11 10:00:00", EndDate="2025-03-11 10:20:00")
    again = full(2, IPAddress="198.51.100.7", StartDate="2025-04-02 18:00:00", EndDate="2025-04-02 18:12:00")
    got, _ = outcomes(tmp_path, [first, again])
    assert got == [("loaded", None), ("duplicate", "resubmitted")]


def test_same_address_at_the_same_time_is_two_people(tmp_path: Path) -> None:
    # Two colleagues on the agency network, answering alike, at the same time.
    one = full(1, IPAddress="198.51.100.7", StartDate="2025-03-11 10:00:00", EndDate="2025-03-11 10:20:00")
    two = full(2, IPAddress="198.51.100.7", StartDate="2025-03-11 10:05:00", EndDate="2025-03-11 10:25:00")
    got, _ = outcomes(tmp_path, [one, two])
    assert got == [("loaded", None), ("loaded", None)]


def test_same_address_needs_enough_answers_and_all_of_them_identical(tmp_path: Path) -> None:
    short_a = response(1, IPAddress="198.51.100.7", StartDate="2025-03-11 10:00:00", EndDate="2025-03-11 10:20:00")
    short_b = response(2, IPAddress="198.51.100.7", StartDate="2025-03-12 10:00:00", EndDate="2025-03-12 10:20:00")
    long_a = full(3, IPAddress="198.51.100.9", StartDate="2025-03-11 10:00:00", EndDate="2025-03-11 10:20:00")
    long_b = full(4, {"tokenism": "5"}, IPAddress="198.51.100.9", StartDate="2025-03-12 10:00:00",
                  EndDate="2025-03-12 10:20:00")
    got, _ = outcomes(tmp_path, [short_a, short_b, long_a, long_b])
    # 8 answers are too few to tell people apart; one different answer is a different response.
    assert [o for o, _ in got] == ["loaded"] * 4


def test_a_resubmission_of_a_response_loaded_before_is_a_duplicate(tmp_path: Path) -> None:
    # The platform exports everything collected so far: the first response was loaded from last week's file.
    first = full(1, {"contact_email": "pat@example.org"})
    path = write_export(tmp_path / "2025" / "week1.csv", INSTRUMENT, [first])
    seen = frozenset(validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET).response_keys.dropna())
    resubmission = full(2, {"contact_email": "pat@example.org"}, StartDate="2025-04-01 09:00:00",
                        EndDate="2025-04-01 09:20:00")
    got, _ = outcomes(tmp_path, [first, resubmission], seen)
    assert got == [("duplicate", "loaded_before"), ("duplicate", "resubmitted")]


def test_a_corrected_resubmission_is_loaded_and_the_broken_one_stays_quarantined(tmp_path: Path) -> None:
    broken = full(1, {"contact_email": "pat@example.org", "hourly_wage": 2450})
    corrected = full(2, {"contact_email": "pat@example.org"}, StartDate="2025-03-20 09:00:00",
                     EndDate="2025-03-20 09:15:00")
    got, _ = outcomes(tmp_path, [broken, corrected])
    assert got == [("quarantined", "out_of_range"), ("loaded", None)]


# --- rules generated from the instrument ------------------------------------------------------


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
    found = {(i.source_row, i.rule, i.concept, i.column, i.value) for i in result.issues}
    # Data rows start at line 4 (three header lines); columns are the 2025 Qualtrics names.
    assert found == {
        (4, "invalid_code", "paid_sick_days", "Q15", "7"),
        (5, "out_of_range", "hourly_wage", "Q13", "2450"),
        (6, "not_a_number", "hourly_wage", "Q13", "twenty"),
        (7, "skip_logic", "discrimination_grounds", "Q25", "1"),
        (8, "required_missing", "oh_region", "Q42", None),
        (9, "invalid_code", "tasks_clinical", "Q33", "42"),
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


def test_dates_outside_the_collection_window_are_quarantined_without_the_timestamp(tmp_path: Path) -> None:
    # The 2025 window is 2025-03-03 to 2025-05-30, both days included.
    rows = [
        response(1, StartDate="2025-03-02 23:50:00", EndDate="2025-03-03 00:10:00"),  # a test before opening
        response(2, StartDate="2025-05-30 23:50:00", EndDate="2025-05-31 00:05:00"),  # ended after closing
        response(3, StartDate="2025-03-03 00:00:00", EndDate="2025-05-30 23:59:59"),  # inside, at both edges
        response(4, StartDate="sometime in March"),  # unreadable
    ]
    got, result = outcomes(tmp_path, rows)
    assert got == [("quarantined", "outside_collection_window"), ("quarantined", "outside_collection_window"),
                   ("loaded", None), ("quarantined", "not_a_date")]
    found = {(i.source_row, i.rule, i.concept, i.column, i.value) for i in result.issues}
    assert found == {
        (4, "outside_collection_window", "started_at", "StartDate", None),
        (5, "outside_collection_window", "ended_at", "EndDate", None),
        (7, "not_a_date", "started_at", "StartDate", None),
    }
    # Timestamps are identifiers: they reach neither the issues nor the Great Expectations results.
    kept = json.dumps(result.gx_result, default=str)
    for stamp in ("2025-03-02 23:50:00", "2025-05-31 00:05:00", "sometime in March"):
        assert stamp not in kept


def test_day_first_dates_as_a_spreadsheet_rewrites_them_are_read_day_first(tmp_path: Path) -> None:
    """An export opened and saved in a spreadsheet set to a Canadian (or French, British) locale
    has its timestamps rewritten day first: 09/03/2025 is 9 March. One day above 12 in the first
    place shows the layout; the whole file is then read that way, not month first (which put
    9 March in September, outside the window, and 4 March in April)."""
    rows = [
        response(1, StartDate="09/03/2025 18:11", EndDate="09/03/2025 18:20"),  # 9 March: inside
        response(2, StartDate="15/03/2025 09:56", EndDate="15/03/2025 10:14"),  # 15 March: day first
        response(3, StartDate="02/03/2025 23:50", EndDate="03/03/2025 00:10"),  # 2 March: before opening
    ]
    got, _ = outcomes(tmp_path, rows)
    assert got == [("loaded", None), ("loaded", None), ("quarantined", "outside_collection_window")]


def test_month_first_dates_stay_month_first(tmp_path: Path) -> None:
    rows = [
        response(1, StartDate="3/9/2025 6:11:00 PM", EndDate="3/9/2025 6:20:00 PM"),  # 9 March
        response(2, StartDate="3/15/2025 9:56", EndDate="3/15/2025 10:14"),  # 15 March: month first
        response(3, StartDate="6/1/2025 9:56", EndDate="6/1/2025 10:14"),  # 1 June: after closing
    ]
    got, _ = outcomes(tmp_path, rows)
    assert got == [("loaded", None), ("loaded", None), ("quarantined", "outside_collection_window")]


# --- rules declared in rules.yaml -------------------------------------------------------------


def test_cross_question_rule_quarantines_with_its_id_question_column_and_value(tmp_path: Path) -> None:
    part_time_one_job = {"contract_type": "2", "several_jobs": "1"}
    rows = [
        response(1, {**part_time_one_job, "hours_per_week": 40}),  # more than 37.5: inconsistent
        response(2, {**part_time_one_job, "hours_per_week": 37.5}),  # the limit itself is allowed
        response(3, {"contract_type": "2", "several_jobs": "2", "hours_per_week": 45}),  # hours of two jobs
        response(4, {"contract_type": "1", "several_jobs": "1", "hours_per_week": 45}),  # full-time
    ]
    got, result = outcomes(tmp_path, rows)
    assert got == [("quarantined", "part_time_hours"), ("loaded", None), ("loaded", None), ("loaded", None)]
    assert [(i.source_row, i.rule, i.concept, i.column, i.value) for i in result.issues] == [
        (4, "part_time_hours", "hours_per_week", "Q14", "40")
    ]
    assert any(r.rule == "part_time_hours" and r.failed_rows == 1 for r in result.rules)


def test_a_rule_with_severity_flag_reports_without_quarantining(tmp_path: Path) -> None:
    got, result = outcomes(tmp_path, [response(1, {"eligible_role": "1", "contract_type": "6"}), response(2)])
    assert got == [("loaded", None), ("loaded", None)]
    assert result.flags[result.flags["flag"] == "paid_role_volunteer_position"]["row"].tolist() == [0]


def wave_folder(tmp_path: Path, rules: str | None) -> Path:
    """A surveys/2025 folder with the real instrument and the given rules.yaml (or none)."""
    folder = tmp_path / "surveys" / "2025"
    folder.mkdir(parents=True)
    shutil.copy(REPO / "surveys" / "2025" / "instrument.yaml", folder / "instrument.yaml")
    if rules is not None:
        (folder / "rules.yaml").write_text(rules, encoding="utf-8")
    return folder


BAD_RULES = [
    ("rules: [{id: r1, when: {question: nope, in: [1]}, require: {question: hours_per_week, at_most: 1}, message: m}]",
     "rules[0] (id r1): when: unknown question 'nope'"),
    ("rules: [{id: r2, require: {question: contract_type, at_most: 3}, message: m}]",
     "rules[0] (id r2): require: at_least/at_most need a numeric question; 'contract_type' is single"),
    ("rules: [{id: r3, require: {question: contract_type, in: [9]}, message: m}]",
     "rules[0] (id r3): require: 'contract_type' has no codes ['9']"),
    ("rules: [{id: r4, require: {question: hours_per_week, at_most: 3, answered: true}, message: m}]",
     "require needs exactly one test"),
    ("rules: [{id: speeder, require: {question: hours_per_week, at_most: 3}, message: m}]",
     "rule id 'speeder' is a name the pipeline uses"),
    ("rules: [{id: r5, require: {question: hours_per_week, at_most: 3}, message: m, severity: high}]",
     "rules[0] (id r5).severity"),
    ("quality: {speeder: {fraction_of_median: 3}}", "quality.speeder.fraction_of_median"),
    ("duplicates: {same_mail: {}}", "duplicates.same_mail"),
    ("rules: [{id: r6, require: {question: hours_per_week, at_most: 3}", "not valid YAML"),
]


@pytest.mark.parametrize("text, message", BAD_RULES)
def test_a_broken_rules_file_names_the_file_and_the_rule(tmp_path: Path, text: str, message: str) -> None:
    from pipeline.wave_rules import RulesError

    folder = wave_folder(tmp_path, text)
    instrument = load_instrument(folder / "instrument.yaml")
    path = write_export(tmp_path / "export.csv", instrument, [response(1)])
    with pytest.raises(RulesError) as error:
        validate(read_export(path, instrument), instrument, SECRET)
    assert str(folder / "rules.yaml") in str(error.value)
    assert message in str(error.value)


def test_without_a_rules_file_only_the_instrument_rules_run(tmp_path: Path) -> None:
    instrument = load_instrument(wave_folder(tmp_path, None) / "instrument.yaml")
    row = response(1, {"contract_type": "2", "several_jobs": "1", "hours_per_week": 45})
    path = write_export(tmp_path / "export.csv", instrument, [row])
    result = validate(read_export(path, instrument), instrument, SECRET)
    assert result.outcome.tolist() == ["loaded"]


# --- data-quality flags: reported, never quarantined --------------------------------------------


def flagged(result, flag: str) -> list[int]:
    return sorted(result.flags[result.flags["flag"] == flag]["row"].tolist())


def test_speeders_are_flagged_against_the_median_duration(tmp_path: Path) -> None:
    # 23 responses of 20 minutes: the median is 1200 s, the threshold a third of it (400 s).
    rows = [full(i, **{"Duration (in seconds)": "1200"}) for i in range(23)]
    rows += [full(30, **{"Duration (in seconds)": "390"}), full(31, **{"Duration (in seconds)": "410"})]
    got, result = outcomes(tmp_path, rows)
    assert {o for o, _ in got} == {"loaded"}
    assert flagged(result, "speeder") == [23]
    assert result.flag_counts()["speeder"] == 1


def test_with_few_responses_the_speeder_threshold_follows_the_questionnaire_length(tmp_path: Path) -> None:
    seconds = 3 * len(INSTRUMENT.questions)  # rules.yaml: 3 seconds a question
    rows = [full(1, **{"Duration (in seconds)": str(seconds - 10)}),
            full(2, **{"Duration (in seconds)": str(seconds + 10)})]
    _, result = outcomes(tmp_path, rows)
    assert flagged(result, "speeder") == [0]


def test_straight_lining_a_grid_of_four_items_is_flagged(tmp_path: Path) -> None:
    incivility = {q: "3" for q in ("incivility_condescending", "incivility_ignored", "incivility_demeaning",
                                   "incivility_doubted")}
    burnout_three = {q: "2" for q in ("cbi_emotionally_exhausting", "cbi_burnt_out", "cbi_frustrate")}
    rows = [full(1, incivility), full(2, burnout_three), full(3)]
    got, result = outcomes(tmp_path, rows)
    assert [o for o, _ in got] == ["loaded"] * 3
    straight = result.flags[result.flags["flag"] == "straightlining"]
    assert straight[["row", "detail"]].values.tolist() == [[0, "incivility"]]  # the 3-item grid is too short


def test_mostly_empty_responses_are_flagged(tmp_path: Path) -> None:
    # response() answers 8 of the 60-odd questions a paid peer supporter is shown.
    got, result = outcomes(tmp_path, [response(1), full(2)])
    assert got == [("loaded", None), ("loaded", None)]
    assert flagged(result, "mostly_empty") == [0]


# --- structure: the whole file stops ------------------------------------------------------------


def rewrite_header(path: Path, old: str, new: str | None) -> None:
    """Rename a column (or drop it, with new=None) in every header line of a Qualtrics export."""
    records = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    column = records[0].index(old)
    if new is None:
        records = [r[:column] + r[column + 1:] for r in records]
    else:
        records[0][column] = new
        records[1][column] = "A question the instrument does not know"
    buffer = io.StringIO()
    csv.writer(buffer).writerows(records)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def test_missing_required_column_is_structural(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1)])
    rewrite_header(path, INSTRUMENT.question("oh_region").aliases[0], None)
    with pytest.raises(StructuralError) as error:
        validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    assert str(path) in str(error.value) and "oh_region (column Q42)" in str(error.value)


def test_a_question_column_missing_is_structural_never_silent(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1)])
    rewrite_header(path, "Q26", None)  # tokenism: optional, but its answers would be lost
    with pytest.raises(StructuralError) as error:
        validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    assert str(path) in str(error.value) and "tokenism (column Q26)" in str(error.value)


def test_a_renamed_column_is_named_with_what_to_do(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1)])
    rewrite_header(path, "Q26", "Q26_v2")  # the platform renamed the question mid-collection
    with pytest.raises(StructuralError) as error:
        validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    message = str(error.value)
    assert "tokenism (column Q26)" in message and "Q26_v2" in message and "aliases" in message


def test_an_export_of_another_wave_is_refused(tmp_path: Path) -> None:
    wave_2024 = load_instrument(REPO / "surveys" / "2024" / "instrument.yaml")
    path = write_export(tmp_path / "2025" / "export.csv", wave_2024, [response(1)])  # wrong folder
    with pytest.raises(StructuralError) as error:
        validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    assert str(path) in str(error.value) and "2024 questionnaire, not 2025" in str(error.value)


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
    assert str(other) in str(error.value) and "different survey" in str(error.value)
    # what to do: move it out of data/raw/, or match the columns (and how to see them)
    assert "move it out of data/raw/" in str(error.value) and f"consult inspect {other}" in str(error.value)


def test_legacy_encoding_is_read(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1, {"comments_other": "Très bien, merci"})])
    path.write_bytes(path.read_bytes().decode("utf-8-sig").encode("cp1252"))
    export = read_export(path, INSTRUMENT)
    assert export.answers.at[0, "comments_other"] == "Très bien, merci"


def test_a_consent_code_the_question_does_not_have_is_quarantined_not_a_no(tmp_path: Path) -> None:
    # Consent codes are 1 (yes) and 2 (no): a 7 is a broken export to fix, not a refusal to drop.
    got, result = outcomes(tmp_path, [response(1, {"consent": "7"}), response(2, {"consent": "2"}), response(3)])
    assert got == [("quarantined", "invalid_code"), ("excluded", "no_consent"), ("loaded", None)]
    assert ("invalid_code", "consent", "7") in [(i.rule, i.concept, i.value) for i in result.issues if i.row == 0]


def dated(number: int, day: str) -> dict:
    return response(number, StartDate=f"{day} 10:00:00", EndDate=f"{day} 10:20:00", RecordedDate=f"{day} 10:20:00")


def test_another_waves_export_with_the_same_columns_stops_before_anything_loads(empty_project) -> None:
    """Next year's export saved in this year's folder, the questionnaire unchanged (same columns):
    every response is outside this wave's window and inside the other's. Quarantined, its rows would
    never load once the file is moved (a file loaded once is skipped by its content)."""
    from pipeline.run import run_load
    from test_load import query

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    # the 2024 window is 2024-03-04 to 2024-05-31: all but one inside it, that one undated
    rows = [dated(i, f"2024-04-{10 + i:02d}") for i in range(6)] + [response(9, StartDate="", EndDate="")]
    write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)
    with pytest.raises(StructuralError) as error:
        run_load(empty_project)
    message = str(error.value)
    assert "export.csv: this looks like an export of the 2024 wave" in message
    assert "all 6 dated responses (dated 2024-04 to 2024-04)" in message
    assert "Put it in a folder named 2024" in message
    assert "10:00" not in message  # timestamps are identifiers: the month only
    assert not empty_project.warehouse.exists() or query(empty_project, "SELECT count(*) FROM load_ledger")[0][0] == 0


def test_an_export_dated_outside_every_window_names_the_window_to_check(tmp_path: Path) -> None:
    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    path = write_export(tmp_path / "2025" / "export.csv", instrument, [dated(i, "2025-07-15") for i in range(3)])
    with pytest.raises(StructuralError, match=r"all 3 dated responses \(dated 2025-07 to 2025-07\) fall outside the "
                                              r"2025 collection window \(2025-03-03 to 2025-05-30\)") as error:
        validate(read_export(path, instrument), instrument, b"k" * 32)
    assert "correct collection_window in" in str(error.value) and "instrument.yaml" in str(error.value)


def test_one_response_outside_the_window_is_still_only_quarantined(tmp_path: Path) -> None:
    rows = [dated(1, "2025-03-10"), dated(2, "2025-07-15")]
    got, _ = outcomes(tmp_path, rows)
    assert got == [("loaded", None), ("quarantined", "outside_collection_window")]


def test_a_long_list_of_unknown_columns_says_how_many_it_leaves_out(tmp_path: Path) -> None:
    path = write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, [response(1)])
    renamed = [q.aliases[0] for q in INSTRUMENT.questions if q.aliases][:12]
    for number, alias in enumerate(renamed, start=1):
        rewrite_header(path, alias, f"Renamed{number}")
    with pytest.raises(StructuralError) as error:
        validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET)
    message = str(error.value)
    assert "Renamed1, Renamed2" in message and "Renamed10 and 2 more." in message and "Renamed11" not in message


# --- a platform that records only the submission time (Google Forms) ---------------------------


def google_form(folder: Path, stamps: list[str], timestamp: str = "Timestamp") -> Path:
    """A Google Forms responses CSV of the 2025 questionnaire, one response per stamp, the
    timestamp column named and written as given (a French sheet: "Horodateur", day first)."""
    return write_google_form(folder / "2025" / "form.csv", INSTRUMENT, stamps, timestamp)


def form_outcomes(path: Path) -> tuple[list[tuple[str, str | None]], object]:
    export = read_export(path, INSTRUMENT)
    assert export.platform == "googleforms" and "started_at" not in export.identifiers
    result = validate(export, INSTRUMENT, SECRET)
    return list(zip(result.outcome.tolist(), result.reason.tolist())), result


def test_a_google_form_is_checked_against_the_window_by_its_submission_time(tmp_path: Path) -> None:
    # The 2025 window is 2025-03-03 to 2025-05-30, both days included; Google writes M/D/YYYY.
    stamps = ["3/2/2025 23:50:00", "3/3/2025 0:00:00", "5/30/2025 23:59:59", "5/31/2025 0:05:00"]
    got, result = form_outcomes(google_form(tmp_path, stamps))
    assert got == [("quarantined", "outside_collection_window"), ("loaded", None), ("loaded", None),
                   ("quarantined", "outside_collection_window")]
    found = {(i.source_row, i.rule, i.concept, i.column, i.value) for i in result.issues}
    assert found == {(2, "outside_collection_window", "recorded_at", "Timestamp", None),
                     (5, "outside_collection_window", "recorded_at", "Timestamp", None)}
    kept = json.dumps(result.gx_result, default=str)  # the submission time is an identifier too
    assert "3/2/2025" not in kept and "5/31/2025" not in kept


def test_a_google_form_submitted_entirely_outside_the_window_stops_the_load(tmp_path: Path) -> None:
    path = google_form(tmp_path, ["7/15/2025 10:00:00", "7/16/2025 11:30:00", "8/1/2025 9:00:00"])
    with pytest.raises(StructuralError, match=r"form\.csv: all 3 dated responses \(dated 2025-07 to 2025-08\) fall "
                                              r"outside the 2025 collection window \(2025-03-03 to 2025-05-30\)"):
        form_outcomes(path)


def test_a_french_google_sheet_is_read_day_first_even_when_no_day_is_above_12(tmp_path: Path) -> None:
    """"06/03/2025" in a French sheet is 6 March (inside the window), "05/06/2025" 5 June (after it
    closed); read month first they would be 3 June and 6 May, the other way round. (An English
    "Timestamp" says nothing of the layout: the same file then stops, see test_platforms_date_order.)"""
    stamps = ["06/03/2025 10:00:00", "05/06/2025 10:00:00"]
    got, _ = form_outcomes(google_form(tmp_path / "fr", stamps, timestamp="Horodateur"))
    assert got == [("loaded", None), ("quarantined", "outside_collection_window")]


def test_a_redcap_export_is_checked_by_its_survey_timestamp_and_not_completed_is_no_date(tmp_path: Path) -> None:
    """REDCap records only when a survey was submitted (`<form>_timestamp`), and writes
    "[not completed]" for a form entered by staff: that is no time, not an unreadable one."""
    from pipeline.synth import redcap_csv

    stamps = ["2025-03-10 10:20:00", "[not completed]", "2025-06-02 09:00:00"]
    rows = [response(i, RecordedDate=stamp) for i, stamp in enumerate(stamps, start=1)]
    path = tmp_path / "2025" / "redcap.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(redcap_csv(INSTRUMENT, rows))
    export = read_export(path, INSTRUMENT)
    assert export.platform == "redcap" and "started_at" not in export.identifiers
    result = validate(export, INSTRUMENT, SECRET)
    got = list(zip(result.outcome.tolist(), result.reason.tolist()))
    assert got == [("loaded", None), ("loaded", None), ("quarantined", "outside_collection_window")]
