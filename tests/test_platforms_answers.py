"""Each platform's documented rules, on small exports written the way the platform writes them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pipeline.ingest import Export, read_export
from pipeline.instrument import Instrument

TASKS = [("1", "Cooking, cleaning"), ("2", "Driving"), ("3", "Reception, phones"), ("4", "None of these")]
INSTRUMENT = Instrument.model_validate({
    "wave": 2025,
    "title": {"en": "Test", "fr": "Test"},
    "languages": ["en"],
    "collection_window": {"start": "2025-01-01", "end": "2025-12-31"},
    "sections": [{"id": "main", "title": {"en": "Main", "fr": "Principal"}, "questions": [
        {"id": "consent", "type": "single", "label": {"en": "Do you agree?", "fr": "Acceptez-vous?"},
         "choices": [{"code": 1, "label": {"en": "Yes", "fr": "Oui"}}, {"code": 2, "label": {"en": "No", "fr": "Non"}}],
         "aliases": ["Q1"], "platform_aliases": {"csv": ["agree"]}},
        {"id": "tasks", "type": "multiple", "label": {"en": "Which tasks do you do?", "fr": "Quelles tâches?"},
         "choices": [{"code": c, "label": {"en": label, "fr": label}} for c, label in TASKS], "aliases": ["Q3"]},
        {"id": "item_a", "type": "likert", "label": {"en": "Item A", "fr": "Énoncé A"},
         "choices": [{"code": i, "label": {"en": t, "fr": t}} for i, t in ((1, "Never"), (2, "Sometimes"), (3, "Often"))],
         "aliases": ["Q4_1"], "platform_aliases": {"surveymonkey": ["How often? | Item A"]}},
        {"id": "wage", "type": "numeric", "label": {"en": "Hourly wage", "fr": "Salaire"}, "aliases": ["Q5"]},
        {"id": "comment", "type": "text", "label": {"en": "Any comment?", "fr": "Un commentaire?"}, "aliases": ["Q6"]},
    ]}],
})


def write(tmp_path: Path, records: list[list[str]], name: str = "export.csv", delimiter: str = ",") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(records)
    path = tmp_path / name
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def answers(export: Export, concept: str) -> list:
    return export.answers[concept].tolist()


def test_qualtrics_codes_seen_but_unanswered_text_entry_and_display_order(tmp_path: Path) -> None:
    ids = ["ResponseId", "Finished", "Q1", "Q3", "Q3_4_TEXT", "Q3_DO", "Q4_1", "Q5"]
    texts = ["Response ID", "Finished", "Do you agree?", "Which tasks?", "Which tasks? - Other - Text",
             "Which tasks? - Display Order", "How often? - Item A", "Hourly wage"]
    imports = [json.dumps({"ImportId": i}) for i in ("_recordId", "finished", "QID1", "QID3", "QID3_4_TEXT",
                                                     "QID3_DO", "QID4_1", "QID5_TEXT")]
    rows = [["R_aaaaaaaaaaaaaaa", "1", "1", "1,3", "", "1|2|3|4", "-99", "24.50"],
            ["R_bbbbbbbbbbbbbbb", "0", "2", "", "", "", "3", ""]]
    export = read_export(write(tmp_path, [ids, texts, imports, *rows]), INSTRUMENT)
    assert (export.platform, export.header_rows, export.rows) == ("qualtrics", 3, 2)
    assert answers(export, "tasks") == [["1", "3"], None]
    assert answers(export, "item_a") == [None, "3"]  # -99: shown, not answered
    assert answers(export, "wage") == ["24.5", None]
    kinds = {c.name: c.kind for c in export.columns}
    assert kinds["Q3_DO"] == "metadata" and kinds["Q3_4_TEXT"] == "unknown"
    assert export.metadata["finished"].tolist() == ["1", "0"]


def test_qualtrics_choice_text_and_split_multi_value_columns(tmp_path: Path) -> None:
    ids = ["ResponseId", "StartDate", "Finished", "Q1", "Q3_1", "Q3_3", "Q4_1"]
    rows = [["R_aaaaaaaaaaaaaaa", "2025-03-01 10:00:00", "True", "Yes", "1", "1", "Often"],
            ["R_bbbbbbbbbbbbbbb", "2025-03-01 11:00:00", "False", "No", "", "1", "Never"]]
    export = read_export(write(tmp_path, [ids, *rows]), INSTRUMENT)
    assert export.header_rows == 1
    assert answers(export, "consent") == ["1", "2"]
    assert answers(export, "tasks") == [["1", "3"], ["3"]]
    assert answers(export, "item_a") == ["3", "1"]
    assert export.metadata["finished"].tolist() == ["1", "0"]


def test_surveymonkey_options_matrix_rows_and_other_text(tmp_path: Path) -> None:
    top = ["Respondent ID", "Collector ID", "Start Date", "IP Address", "Do you <b>agree</b>?", "Which tasks do you do?",
           "", "", "", "How often?", "Any comment?"]
    sub = ["", "", "", "", "Response", "Cooking, cleaning", "Driving", "Reception, phones", "Other (please specify)",
           "Item A", "Open-Ended Response"]
    rows = [["114", "431", "03/01/2025 10:00:00 AM", "10.0.0.1", "Yes", "Cooking, cleaning", "", "Reception, phones",
             "gardening", "Sometimes", "Fine, thanks"],
            ["115", "431", "03/01/2025 11:00:00 AM", "10.0.0.2", "No", "", "", "", "", "", ""]]
    export = read_export(write(tmp_path, [top, sub, *rows]), INSTRUMENT)
    assert (export.platform, export.header_rows, export.rows) == ("surveymonkey", 2, 2)
    assert answers(export, "consent") == ["1", "2"]
    assert answers(export, "tasks") == [["1", "3"], None]
    assert answers(export, "item_a") == ["2", None]
    assert answers(export, "comment") == ["Fine, thanks", None]
    assert export.identifiers["ip_address"].tolist() == ["10.0.0.1", "10.0.0.2"]
    assert {c.name: c.kind for c in export.columns}["Which tasks do you do? | Other (please specify)"] == "unknown"


def test_grid_rows_worded_as_the_question_need_no_alias(tmp_path: Path) -> None:
    # A grid built on the platform: its stem is the platform's own heading, each row is the question's
    # wording (SurveyMonkey's matrix row under the stem, Google Forms' "Stem [Row]").
    top = ["Respondent ID", "Collector ID", "Do you agree?", "In the past year, how often has this happened?"]
    sub = ["", "", "Response", "Item A"]
    rows = [["114", "431", "Yes", "Often"], ["115", "431", "No", "Never"]]
    monkey = read_export(write(tmp_path, [top, sub, *rows], "monkey.csv"), INSTRUMENT)
    assert monkey.platform == "surveymonkey"
    assert answers(monkey, "item_a") == ["3", "1"]
    header = ["Timestamp", "Do you agree?", "In the past year, how often has this happened? [Item A]"]
    rows = [["3/10/2025 14:54:44", "Yes", "Sometimes"], ["3/10/2025 15:02:11", "No", ""]]
    forms = read_export(write(tmp_path, [header, *rows], "forms.csv"), INSTRUMENT)
    assert forms.platform == "googleforms"
    assert answers(forms, "item_a") == ["2", None]


APOSTROPHES = Instrument.model_validate({
    "wave": 2025, "title": {"en": "Test", "fr": "Test"}, "languages": ["en", "fr"],
    "collection_window": {"start": "2025-01-01", "end": "2025-12-31"},
    "sections": [{"id": "main", "title": {"en": "Main", "fr": "Principal"}, "questions": [
        {"id": "sick_days", "type": "single", "label": {"en": "Do you get paid sick days?",
                                                        "fr": "Avez-vous des congés de maladie payés d'office?"},
         "choices": [{"code": 1, "label": {"en": "Yes", "fr": "Oui"}},
                     {"code": 3, "label": {"en": "Don't know", "fr": "Je ne sais pas"}}], "aliases": ["Q1"]},
        {"id": "grounds", "type": "multiple", "label": {"en": "Why?", "fr": "Pourquoi?"},
         "choices": [{"code": 8, "label": {"en": "Age", "fr": "L'âge"}},
                     {"code": 9, "label": {"en": "Language", "fr": "La langue"}}], "aliases": ["Q2"]},
    ]}],
})


def test_typographic_apostrophes_match_the_instruments_straight_ones(tmp_path: Path) -> None:
    # The questionnaire typed in a word processor: ’ where the instrument has ', invisible on screen.
    header = ["Horodateur", "Avez-vous des congés de maladie payés d\u2019office?", "Pourquoi?"]
    rows = [["14/03/2025 10:00:00", "Je ne sais pas", "L\u2019âge, La langue"],
            ["15/03/2025 11:00:00", "Oui", "La langue"]]
    forms = read_export(write(tmp_path, [header, *rows], "forms.csv"), APOSTROPHES)
    assert answers(forms, "sick_days") == ["3", "1"]
    assert answers(forms, "grounds") == [["8", "9"], ["9"]]
    top = ["Respondent ID", "Collector ID", "Do you get paid sick days?"]
    rows = [["114", "431", "Don\u2019t know"], ["115", "431", "Yes"]]
    monkey = read_export(write(tmp_path, [top, ["", "", "Response"], *rows], "monkey.csv"), APOSTROPHES)
    assert answers(monkey, "sick_days") == ["3", "1"]


def test_a_space_before_french_punctuation_matches_the_instrument_without(tmp_path: Path) -> None:
    # French typography: "payés d'office ?" (a no-break space, or a plain one) is the instrument's "d'office?"
    header = ["Horodateur", "Avez-vous des congés de maladie payés d'office\u00a0?", "Pourquoi ?"]
    rows = [["14/03/2025 10:00:00", "Je ne sais pas", "L'âge, La langue"]]
    forms = read_export(write(tmp_path, [header, *rows], "forms.csv"), APOSTROPHES)
    assert answers(forms, "sick_days") == ["3"] and answers(forms, "grounds") == [["8", "9"]]


def test_a_question_missing_from_a_form_is_named_by_its_wording(tmp_path: Path) -> None:
    # Google Forms names a column by the question's text: there is no column name to set, so the
    # message names the question by its wording and says to match the wording.
    from pipeline.validate import StructuralError, check_structure

    header = ["Timestamp", "Do you get paid sick days?", "Why did this happen?"]
    rows = [["3/14/2025 10:00:00", "Yes", "Age"]]
    export = read_export(write(tmp_path, [header, *rows], "forms.csv"), APOSTROPHES)
    with pytest.raises(StructuralError) as error:
        check_structure(export, APOSTROPHES)
    message = str(error.value)
    assert "grounds (“Why?”)" in message and "column Q2" not in message
    assert "Why did this happen?" in message and "columns are named by the question's text" in message


def test_limesurvey_codes_submit_date_and_localised_metadata(tmp_path: Path) -> None:
    header = ["Antwort ID", "Datum Abgeschickt", "Letzte Seite", "Start-Sprache", "Q1", "Q3[SQ001]", "Q3[SQ002]",
              "Q3[SQ003]", "Q3[other]", "Q5"]
    rows = [["1", "2025-03-01 10:00:00", "4", "de", "1", "Y", "", "Y", "", "24.5000000000"],
            ["2", "", "2", "de", "2", "", "", "", "", ""]]
    path = write(tmp_path, [header, *rows], delimiter=";")
    export = read_export(path, INSTRUMENT)
    assert export.platform == "limesurvey"
    assert answers(export, "tasks") == [["1", "3"], None]
    assert answers(export, "wage") == ["24.5", None]
    assert export.metadata["finished"].tolist() == ["1", "0"]
    assert export.identifiers["response_id"].tolist() == ["1", "2"]


def test_limesurvey_anonymised_dates_and_question_text_headings(tmp_path: Path) -> None:
    header = ["id", "submitdate", "lastpage", "startlanguage", "startdate", "Q1. Do you agree?",
              "Which tasks do you do? [Driving]", "Which tasks do you do? [None of these]"]
    rows = [["1", "1980-01-01 00:00:00", "3", "en", "1980-01-01 00:00:00", "Yes", "Y", ""],
            ["2", "", "1", "en", "1980-01-01 00:00:00", "", "", ""]]
    export = read_export(write(tmp_path, [header, *rows]), INSTRUMENT)
    assert export.metadata["finished"].tolist() == ["1", "0"]
    assert export.identifiers["started_at"].tolist() == [None, None]  # 1980 is no time at all
    assert answers(export, "consent") == ["1", None]
    assert answers(export, "tasks") == [["2"], None]
    assert any("1980-01-01" in note for note in export.notes)


def test_google_forms_checkboxes_split_with_the_choice_list(tmp_path: Path) -> None:
    header = ["Timestamp", "Email Address", "Do you agree?", "Which tasks do you do?", "Any comment?"]
    rows = [["3/10/2025 14:54:44", "a@example.org", "Yes", "Cooking, cleaning, Reception, phones", "Yes, and no"],
            ["3/10/2025 15:02:11", "b@example.org", "No", "Driving, walking dogs", ""]]
    export = read_export(write(tmp_path, [header, *rows]), INSTRUMENT)
    assert export.platform == "googleforms"
    assert answers(export, "tasks") == [["1", "3"], ["2", "walking dogs"]]  # "Other" text is kept as typed
    assert answers(export, "comment") == ["Yes, and no", None]
    assert export.identifiers["email"].tolist() == ["a@example.org", "b@example.org"]
    assert export.metadata["finished"].tolist() == ["1", "1"]


def test_kobo_group_paths_space_separated_choices_and_not_applicable(tmp_path: Path) -> None:
    header = ["start", "intro/Q1", "work/Q3", "work/Q3/1", "work/Q3/2", "work/Q3/3", "work/wage", "_uuid",
              "_submission_time", "_index"]
    rows = [["2025-03-01T10:00:00.000-05:00", "1", "1 3", "1", "0", "1", "n/a", "u-1", "2025-03-01T15:10:00", "1"],
            ["2025-03-01T11:00:00.000-05:00", "2", "", "", "", "", "20", "u-2", "2025-03-01T16:10:00", "2"]]
    export = read_export(write(tmp_path, [header, *rows], delimiter=";"), INSTRUMENT)
    assert export.platform == "kobo"
    assert answers(export, "consent") == ["1", "2"]
    assert answers(export, "tasks") == [["1", "3"], None]
    assert answers(export, "wage") == [None, "20"]
    assert export.identifiers["response_id"].tolist() == ["u-1", "u-2"]


def test_kobo_option_columns_alone(tmp_path: Path) -> None:
    header = ["work/Q3/1", "work/Q3/2", "work/Q3/4", "_uuid"]
    rows = [["True", "False", "False", "u-1"], ["False", "False", "True", "u-2"]]
    export = read_export(write(tmp_path, [header, *rows]), INSTRUMENT)
    assert answers(export, "tasks") == [["1"], ["4"]]


def test_redcap_checkboxes_form_status_and_repeating_rows(tmp_path: Path) -> None:
    header = ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "consent", "tasks___1", "tasks___2",
              "tasks___3", "tasks___4", "survey_complete", "visit_date", "visits_complete"]
    rows = [["1", "", "", "1", "1", "0", "1", "0", "2", "", ""],
            ["1", "visits", "1", "", "", "", "", "", "", "2025-03-02", "2"],
            ["2", "", "", "1", "0", "0", "0", "0", "0", "", ""]]
    export = read_export(write(tmp_path, [header, *rows]), INSTRUMENT)
    assert export.platform == "redcap" and export.rows == 2
    assert [export.source_row(i) for i in range(export.rows)] == [2, 4]
    assert answers(export, "tasks") == [["1", "3"], None]
    assert export.metadata["finished"].tolist() == ["1", "0"]
    assert any("repeating instruments (visits)" in note for note in export.notes)


def test_redcap_events_are_separate_responses(tmp_path: Path) -> None:
    header = ["record_id", "redcap_event_name", "consent", "survey_complete"]
    rows = [["7", "wave_1_arm_1", "1", "2"], ["7", "wave_2_arm_1", "2", "2"]]
    export = read_export(write(tmp_path, [header, *rows]), INSTRUMENT)
    assert export.identifiers["response_id"].tolist() == ["7|wave_1_arm_1", "7|wave_2_arm_1"]


def test_a_table_with_a_column_mapping(tmp_path: Path) -> None:
    header = ["respondent_id", "completed", "agree", "Which tasks do you do?", "wage"]
    rows = [["a1", "yes", "1", "1;4", "19,75"], ["a2", "no", "2", "2", ""]]
    export = read_export(write(tmp_path, [header, *rows], delimiter=";"), INSTRUMENT)
    assert export.platform == "csv"
    assert answers(export, "consent") == ["1", "2"]  # by its csv alias
    assert answers(export, "tasks") == [["1", "4"], ["2"]]  # by its wording
    assert answers(export, "wage") == ["19.75", None]
    assert export.metadata["finished"].tolist() == ["1", "0"]


def test_the_platform_can_be_named(tmp_path: Path) -> None:
    header = ["Timestamp", "Q1"]
    path = write(tmp_path, [header, ["not a date", "1"]])
    assert read_export(path, INSTRUMENT, platform="csv").platform == "csv"
    assert read_export(path, INSTRUMENT, platform="googleforms").platform == "googleforms"
