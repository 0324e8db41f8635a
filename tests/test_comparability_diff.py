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


def test_the_run_and_status_say_the_same(tmp_path: Path) -> None:
    from pipeline.load import ensure_schema
    from pipeline.run import _refuse_unstated_comparability
    from pipeline.status import _unstated_comparability

    paths = project(tmp_path, questionnaire(2025, WORDING.replace("past", "last")))
    with duckdb.connect() as con:
        ensure_schema(con)
        with pytest.raises(IndicatorError) as run:
            _refuse_unstated_comparability(con, paths, {2024, 2025})
    said = _unstated_comparability(paths, {"ledger": []}, [], load_derivations(derived_path(paths.surveys)))
    assert str(run.value) == said[2025] + "\nNothing was loaded: add the statements, then run `consult run` again."
    assert "[-past-] {+last+}" in said[2025]
