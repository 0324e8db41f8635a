"""When who is in scope changes between two waves (the instruments' `inclusion:` rules), every
indicator's change compares two different populations: the run stops before reading an export (and
`consult status` says the same) until the later wave's rules.yaml states `population_change:`, whose
status then applies to every indicator's change across the two waves. Hand-built questionnaires."""

from __future__ import annotations

from copy import deepcopy
import html
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import yaml

from pipeline.deidentify import derived_path, load_derivations
from pipeline.indicators import (IndicatorError, change_rows, comparability_of, comparability_text, load_catalogue,
                                 load_checked_catalogue)
from pipeline.instrument import Instrument
from pipeline.population import describe_inclusion_change, same_population, unstated_population_changes
from test_comparability_diff import CATALOGUE, project, questionnaire

RULES = {"no_consent": {"question": "consent", "in": [1]}, "ineligible": {"question": "eligible_role", "in": [1, 2]}}


def scoped(wave: int, inclusion: dict[str, Any] | None = None, volunteer: str = "Volunteer") -> dict[str, Any]:
    """A questionnaire with a consent question, three roles and the given inclusion rules."""
    asked = questionnaire(wave)
    role = asked["sections"][0]["questions"][0]
    role["choices"] += [{"code": 2, "label": {"en": volunteer, "fr": "Bénévole"}},
                        {"code": 3, "label": {"en": "Volunteer outside Ontario", "fr": "Bénévole hors Ontario"}}]
    asked["sections"][0]["questions"].insert(0, {
        "id": "consent", "type": "single", "label": {"en": "Do you agree?", "fr": "Acceptez-vous?"},
        "choices": [{"code": 1, "label": {"en": "Yes", "fr": "Oui"}}, {"code": 2, "label": {"en": "No", "fr": "Non"}}]})
    asked["inclusion"] = deepcopy(RULES if inclusion is None else inclusion)
    return asked


def waves(before: dict[str, Any], after: dict[str, Any]) -> dict[int, Instrument]:
    return {2024: Instrument.model_validate(before), 2025: Instrument.model_validate(after)}


@pytest.mark.parametrize("inclusion", [
    {"consent_given": {"question": "consent", "in": ["1"]}, "in_scope": {"question": "eligible_role", "in": [2, 1]}},
    {"ineligible": {"question": "eligible_role", "in": [1, 2, 2]}, "no_consent": {"question": "consent", "in": [1]}},
    yaml.safe_load("ineligible:\n  question: eligible_role\n  in:\n    - '2'\n    - '1'\nno_consent: {question: consent, in: [1]}"),
])
def test_rules_renamed_reordered_or_written_otherwise_admit_the_same_people(inclusion: dict[str, Any]) -> None:
    instruments = waves(scoped(2024), scoped(2025, inclusion))
    assert same_population(instruments[2024], instruments[2025])
    assert unstated_population_changes(instruments) == []


def test_a_reworded_admitted_answer_counts_but_not_its_punctuation() -> None:
    relabelled = waves(scoped(2024), scoped(2025, volunteer="Volunteer or paid outside Ontario"))
    assert describe_inclusion_change(relabelled[2024], relabelled[2025]) == [
        'eligible_role: admitted answer 2 now means "Volunteer or paid outside Ontario" (in 2024: "Volunteer")']
    assert same_population(*waves(scoped(2024), scoped(2025, volunteer="volunteer.")).values())


@pytest.mark.parametrize("inclusion, said", [
    ({**RULES, "ineligible": {"question": "eligible_role", "in": [1, 2, 3]}},
     'eligible_role: 2025 also admits answer 3 "Volunteer outside Ontario"'),
    ({**RULES, "ineligible": {"question": "eligible_role", "in": [1]}},
     'eligible_role: 2025 no longer admits answer 2 "Volunteer"'),
    ({"ineligible": RULES["ineligible"]},
     'consent: rule dropped in 2025: 2024 kept only responses answering 1 "Yes"; 2025 keeps responses whatever '
     'their answer'),
])
def test_a_changed_population_stops_the_run_and_status_alike(tmp_path: Path, inclusion: dict, said: str) -> None:
    from pipeline.load import ensure_schema
    from pipeline.run import _refuse_unstated_comparability
    from pipeline.status import _unstated_comparability

    paths = project(tmp_path, scoped(2025, inclusion))
    (paths.surveys / "2024" / "instrument.yaml").write_text(yaml.safe_dump(scoped(2024)), encoding="utf-8")
    with duckdb.connect() as con:
        ensure_schema(con)
        with pytest.raises(IndicatorError) as run:
            _refuse_unstated_comparability(con, paths, {2024, 2025})
    message = str(run.value)
    assert message.startswith("Who is in scope changed between 2024 and 2025")
    assert f"\n  {said}\n" in message
    assert "add to " + str(paths.surveys / "2025" / "rules.yaml") in message
    assert "population_change: {since: 2024, status: not_comparable" in message
    status = _unstated_comparability(paths, {"ledger": []}, [], load_derivations(derived_path(paths.surveys)))
    said_by_status, todo = status[2025]
    assert message == said_by_status + "\nNothing was loaded: add the statements, then run `consult run` again."
    # status's Next line says it in words: the file and the key to add
    assert todo == ("add `population_change:` to surveys/2025/rules.yaml (whether the 2024 and 2025 figures still "
                    "compare, as below)")

    # the statement lets the run go on
    (paths.surveys / "2025" / "rules.yaml").write_text(
        "population_change: {since: 2024, status: comparable_with_caveat, note: Volunteers outside Ontario now in.}\n")
    with duckdb.connect() as con:
        ensure_schema(con)
        _refuse_unstated_comparability(con, paths, {2024, 2025})
    assert _unstated_comparability(paths, {"ledger": []}, [], load_derivations(derived_path(paths.surveys))) == {}


def test_a_statement_about_another_wave_is_refused(tmp_path: Path) -> None:
    """Copied from another wave's rules.yaml, it would speak for the wrong change."""
    from pipeline.instrument import instrument_path, load_instrument
    from pipeline.wave_rules import RulesError

    paths = project(tmp_path, scoped(2025, {"ineligible": RULES["ineligible"]}))
    (paths.surveys / "2024" / "instrument.yaml").write_text(yaml.safe_dump(scoped(2024)), encoding="utf-8")
    rules = paths.surveys / "2025" / "rules.yaml"
    rules.write_text("population_change: {since: 2023, status: comparable, note: Same people.}\n")
    instruments = {w: load_instrument(instrument_path(paths.surveys, w)) for w in (2024, 2025)}
    with pytest.raises(RulesError, match=f"{rules}: population_change: since: 2023, but the wave before 2025 is 2024"):
        unstated_population_changes(instruments)
    rules.write_text("population_change: {since: 2024, status: comparable, note: Same people.}\n")
    assert unstated_population_changes(instruments) == []


def test_waves_loaded_before_the_check_are_not_compared_with_each_other() -> None:
    """A warehouse made before keeps running over the years it published; a new wave is compared."""
    instruments = waves(scoped(2024), scoped(2025, {"ineligible": RULES["ineligible"]}))
    assert unstated_population_changes(instruments, {2024, 2025}) == []
    assert len(unstated_population_changes(instruments, {2024})) == 1


def test_the_warehouse_lists_the_waves_it_held_when_the_check_came_in() -> None:
    from pipeline.load import BEFORE_INCLUSION_KEY, ensure_schema, waves_before_inclusion_check

    with duckdb.connect() as con:
        ensure_schema(con)
        assert waves_before_inclusion_check(con) == set()  # a new warehouse: every wave is compared
        for wave in (2023, 2024):
            con.execute("INSERT INTO load_ledger VALUES (?, 'export.csv', ?, 'qualtrics', true, 'i', 'r', "
                        "TIMESTAMP '2025-06-01 00:00:00', 0, 0, 0, 0, 0)", [f"f{wave}", wave])
        assert waves_before_inclusion_check(con) == set()  # loaded since: compared
        # a warehouse made before: the key is not there until its schema is brought up to date
        con.execute("DELETE FROM warehouse_meta WHERE key IN (?, 'schema_sha256')", [BEFORE_INCLUSION_KEY])
        assert waves_before_inclusion_check(con) == {2023, 2024}
        ensure_schema(con)
        assert waves_before_inclusion_check(con) == {2023, 2024}


def catalogue_with(tmp_path: Path, statement: str | None, question_statement: dict | None = None):
    """The test catalogue with the 2025 wave's population_change (`statement`, YAML) and the
    indicator's own comparability statement for 2024-2025."""
    catalogue = deepcopy(CATALOGUE)
    if question_statement:
        catalogue["indicators"][0]["comparability"] = [question_statement]
    paths = project(tmp_path, scoped(2025, {"ineligible": RULES["ineligible"]}))
    paths.indicators_file.write_text(yaml.safe_dump(catalogue), encoding="utf-8")
    (paths.surveys / "2024" / "instrument.yaml").write_text(yaml.safe_dump(scoped(2024)), encoding="utf-8")
    if statement:
        (paths.surveys / "2025" / "rules.yaml").write_text(f"population_change: {statement}\n")
    return load_checked_catalogue(paths.indicators_file, paths.surveys)


def test_not_comparable_populations_break_every_trend_across_them(tmp_path: Path) -> None:
    catalogue = catalogue_with(tmp_path, "{since: 2024, status: not_comparable, note: Volunteers now in scope.}")
    indicator = catalogue.indicators[0]
    # even a question asked differently needs no statement of its own: nothing compares across
    verdict = comparability_of(indicator, catalogue, 2024, 2025, {2024: {"dismissed": 1}, 2025: {"dismissed": 2}})
    assert (verdict.status, verdict.note) == ("not_comparable", "Volunteers now in scope.")
    assert comparability_of(indicator, catalogue, 2023, 2025, {}).status == "not_comparable"  # a wave skipped
    assert comparability_of(indicator, catalogue, 2025, 2026, {}).status == "comparable"  # after it
    estimates = pd.DataFrame([
        dict(indicator_id="DISM-01", wave=w, breakdown="all", group_code="all", group_label="All", kind="proportion",
             n=100, count=c, estimate=c / 100, sd=None, suppressed=False) for w, c in ((2024, 20), (2025, 40))])
    change = change_rows(estimates, catalogue, {}).iloc[0]
    assert (change["comparability"], change["statement"]) == ("not_comparable", "not comparable")
    assert change["comparability_note"] == "Volunteers now in scope." and pd.isna(change["change"])


def test_the_methods_page_says_it_where_an_indicator_spans_the_change(tmp_path: Path) -> None:
    catalogue = catalogue_with(tmp_path, "{since: 2024, status: comparable, note: 'Same people, new rule names.'}")
    indicator, populations = catalogue.indicators[0], catalogue.population_changes
    assert comparability_text(indicator, populations, [2024, 2025]) == (
        "2024 to 2025: comparable (who is in scope changed). Same people, new rule names.")
    assert comparability_text(indicator, populations, [2025]) == ""  # no figure before it


def test_a_comparable_population_adds_its_note_and_still_asks_about_changed_questions(tmp_path: Path) -> None:
    catalogue = catalogue_with(tmp_path, "{since: 2024, status: comparable_with_caveat, note: Volunteers in.}")
    indicator = catalogue.indicators[0]
    verdict = comparability_of(indicator, catalogue, 2024, 2025, {})
    assert (verdict.status, verdict.note) == ("comparable_with_caveat", "Volunteers in.")
    assert comparability_of(indicator, catalogue, 2024, 2025, {2024: {"dismissed": 1}, 2025: {"dismissed": 2}}) is None

    own = {"waves": [2024, 2025], "status": "comparable_with_caveat", "note": "Reworded."}
    catalogue = catalogue_with(tmp_path / "own", "{since: 2024, status: comparable, note: Same people.}", own)
    verdict = comparability_of(catalogue.indicators[0], catalogue, 2024, 2025, {})
    assert (verdict.status, verdict.note) == ("comparable_with_caveat", "Reworded. Same people.")


def test_a_statement_needs_a_note_and_an_earlier_wave(tmp_path: Path) -> None:
    from pipeline.wave_rules import RulesError

    with pytest.raises(RulesError, match="population_change needs a note"):
        catalogue_with(tmp_path, "{since: 2024, status: comparable, note: ' '}")
    with pytest.raises(RulesError, match="since: 2025, but the wave before 2025 is 2024"):
        catalogue_with(tmp_path / "later", "{since: 2025, status: comparable, note: Same.}")


def test_the_catalogue_file_cannot_state_population_changes(tmp_path: Path) -> None:
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump({**CATALOGUE, "population_changes": {2025: {
        "since": 2024, "status": "comparable", "note": "x"}}}), encoding="utf-8")
    with pytest.raises(IndicatorError, match="population_changes is not written here"):
        load_catalogue(path)


def test_the_french_pages_show_the_french_note_and_the_english_pages_the_english(
        loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wave's population_change note is shown beside every change across it: the headline, the
    data table's caveat and the methods page's "Across years" line, each in its page's language."""
    from pipeline import charts
    from pipeline.run import run_load
    from pipeline.translations import missing_french

    english, french = "Volunteers outside Ontario now count.", "Les bénévoles hors de l'Ontario comptent maintenant."
    rules = loaded.surveys / "2025" / "rules.yaml"
    kept = rules.read_text(encoding="utf-8")
    rules.write_text(kept + "\npopulation_change: {since: 2024, status: comparable_with_caveat, "
                     f'note: "{english}", note_fr: "{french}"}}\n', encoding="utf-8")
    run_load(loaded)  # the statement is new: the changes are computed again with its note
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(loaded.warehouse))
    monkeypatch.setenv("CONSULT_HOME", str(loaded.root))
    for lang, shown, not_shown in (("en", english, french), ("fr", french, english)):
        monkeypatch.setenv("CONSULT_LANG", lang)
        for text in (charts.headline("PREC-01"), charts.data_table("PREC-01"), charts.definition_md("PREC-01")):
            assert shown in html.unescape(text) and not_shown not in html.unescape(text), lang
    monkeypatch.setenv("CONSULT_LANG", "fr")
    assert "2024 à 2025 : comparable avec prudence (la population visée a changé). " + french in (
        html.unescape(charts.definition_md("PREC-01")))

    # without its French, the French report stops and names the file and the key (as for any missing French)
    rules.write_text(kept + "\npopulation_change: {since: 2024, status: comparable_with_caveat, "
                     f'note: "{english}"}}\n', encoding="utf-8")
    assert missing_french(loaded.indicators_file, loaded.surveys) == [
        f"{rules}: population_change has no French note: add note_fr: beside its note ({english!r})"]
