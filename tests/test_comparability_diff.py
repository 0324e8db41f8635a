"""When a question is asked differently in two waves and no `comparability:` statement says whether
the figures still compare, the stop (`consult run`, `consult status`) says what changed: the
wording's removed and added words, the answers added, removed or reworded, and plainly when only
punctuation, capitals or spaces changed. Hand-built questionnaires of two waves and one indicator."""

from __future__ import annotations

import shutil
from copy import deepcopy
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from conftest import REPO
from pipeline.config import Paths
from pipeline.deidentify import Derivations, derived_path, load_derivations
from pipeline.indicators import IndicatorError, load_catalogue, unstated_comparability
from pipeline.instrument import Instrument

WORDING = "How often in the past 12 months did a colleague dismiss your lived experience at work?"
AGREE = [
    {"code": 1, "label": {"en": "Never", "fr": "Jamais"}},
    {"code": 2, "label": {"en": "Sometimes", "fr": "Parfois"}},
    {"code": 3, "label": {"en": "Often", "fr": "Souvent"}},
    {"code": 9, "label": {"en": "Prefer not to answer", "fr": "Je préfère ne pas répondre"}, "missing": True},
]


def questionnaire(wave: int, wording: str = WORDING, choices: list[dict] | None = None,
                  french: str = "Au cours des 12 derniers mois, à quelle fréquence ...?") -> dict[str, Any]:
    return {
        "wave": wave,
        "title": {"en": f"Consultation {wave}", "fr": f"Consultation {wave}"},
        "languages": ["en", "fr"],
        "collection_window": {"start": f"{wave}-03-01", "end": f"{wave}-05-30"},
        "sections": [{"id": "work", "title": {"en": "Work", "fr": "Travail"}, "questions": [
            {"id": "eligible_role", "type": "single", "label": {"en": "Your role?", "fr": "Votre rôle?"},
             "choices": [{"code": 1, "label": {"en": "Paid", "fr": "Rémunéré"}}]},
            {"id": "dismissed", "type": "likert", "label": {"en": wording, "fr": french},
             "choices": deepcopy(AGREE) if choices is None else choices},
        ]}],
    }


CATALOGUE = {
    "default_breakdowns": [], "default_min_n": 10, "breakdowns": {}, "scores": {},
    "indicators": [{
        "id": "DISM-01", "title": "Lived experience dismissed", "domain": "disrespect", "kind": "proportion",
        "definition": "Share dismissed often.", "population": {"question": "eligible_role", "in": [1]},
        "population_text": "Paid peer supporters", "questions": ["dismissed"],
        "condition": {"question": "dismissed", "in": [3]},
    }],
}
NO_DERIVED = Derivations([], {})
COSMETIC = "only punctuation/capitals/spaces changed: most likely `comparable`"


def stop(tmp_path: Path, later: dict[str, Any]) -> str:
    """The message a run would stop with, the 2024 questionnaire against `later` (2025)."""
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE), encoding="utf-8")
    instruments = {2024: Instrument.model_validate(questionnaire(2024)), 2025: Instrument.model_validate(later)}
    message = unstated_comparability(load_catalogue(path), instruments, NO_DERIVED)
    assert message is not None and "DISM-01: dismissed asked differently in 2024 and 2025" in message
    return message


def changes(message: str) -> str:
    """The part of the message that says what changed."""
    return message.split("What changed", 1)[1]


def test_a_reworded_question_shows_the_removed_and_added_words(tmp_path: Path) -> None:
    message = stop(tmp_path, questionnaire(2025, WORDING.replace("past 12 months", "last year")))
    assert "dismissed (2024 -> 2025):" in message
    assert "in the [-past 12 months-] {+last year+} did a colleague" in changes(message)
    assert COSMETIC not in message  # a real rewording is not called a cosmetic one
    assert "answer" not in changes(message).split(":", 1)[1]  # the answers did not change


def test_a_long_wording_is_shortened_around_the_change(tmp_path: Path) -> None:
    long = "Thinking about " + " ".join(f"word{i}" for i in range(40)) + " how often were you dismissed?"
    before = questionnaire(2024, long)["sections"][0]["questions"][1]["label"]["en"]
    later = questionnaire(2025, long.replace("word20", "phrase20"))
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE), encoding="utf-8")
    instruments = {2024: Instrument.model_validate(questionnaire(2024, before)), 2025: Instrument.model_validate(later)}
    message = unstated_comparability(load_catalogue(path), instruments, NO_DERIVED)
    line = next(line for line in message.splitlines() if line.strip().startswith("wording:"))
    assert line.strip() == "wording: ... word14 word15 word16 word17 word18 word19 [-word20-] {+phrase20+} " \
                           "word21 word22 word23 word24 word25 word26 ..."


def test_answers_added_removed_and_reworded_are_named_with_their_codes(tmp_path: Path) -> None:
    choices = deepcopy(AGREE)
    choices[1]["label"]["en"] = "Once or twice"  # 2 reworded
    del choices[2]  # 3 removed
    choices.insert(2, {"code": 4, "label": {"en": "Every week", "fr": "Chaque semaine"}})  # 4 added
    said = changes(stop(tmp_path, questionnaire(2025, choices=choices)))
    assert 'answer 2 reworded: "Sometimes" -> "Once or twice"' in said
    assert 'answer 3 removed: "Often"' in said
    assert 'answer 4 added: "Every week"' in said
    assert "wording" not in said.split("\n", 1)[1]  # the question's wording did not change
    assert COSMETIC not in said


def test_an_answer_that_now_means_no_answer_or_scores_differently_is_named(tmp_path: Path) -> None:
    choices = deepcopy(AGREE)
    choices[0]["missing"] = True
    choices[1]["score"] = 2.0
    said = changes(stop(tmp_path, questionnaire(2025, choices=choices)))
    assert 'answer 1 "Never" now means "no answer" (missing)' in said
    assert 'answer 2 "Sometimes" points: none -> 2' in said


@pytest.mark.parametrize("wording, choice_label", [
    (WORDING.replace("past 12 months", "past 12 months,"), None),  # a comma added
    (WORDING.replace("How often", "how often").replace("lived experience", "Lived Experience"), None),
    (WORDING.replace(" in the", "  in  the"), None),  # spaces
    (WORDING, "Prefer not to answer."),  # an answer's full stop
])
def test_a_change_of_punctuation_capitals_or_spaces_only_is_called_that(
        tmp_path: Path, wording: str, choice_label: str | None) -> None:
    choices = deepcopy(AGREE)
    if choice_label:
        choices[3]["label"]["en"] = choice_label
    said = changes(stop(tmp_path, questionnaire(2025, wording, choices)))
    assert COSMETIC in said
    assert "most likely `comparable`" in said


def test_a_spelling_fix_is_shown_but_not_called_cosmetic(tmp_path: Path) -> None:
    """Whether a fixed spelling compares is the analyst's statement: shown at a glance, not judged."""
    said = changes(stop(tmp_path, questionnaire(2025, WORDING.replace("colleague", "collegue"))))
    assert "[-colleague-] {+collegue+}" in said
    assert COSMETIC not in said


def test_a_change_of_french_only_does_not_stop(tmp_path: Path) -> None:
    """Only the English wording and answers are compared: a French correction asks for no statement."""
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE), encoding="utf-8")
    instruments = {2024: Instrument.model_validate(questionnaire(2024)),
                   2025: Instrument.model_validate(questionnaire(2025, french="Tout autre libellé"))}
    assert unstated_comparability(load_catalogue(path), instruments, NO_DERIVED) is None


def test_an_item_of_a_score_added_is_named_as_one(tmp_path: Path) -> None:
    catalogue = deepcopy(CATALOGUE)
    catalogue["scores"] = {"dismissal": {"title": "Dismissal", "definition": "Mean of items.",
                                         "items": ["dismissed", "ignored"], "item_max": 3, "min_items": 1}}
    catalogue["indicators"][0].update(kind="mean", questions=[], value="dismissal", condition=None)
    del catalogue["indicators"][0]["condition"]
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(catalogue), encoding="utf-8")
    later = questionnaire(2025)
    later["sections"][0]["questions"].append(
        {"id": "ignored", "type": "likert", "label": {"en": "Ignored?", "fr": "Ignoré?"}, "choices": deepcopy(AGREE)})
    instruments = {2024: Instrument.model_validate(questionnaire(2024)), 2025: Instrument.model_validate(later)}
    message = unstated_comparability(load_catalogue(path), instruments, NO_DERIVED)
    assert "ignored (2024 -> 2025, an item of dismissal):\n    added in 2025 (not asked in 2024)" in message


def test_a_derived_answer_names_the_question_it_is_worked_out_from(tmp_path: Path) -> None:
    """below_living_wage (surveys/derived.yaml) changes with its region question's answers."""
    derivations = load_derivations(derived_path(REPO / "surveys"))
    definition = derivations.definitions[0]
    value, key = definition.compare.value, definition.compare.key

    def wave(number: int, region: str) -> Instrument:
        asked = questionnaire(number)
        asked["sections"][0]["questions"] += [
            {"id": value, "type": "numeric", "label": {"en": "Hourly wage?", "fr": "Salaire horaire?"}},
            {"id": key, "type": "single", "label": {"en": "Region?", "fr": "Région?"},
             "choices": [{"code": 1, "label": {"en": region, "fr": region}}]},
        ]
        return Instrument.model_validate(asked)

    catalogue = deepcopy(CATALOGUE)
    catalogue["indicators"][0].update(questions=[definition.id], condition={"question": definition.id, "in": [1]})
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(catalogue), encoding="utf-8")
    message = unstated_comparability(load_catalogue(path), {2024: wave(2024, "Toronto"), 2025: wave(2025, "GTA")},
                                     derivations)
    said = changes(message)
    assert f"worked out from {key}, which changed:" in said
    assert 'answer 1 reworded: "Toronto" -> "GTA"' in said


def project(tmp_path: Path, later: dict[str, Any]) -> Paths:
    paths = Paths(tmp_path / "project")
    paths.surveys.mkdir(parents=True)
    shutil.copy(REPO / "surveys" / "derived.yaml", paths.surveys / "derived.yaml")
    shutil.copytree(REPO / "surveys" / "reference", paths.surveys / "reference")
    paths.indicators_file.write_text(yaml.safe_dump(CATALOGUE), encoding="utf-8")
    for number, asked in ((2024, questionnaire(2024)), (2025, later)):
        (paths.surveys / str(number)).mkdir()
        (paths.surveys / str(number) / "instrument.yaml").write_text(yaml.safe_dump(asked, allow_unicode=True),
                                                                      encoding="utf-8")
    return paths


@pytest.mark.parametrize("later, shown", [
    (questionnaire(2025, WORDING.replace("past", "last")), "[-past-] {+last+}"),
    ({**questionnaire(2025), "sections": [{**questionnaire(2025)["sections"][0], "questions": [
        questionnaire(2025)["sections"][0]["questions"][0],
        {**questionnaire(2025)["sections"][0]["questions"][1], "show_if": {"question": "eligible_role", "in": [1]}},
    ]}]}, "who is asked: in 2024 everyone; in 2025 only if eligible_role is 1 (Paid)"),
])
def test_the_run_and_status_say_the_same(tmp_path: Path, later: dict[str, Any], shown: str) -> None:
    from pipeline.load import ensure_schema
    from pipeline.run import _refuse_unstated_comparability
    from pipeline.status import _unstated_comparability

    paths = project(tmp_path, later)
    with duckdb.connect() as con:
        ensure_schema(con)
        with pytest.raises(IndicatorError) as run:
            _refuse_unstated_comparability(con, paths, {2024, 2025})
    said = _unstated_comparability(paths, {"ledger": []}, [], load_derivations(derived_path(paths.surveys)))
    assert str(run.value) == said[2025][0] + "\nNothing was loaded: add the statements, then run `consult run` again."
    assert shown in said[2025][0]


# --- who is asked (show_if) and units ----------------------------------------------------------

PAID_ONLY = {"question": "eligible_role", "in": [1]}


def routed(wave: int, show_if: Any = None, unit: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """A questionnaire whose role question has two answers, its `dismissed` asked of `show_if`
    (everyone when None) and a numeric `hours` question in `unit`."""
    asked = questionnaire(wave, **kwargs)
    role, dismissed = asked["sections"][0]["questions"]
    role["choices"].append({"code": 2, "label": {"en": "Volunteer", "fr": "Bénévole"}})
    if show_if is not None:
        dismissed["show_if"] = show_if
    hours = {"id": "hours", "type": "numeric", "label": {"en": "Hours worked?", "fr": "Heures travaillées?"}}
    if unit is not None:
        hours["unit"] = unit
    asked["sections"][0]["questions"].append(hours)
    return asked


def compare(tmp_path: Path, before: dict[str, Any], after: dict[str, Any], catalogue: dict = CATALOGUE,
            unrecorded: set[int] = frozenset()) -> str | None:
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(catalogue), encoding="utf-8")
    instruments = {2024: Instrument.model_validate(before), 2025: Instrument.model_validate(after)}
    stored_before = {"unrecorded": unrecorded} if unrecorded else {}
    return unstated_comparability(load_catalogue(path), instruments, NO_DERIVED, **stored_before)


def with_hours() -> dict[str, Any]:
    catalogue = deepcopy(CATALOGUE)
    catalogue["indicators"][0]["questions"] = ["dismissed", "hours"]
    return catalogue


@pytest.mark.parametrize("before, after, said", [
    (PAID_ONLY, None, "who is asked: in 2024 only if eligible_role is 1 (Paid); in 2025 everyone"),
    (None, {"question": "eligible_role", "in": [1, 2]},
     "who is asked: in 2024 everyone; in 2025 only if eligible_role is one of 1 (Paid), 2 (Volunteer)"),
    (PAID_ONLY, {"any": [PAID_ONLY, {"question": "hours", "in": [0]}]},
     "who is asked: in 2024 only if eligible_role is 1 (Paid); in 2025 only if at least one of: "
     "(eligible_role is 1 (Paid)); (hours is 0)"),
])
def test_a_changed_show_if_stops_and_says_who_is_asked_in_each_wave(
        tmp_path: Path, before: Any, after: Any, said: str) -> None:
    message = compare(tmp_path, routed(2024, before), routed(2025, after))
    assert message is not None and "DISM-01: dismissed asked differently in 2024 and 2025" in message
    assert f"  dismissed (2024 -> 2025):\n    {said}" in changes(message)
    assert COSMETIC not in message


def test_both_of_two_answers_of_a_multiple_choice_is_not_either(tmp_path: Path) -> None:
    """Conditions of an `all` are not merged: "1 and 2 selected" asks fewer people than "1 or 2"."""
    def role_multiple(asked: dict[str, Any]) -> dict[str, Any]:
        asked["sections"][0]["questions"][0]["type"] = "multiple"
        return asked

    both = {"all": [PAID_ONLY, {"question": "eligible_role", "in": [2]}]}
    message = compare(tmp_path, role_multiple(routed(2024, both)),
                      role_multiple(routed(2025, {"question": "eligible_role", "in": [1, 2]})))
    assert message is not None
    assert ("who is asked: in 2024 only if all of: (eligible_role includes 1 (Paid)); (eligible_role includes 2 "
            "(Volunteer)); in 2025 only if eligible_role includes any of 1 (Paid), 2 (Volunteer)") in message


def sector_routed(wave: int, sector: str) -> dict[str, Any]:
    """`dismissed` asked only of sector 2, whose wording is `sector`; no indicator uses the sector question."""
    asked = routed(wave, {"question": "sector", "in": [2]})
    asked["sections"][0]["questions"].insert(0, {
        "id": "sector", "type": "single", "label": {"en": "Where do you work?", "fr": "Où travaillez-vous?"},
        "choices": [{"code": 1, "label": {"en": "Hospital", "fr": "Hôpital"}},
                    {"code": 2, "label": {"en": sector, "fr": sector}}]})
    return asked


def test_a_show_if_on_an_answer_that_now_means_something_else_asks_other_people(tmp_path: Path) -> None:
    """The same skip logic ("sector is 2") asks other people once answer 2 is reworded, though no
    indicator uses the sector question: the indicators using the routed question need a statement."""
    message = compare(tmp_path, sector_routed(2024, "Community agency"), sector_routed(2025, "Peer-run organization"))
    assert message is not None and "DISM-01: dismissed asked differently in 2024 and 2025" in message
    assert ("who is asked: in 2024 only if sector is 2 (Community agency); in 2025 only if sector is 2 "
            "(Peer-run organization)") in message
    assert COSMETIC not in message
    # a comma or capitals in the answer's wording is the same people
    assert compare(tmp_path, sector_routed(2024, "Community agency"), sector_routed(2025, "Community Agency.")) is None


def test_a_changed_show_if_is_not_cosmetic_even_beside_a_comma(tmp_path: Path) -> None:
    """Other people asked is never "only punctuation", even when the wording's change is."""
    message = compare(tmp_path, routed(2024, PAID_ONLY),
                      routed(2025, wording=WORDING.replace("past 12 months", "past 12 months,")))
    assert message is not None and "who is asked:" in message
    assert COSMETIC not in message


@pytest.mark.parametrize("before, after", [
    ({"question": "eligible_role", "in": [1, 2]}, {"question": "eligible_role", "in": ["2", "1", 2]}),
    (PAID_ONLY, {"all": [PAID_ONLY]}),
    ({"any": [PAID_ONLY, {"question": "hours", "in": [0]}]}, {"any": [{"question": "hours", "in": ["0"]}, PAID_ONLY]}),
    ({"question": "eligible_role", "in": [1, 2]}, {"any": [PAID_ONLY, {"question": "eligible_role", "in": [2]}]}),
    ({"all": [PAID_ONLY, {"question": "hours", "in": [0]}]}, {"all": [{"all": [{"question": "hours", "in": [0]}]},
                                                                      PAID_ONLY]}),
    (yaml.safe_load("{question: eligible_role, in: [2, 1]}"),
     yaml.safe_load("question: eligible_role\nin:\n  - '1'\n  - '2'\n")),
])
def test_a_show_if_written_differently_asks_the_same_people(tmp_path: Path, before: Any, after: Any) -> None:
    """The order of codes, quotes, YAML style, a one-part all/any: the same people are asked."""
    assert compare(tmp_path, routed(2024, before), routed(2025, after)) is None


@pytest.mark.parametrize("before, after, said", [
    ("hours per week", "hours per month", "unit: hours per week -> hours per month"),
    (None, "CAD per hour", "unit: none -> CAD per hour"),
])
def test_a_changed_unit_stops_and_is_described(tmp_path: Path, before: str | None, after: str, said: str) -> None:
    message = compare(tmp_path, routed(2024, unit=before), routed(2025, unit=after), with_hours())
    assert message is not None and "DISM-01: hours asked differently in 2024 and 2025" in message
    assert f"  hours (2024 -> 2025):\n    {said}" in changes(message)
    assert COSMETIC not in message


def test_a_unit_with_other_spaces_is_the_same_unit(tmp_path: Path) -> None:
    assert compare(tmp_path, routed(2024, unit="hours per week"), routed(2025, unit=" hours  per week"),
                   with_hours()) is None


@pytest.mark.parametrize("after", ["Hours per week", "hours per week.", "hours-per week"])
def test_a_unit_differing_only_in_capitals_or_punctuation_reads_as_cosmetic(tmp_path: Path, after: str) -> None:
    """As a wording that changed only there: said so, with `comparable` most likely."""
    message = compare(tmp_path, routed(2024, unit="hours per week"), routed(2025, unit=after), with_hours())
    assert message is not None and f"unit: hours per week -> {after}\n    {COSMETIC}" in changes(message)


def test_waves_stored_before_are_not_compared_with_each_other_on_show_if_nor_unit(tmp_path: Path) -> None:
    """A warehouse made before kept neither: two of its waves are not compared on them (its runs go
    on), a later wave is compared with them, and everything else still is."""
    before, after = routed(2024, PAID_ONLY, unit="hours per week"), routed(2025, unit="hours per month")
    assert compare(tmp_path, before, after, with_hours(), unrecorded={2024, 2025}) is None
    said = changes(compare(tmp_path, before, after, with_hours(), unrecorded={2024}))
    assert "who is asked: in 2024 only if eligible_role is 1 (Paid); in 2025 everyone" in said
    assert "unit: hours per week -> hours per month" in said
    after["sections"][0]["questions"][1]["label"]["en"] = WORDING.replace("past", "last")
    assert "[-past-] {+last+}" in compare(tmp_path, before, after, with_hours(), unrecorded={2024, 2025})


def test_an_older_warehouse_without_the_columns_still_runs(tmp_path: Path) -> None:
    """A warehouse made before the columns existed: read as it is (read-only) and once its schema is
    brought up to date, two of its waves compare neither who is asked nor units; the next run fills
    them in from the questionnaires, and a wave loaded later is compared with them."""
    from pipeline.indicators import question_signatures
    from pipeline.load import (_write_catalogue, ensure_schema, questionnaire_changed, refresh_questionnaire,
                               unrecorded_waves)

    instruments = {2024: Instrument.model_validate(routed(2024, PAID_ONLY, unit="hours per week")),
                   2025: Instrument.model_validate(routed(2025, unit="hours per month"))}
    with duckdb.connect(str(tmp_path / "old.duckdb")) as con:
        ensure_schema(con)
        for instrument in instruments.values():
            _write_catalogue(con, instrument)
        # the warehouse as made before: no such columns, and its schema's fingerprint then
        con.execute("DROP VIEW respondent_columns")
        con.execute("ALTER TABLE concepts DROP COLUMN show_if")
        con.execute("ALTER TABLE concepts DROP COLUMN unit")
        con.execute("DELETE FROM warehouse_meta WHERE key = 'schema_sha256'")

        def same(signatures: dict) -> bool:
            return all(signatures[2024][c] == signatures[2025][c] for c in ("dismissed", "hours"))

        assert unrecorded_waves(con) == {2024, 2025} and same(question_signatures(con))
        ensure_schema(con)  # the first run with this version
        assert unrecorded_waves(con) == {2024, 2025} and same(question_signatures(con))
        for wave, instrument in instruments.items():  # the run fills them in ...
            assert questionnaire_changed(con, instrument, {})
            refresh_questionnaire(con, instrument, {})
            assert not questionnaire_changed(con, instrument, {})
        assert unrecorded_waves(con) == {2024, 2025} and same(question_signatures(con))  # ... still not compared
        later = routed(2026, PAID_ONLY, unit="hours per week")
        _write_catalogue(con, Instrument.model_validate(later))  # a new wave, loaded
        signatures = question_signatures(con)
        assert unrecorded_waves(con) == {2024, 2025}
        assert signatures[2025]["dismissed"] != signatures[2026]["dismissed"]
        assert signatures[2025]["hours"] != signatures[2026]["hours"]


def test_the_stored_questions_give_the_same_message_as_the_questionnaires(tmp_path: Path) -> None:
    """The indicators stage reads the warehouse's copy of the questions; the check before the run
    and `consult status` write the questionnaires in memory: the same message, new columns included."""
    from pipeline.indicators import foreseen_unstated, question_signatures, unstated_message
    from pipeline.load import _write_catalogue, ensure_schema

    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(with_hours()), encoding="utf-8")
    catalogue = load_catalogue(path)
    instruments = {2024: Instrument.model_validate(routed(2024, PAID_ONLY, unit="hours per week")),
                   2025: Instrument.model_validate(routed(2025, unit="hours per month"))}
    unstated, foreseen = foreseen_unstated(catalogue, instruments, NO_DERIVED)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        ensure_schema(con)
        for instrument in instruments.values():
            _write_catalogue(con, instrument)
        stored = question_signatures(con)
    assert unstated_message(unstated, catalogue, stored) == unstated_message(unstated, catalogue, foreseen)
    assert "who is asked:" in unstated_message(unstated, catalogue, stored)
    assert "unit: hours per week -> hours per month" in unstated_message(unstated, catalogue, stored)


def test_the_run_and_status_say_the_same_for_a_warehouse_made_before(tmp_path: Path) -> None:
    """2024 stored before who is asked was kept, 2025 new: compared, and said the same by both."""
    from pipeline.load import ensure_schema, mark_unrecorded
    from pipeline.run import _refuse_unstated_comparability
    from pipeline.status import _unstated_comparability

    paths = project(tmp_path, routed(2025))
    (paths.surveys / "2024" / "instrument.yaml").write_text(yaml.safe_dump(routed(2024, PAID_ONLY)), encoding="utf-8")
    with duckdb.connect() as con:
        ensure_schema(con)
        mark_unrecorded(con, {2024})
        with pytest.raises(IndicatorError) as run:
            _refuse_unstated_comparability(con, paths, {2024, 2025})
    said = _unstated_comparability(paths, {"ledger": [], "unrecorded": {2024}}, [],
                                   load_derivations(derived_path(paths.surveys)))
    assert str(run.value) == said[2025][0] + "\nNothing was loaded: add the statements, then run `consult run` again."
    assert "who is asked: in 2024 only if eligible_role is 1 (Paid); in 2025 everyone" in said[2025][0]
    both = _unstated_comparability(paths, {"ledger": [], "unrecorded": {2024, 2025}}, [],
                                   load_derivations(derived_path(paths.surveys)))
    assert both == {}
