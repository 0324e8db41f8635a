"""De-identifying a whole export: each respondent's own identifiers leave their own free text (even
when others wrote the same words), and the long answer frame keeps every answer under its
respondent's key. Expected values are worked out by hand from the rows below."""

from __future__ import annotations

import pandas as pd
import pytest

from builders import response, write_export
from conftest import REPO
from pipeline.deidentify import Deidentified, deidentify, load_scrubber
from pipeline.ingest import Export, read_export
from pipeline.instrument import load_instrument
from pipeline.validate import LOADED, secret_key, validate

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
SCRUBBER = load_scrubber(REPO / "surveys" / "deidentification.yaml")
SAME_WORDS = "Ask Xyzzy Quux about it"


def exported(tmp_path, rows: list[dict]) -> Export:
    return read_export(write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, rows), INSTRUMENT)


def deidentified(export: Export) -> Deidentified:
    validation = validate(export, INSTRUMENT, secret_key())
    assert (validation.outcome == LOADED).all()  # every row below is a valid response
    return deidentify(export, validation, INSTRUMENT, SCRUBBER)


def texts_by_row(data: Deidentified, concept: str) -> list[tuple[str, int] | None]:
    """Each loaded row's scrubbed answer to `concept` and its findings (None: no answer), in row order."""
    found = data.open_text[data.open_text["concept"] == concept].set_index("respondent_key")
    return [(found.at[key, "text"], int(found.at[key, "placeholders"])) if key in found.index else None
            for key in data.respondents["respondent_key"]]


def test_own_names_leave_only_their_owners_text_when_others_wrote_the_same_words(tmp_path) -> None:
    rows = [
        response(1, {"comments_changes": SAME_WORDS}, RecipientFirstName="Xyzzy", RecipientLastName="Quux",
                 RecipientEmail="xq@mail.test"),
        response(2, {"comments_changes": SAME_WORDS}, RecipientFirstName="Plugh", RecipientEmail="p@mail.test"),
        response(3, {"comments_changes": SAME_WORDS}),
        response(4, {"comments_changes": "ask XYZZY about it"}, RecipientFirstName="Xyzzy", RecipientEmail="x2@mail.test"),
        response(5, {"comments_changes": SAME_WORDS}, RecipientLastName="Quux", RecipientEmail="q@mail.test"),
        response(6, {"comments_changes": "talk to ZÉBULONNE-QÜX soon"}, RecipientFirstName="Zébulonne-Qüx",
                 RecipientEmail="z@mail.test"),
        response(7, {"comments_other": "talk to Zébulonne-Qüx soon"}),
    ]
    data = deidentified(exported(tmp_path, rows))
    # by hand: first and last name side by side become one [NAME] (two findings); nobody else's name
    # is taken from a text, whatever its case or accents
    assert texts_by_row(data, "comments_changes") == [
        ("Ask [NAME] about it", 2),
        (SAME_WORDS, 0),
        (SAME_WORDS, 0),
        ("ask [NAME] about it", 1),
        ("Ask Xyzzy [NAME] about it", 1),
        ("talk to [NAME] soon", 1),
        None,
    ]
    assert texts_by_row(data, "comments_other") == [None] * 6 + [("talk to Zébulonne-Qüx soon", 0)]


def test_a_missing_identifier_scrubs_nothing_whatever_form_it_takes(tmp_path) -> None:
    text = "Our financial manager cut the maintenance budget; Nancy Hernandez agreed."
    rows = [response(1, {"comments_changes": text}), response(2, {"comments_changes": text}, RecipientFirstName="Xyzzy")]
    export = exported(tmp_path, rows)
    # a text column of pandas 3 holds a missing value as NaN (not None): it names nobody
    export.identifiers["first_name"] = pd.Series([None, "Xyzzy"], index=export.identifiers.index, dtype="str")
    export.identifiers["last_name"] = pd.Series([None, None], index=export.identifiers.index, dtype=object)
    assert export.identifiers["first_name"].isna().tolist() == [True, False]
    # "Nancy Hernandez" is a known given name and a surname: the scrubber's own finding
    expected = ("Our financial manager cut the maintenance budget; [NAME] agreed.", 1)
    assert texts_by_row(deidentified(export), "comments_changes") == [expected, expected]


def test_each_answer_is_stored_once_under_its_respondents_key(tmp_path) -> None:
    from pipeline.anonymity import load_privacy_rules

    rows = [response(1, {"tasks_clinical": ["1", "5"], "hourly_wage": "19.25"}),
            response(2, {"tasks_clinical": ["6"], "hourly_wage": "23.74", "paid_sick_days": None}),
            response(3, {"tasks_clinical": ["1", "5"], "hourly_wage": "19.25"})]
    export = exported(tmp_path, rows)
    validation = validate(export, INSTRUMENT, secret_key())
    rules = load_privacy_rules(REPO / "surveys" / "privacy.yaml").microdata.numeric_quasi_identifiers
    data = deidentify(export, validation, INSTRUMENT, SCRUBBER, rules)
    keys = data.respondents["respondent_key"].tolist()
    assert len(set(keys)) == 3 and set(data.answers["respondent_key"]) == set(keys)

    def stored(concept: str) -> list[list[str]]:
        mine = data.answers[data.answers["concept"] == concept]
        return [sorted(mine.loc[mine["respondent_key"] == key, "value"]) for key in keys]

    # one row per code ticked; wages to the nearest 50 cents (19.25 is halfway: to even, 19)
    assert stored("tasks_clinical") == [["1", "5"], ["6"], ["1", "5"]]
    assert stored("hourly_wage") == [["19"], ["23.5"], ["19"]]
    assert stored("paid_sick_days") == [["1"], [], ["1"]]  # no answer, no row
    assert not data.answers.duplicated(["respondent_key", "concept", "value"]).any()
    assert (data.answers["wave"] == 2025).all()


@pytest.mark.parametrize("field", ["RecipientFirstName", "RecipientEmail"])
def test_no_identifier_reaches_the_frames(tmp_path, field: str) -> None:
    value = {"RecipientFirstName": "Xyzzy", "RecipientEmail": "xyzzy@mail.test"}[field]
    data = deidentified(exported(tmp_path, [response(1, {"comments_changes": f"I am {value}"}, **{field: value})]))
    for frame in (data.respondents, data.answers, data.open_text, data.quality_flags):
        assert not frame.astype(str).apply(lambda column: column.str.contains(value, case=False)).any().any()


def test_answers_to_held_concepts_are_kept_apart_under_the_same_keys(tmp_path) -> None:
    # load.write_run writes them to a table of their own, for k-anonymity to replace (key quasi-identifiers)
    rows = [response(1, {"gender": "2", "age_band": "3", "tasks_clinical": ["1", "5"]}),
            response(2, {"gender": "1", "age_band": None, "tasks_clinical": ["6"]})]
    export = exported(tmp_path, rows)
    validation = validate(export, INSTRUMENT, secret_key())
    data = deidentify(export, validation, INSTRUMENT, SCRUBBER, held={"gender", "age_band"})
    keys = data.respondents["respondent_key"].tolist()

    def rows_of(frame: pd.DataFrame, concepts: list[str]) -> list[tuple[int, str, str]]:
        mine = frame[frame["concept"].isin(concepts)]
        return sorted(zip(mine["respondent_key"].map(keys.index), mine["concept"], mine["value"]))

    # by hand, respondents by position: no answer, no row
    assert rows_of(data.held_answers, ["gender", "age_band"]) == [
        (0, "age_band", "3"), (0, "gender", "2"), (1, "gender", "1")]
    assert set(data.held_answers["concept"]) == {"gender", "age_band"}
    assert rows_of(data.answers, ["gender", "age_band"]) == []
    assert rows_of(data.answers, ["tasks_clinical"]) == [
        (0, "tasks_clinical", "1"), (0, "tasks_clinical", "5"), (1, "tasks_clinical", "6")]
    assert (data.held_answers["wave"] == 2025).all()
    assert list(data.held_answers.columns) == list(data.answers.columns)


def test_respondent_keys_are_distinct_positive_and_drawn_again_when_two_are_equal(monkeypatch) -> None:
    import numpy as np

    from pipeline import deidentify as module

    keys = module.new_keys(10_000)
    assert len(keys) == 10_000 and len(set(keys.tolist())) == 10_000 and (keys > 0).all()
    # a source that repeats itself, then gives zero (not a key), before anything new
    draws = iter([np.array([7, 7, 9], dtype=np.uint64) << np.uint64(1), np.array([0], dtype=np.uint64),
                  np.array([5], dtype=np.uint64) << np.uint64(1)])
    monkeypatch.setattr(module.secrets, "token_bytes", lambda size: next(draws)[: size // 8].tobytes())
    assert module.new_keys(3).tolist() == [7, 9, 5]


def test_numbers_are_stored_as_validation_reads_them(tmp_path) -> None:
    # "$21.50" and "21,5" pass validation as 21.5: stored as typed, coarsening crashed on the dollar
    # sign (a traceback, nothing loaded) and the database could not read them as numbers. Wages to
    # the nearest 50 cents (21.5 stays 21.5, 22.30 -> 22.5); hours per week to the nearest hour
    # (37.5 is halfway: to even, 38; "40 " -> 40).
    from pipeline.anonymity import load_privacy_rules

    rows = [response(1, {"hourly_wage": "$21.50", "hours_per_week": "37.5"}),
            response(2, {"hourly_wage": "21,5", "hours_per_week": "40 "}),
            response(3, {"hourly_wage": " $22.30 ", "hours_per_week": "$30"})]
    export = exported(tmp_path, rows)
    validation = validate(export, INSTRUMENT, secret_key())
    assert (validation.outcome == LOADED).all()
    rules = load_privacy_rules(REPO / "surveys" / "privacy.yaml").microdata.numeric_quasi_identifiers
    data = deidentify(export, validation, INSTRUMENT, SCRUBBER, rules)
    keys = data.respondents["respondent_key"].tolist()

    def stored(concept: str) -> list[str]:
        mine = data.answers[data.answers["concept"] == concept].set_index("respondent_key")["value"]
        return [mine[key] for key in keys]

    assert stored("hourly_wage") == ["21.5", "21.5", "22.5"]
    assert stored("hours_per_week") == ["38", "40", "30"]


def test_a_number_written_with_an_underscore_is_not_a_number(tmp_path) -> None:
    # float("2_1") is 21 in Python; nobody types a wage that way on purpose: the row is quarantined.
    export = exported(tmp_path, [response(1, {"hourly_wage": "2_1"})])
    validation = validate(export, INSTRUMENT, secret_key())
    assert validation.outcome.tolist() == ["quarantined"]
    assert [(i.rule, i.concept) for i in validation.issues] == [("not_a_number", "hourly_wage")]


def test_the_employer_a_respondent_named_leaves_their_own_open_answers(tmp_path) -> None:
    """employer_name is `direct` (never stored); written again in a comment, with any case, it is an
    [ORGANIZATION] there (surveys/deidentification.yaml: own_answers), and only in its owner's text."""
    said = "Nobody at sunrise recovery house is paid for training"
    rows = [
        response(1, {"employer_name": "Sunrise Recovery House", "comments_other": said}),
        response(2, {"employer_name": "Maple Peer Co-op", "comments_other": said}),
        response(3, {"comments_changes": "SUNRISE RECOVERY HOUSE pays badly", "employer_name": "Sunrise Recovery House"}),
    ]
    data = deidentified(exported(tmp_path, rows))
    # by hand: no list knows the name and "House" names no organization, so only the row's own answer finds it
    assert texts_by_row(data, "comments_other") == [
        ("Nobody at [ORGANIZATION] is paid for training", 1), (said, 0), None]
    assert texts_by_row(data, "comments_changes") == [None, None, ("[ORGANIZATION] pays badly", 1)]
    assert not data.open_text["text"].str.contains("Maple Peer", case=False).any()


def test_own_names_leave_their_text_with_or_without_their_accents(tmp_path) -> None:
    """The platform's name fields and the answers are typed apart: a name with its accents in one and
    without in the other is still the respondent's own. Names no list knows, in lower case: only the
    row's own identifiers can find them."""
    rows = [
        response(1, {"comments_changes": "ask zebulonne quixbélanger about it"}, RecipientFirstName="Zébulonne",
                 RecipientLastName="Quixbelanger", RecipientEmail="zq@mail.test"),
        response(2, {"comments_changes": "ask zebulonne quixbélanger about it"}),
    ]
    data = deidentified(exported(tmp_path, rows))
    # by hand: first and last name side by side, each found once, become one [NAME]; row 2 names nobody it owns
    assert texts_by_row(data, "comments_changes") == [("ask [NAME] about it", 2),
                                                      ("ask zebulonne quixbélanger about it", 0)]
