"""Derived answers (surveys/derived.yaml): below the living wage, worked out at de-identification
from the wage and the living-wage area as answered, before rounding and k-anonymity.

Expected figures are worked out here by hand from the Ontario Living Wage Network rates (the 2024
rates for the 2025 wave, as surveys/reference/living_wage.yaml says: GTA 26.00, Ottawa 22.80,
North 20.30), never from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from builders import response, write_export
from builders import warehouse_rows as query
from conftest import REPO, make_project
from pipeline.config import Paths
from pipeline.deidentify import DerivationError, derive, derived_path, load_derivations
from pipeline.indicators import IndicatorError, load_checked_catalogue
from pipeline.instrument import instrument_path, load_instrument
from pipeline.run import run_load

PNTA = '          - {code: 99, label: {en: "Prefer not to answer", fr: "Je préfère ne pas répondre"}, missing: true}\n'
LAST_AREA = '          - {code: 10, label: {en: "London, Elgin, Oxford", fr: "London, Elgin, Oxford"}}\n'


def with_prefer_not_to_answer_area(paths: Paths) -> None:
    """The project's 2025 questionnaire, with "Prefer not to answer" added to the living-wage area."""
    path = instrument_path(paths.surveys, 2025)
    text = path.read_text(encoding="utf-8")
    assert text.count(LAST_AREA) == 1
    path.write_text(text.replace(LAST_AREA, LAST_AREA + PNTA), encoding="utf-8")


def paid(n: int, start: int, **answers) -> list[dict]:
    return [response(start + i, {"eligible_role": "1", **answers}) for i in range(n)]


# wave 2025 is compared with the 2024 rates: GTA (1) 26.00, Ottawa (3) 22.80, North (8) 20.30
PEOPLE = (
    paid(6, 1, lw_region="1", hourly_wage="26.00")  # exactly the living wage: not below
    + paid(6, 11, lw_region="1", hourly_wage="25.80")  # below; stored rounded to 26, which is not
    + paid(5, 21, lw_region="1", hourly_wage="26.20")  # above; stored rounded to 26 as well
    + paid(5, 31, lw_region="3", oh_region="3", hourly_wage="22.79")  # below
    + paid(2, 41, lw_region="8", oh_region="1", hourly_wage="20.00")  # below, in an area too small to keep
    + paid(1, 51, lw_region="8", oh_region="1", hourly_wage="20.50")  # above, same small area
    + paid(3, 61, lw_region="1", hourly_wage=None)  # no wage given: not in n
    + paid(2, 71, lw_region="1", hourly_wage="-99")  # Qualtrics "seen but unanswered": not in n
    + paid(3, 81, lw_region=None, hourly_wage="15")  # no area: not in n
    + paid(2, 91, lw_region="99", hourly_wage="15")  # area "Prefer not to answer": not in n
    + [response(101 + i, {"eligible_role": "2", "lw_region": "1", "hourly_wage": None}) for i in range(3)]  # volunteers
)
N = 6 + 6 + 5 + 5 + 2 + 1
BELOW = 6 + 5 + 2


@pytest.fixture(scope="module")
def run_2025(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """One run of the whole pipeline on PEOPLE (read only by the tests below)."""
    paths = make_project(tmp_path_factory.mktemp("derived") / "project")
    with_prefer_not_to_answer_area(paths)
    instrument = load_instrument(instrument_path(paths.surveys, 2025))
    write_export(paths.raw / "2025" / "export.csv", instrument, PEOPLE)
    with pytest.MonkeyPatch.context() as patch:  # keyed hashes: the session's secret, never the user's
        patch.setenv("CONSULT_SECRET_FILE", str(tmp_path_factory.getbasetemp() / "secret.key"))
        summary = run_load(paths)
    assert summary.totals()["loaded"] == len(PEOPLE)  # every edge case reached the warehouse
    return paths


def test_prec03_counts_the_wage_and_area_as_answered_through_the_whole_run(run_2025: Paths) -> None:
    [(n, count)] = query(run_2025, "SELECT n, count FROM indicator_estimates "
                                   "WHERE indicator_id = 'PREC-03' AND wave = 2025 AND breakdown = 'all'")
    assert (n, count) == (N, BELOW)


def test_the_comparison_survives_rounding_and_k_anonymity(run_2025: Paths) -> None:
    stored_wages = {v for (v,) in query(run_2025, "SELECT value FROM answers WHERE concept = 'hourly_wage'")}
    assert "25.8" not in stored_wages and "26" in stored_wages  # 25.80 was stored as 26: not below any more
    # The three North respondents are too few to keep their area: it was merged or removed ...
    assert query(run_2025, "SELECT count(*) FROM answers WHERE concept = 'lw_region' AND value = '8'") == [(0,)]
    [(generalised, suppressed)] = query(run_2025, "SELECT cells_generalised, cells_suppressed FROM respondent_columns "
                                                  "WHERE wave = 2025 AND concept = 'lw_region'")
    assert generalised + suppressed >= 3
    # ... yet each of them keeps the derived answer worked out from the area as answered (they are
    # the ones whose wages are stored as 20 and 20.5)
    assert query(run_2025, """
        SELECT w.value, d.value, count(*) FROM answers d JOIN answers w ON w.respondent_key = d.respondent_key
        WHERE d.concept = 'below_living_wage' AND w.concept = 'hourly_wage' AND w.value IN ('20', '20.5')
        GROUP BY ALL ORDER BY ALL""") == [("20", "1", 2), ("20.5", "2", 1)]


def test_the_derived_answer_is_a_sensitive_column_of_the_warehouse(run_2025: Paths) -> None:
    [row] = query(run_2025, "SELECT section, type, disclosure, stored, k_anonymity_key, treatment "
                            "FROM respondent_columns WHERE wave = 2025 AND concept = 'below_living_wage'")
    section, kind, disclosure, stored, key, treatment = row
    assert (section, kind, disclosure, stored, key) == ("derived", "single", "sensitive", True, False)
    assert treatment.startswith("sensitive: l-diversity")
    assert query(run_2025, "SELECT reads, reference_year FROM derived_concepts WHERE wave = 2025") == [
        ("hourly_wage, lw_region", 2024)]


def test_the_methods_say_which_years_rates_each_wave_is_compared_with(run_2025: Paths) -> None:
    [(rule,)] = query(run_2025, "SELECT population_rule FROM indicator_catalogue WHERE indicator_id = 'PREC-03'")
    assert "below_living_wage is worked out before storage from hourly_wage and lw_region as answered" in rule
    assert "Ontario Living Wage Network" in rule and "2024 rates for the 2025 wave" in rule


# --- the evaluator on its own ---------------------------------------------------------------

INSTRUMENT_2025 = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")


def write_definitions(folder: Path, entry: str, reference: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rates.yaml").write_text(reference or (
        "source: Test rates\nrates:\n  2022: {1: 10.0, 2: 20.0, 3: 30.0, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1}\n"
        "  2024: {1: 11.0, 2: 21.0, 3: 31.0, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1}\n"
        "rate_year_for_wave:\n  2025: {year: 2024}\n"), encoding="utf-8")
    path = folder / "derived.yaml"
    path.write_text("derived:\n" + entry, encoding="utf-8")
    return path


ENTRY = """  - id: under_rate
    label: {en: Under the rate, fr: Sous le taux}
    disclosure: sensitive
    compare: {value: hourly_wage, key: lw_region, reference: rates.yaml}
    below: {code: 1, label: {en: Below, fr: Sous}}
    at_least: {code: 2, label: {en: At or above, fr: Au taux ou plus}}
    unknown: UNKNOWN
"""


def answers(**columns: list) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})


def test_unknown_can_be_stored_as_a_no_answer_code(tmp_path: Path) -> None:
    unknown = "{code: 9, label: {en: Not known, fr: Inconnu}, missing: true}"
    definitions = load_derivations(write_definitions(tmp_path, ENTRY.replace("UNKNOWN", unknown)))
    frame = answers(hourly_wage=["10.99", "11", "$11.5", None, "12", "40"],
                    lw_region=["1", "1", "1", "1", None, "3"])
    [(concept, codes)] = derive(frame, INSTRUMENT_2025, definitions)
    assert list(codes) == ["1", "2", "2", "9", "9", "2"]
    assert (concept.question.id, concept.reference_year, concept.reads) == ("under_rate", 2024, ("hourly_wage", "lw_region"))
    assert [(c.code, c.missing) for c in concept.question.choices] == [("1", False), ("2", False), ("9", True)]


def test_a_wave_without_a_rate_year_stops_rather_than_taking_older_rates(tmp_path: Path) -> None:
    # The runbook and `consult wave new` say a new wave cannot load until its rate year is set.
    rates = "source: Test rates\nrates:\n  2024: {1: 10.0}\nrate_year_for_wave:\n  2024: {year: 2024}\n"
    definitions = load_derivations(write_definitions(tmp_path, ENTRY.replace("UNKNOWN", "no_answer"), rates))
    with pytest.raises(DerivationError, match=r"rates\.yaml: no rate year is set for wave 2025\. .*latest there: 2024"
                                              r".*`2025: \{year: YEAR\}` under `rate_year_for_wave:`"):
        derive(answers(hourly_wage=["10"], lw_region=["1"]), INSTRUMENT_2025, definitions)


def test_an_area_without_a_rate_stops_the_run_rather_than_leaving_people_out(tmp_path: Path) -> None:
    rates = "source: Test rates\nrates:\n  2024: {1: 10.0, 2: 20.0}\nrate_year_for_wave:\n  2025: {year: 2024}\n"
    definitions = load_derivations(write_definitions(tmp_path, ENTRY.replace("UNKNOWN", "no_answer"), rates))
    with pytest.raises(DerivationError, match=r"the 2024 rates \(used for wave 2025\) have no rate for lw_region "
                                              r"answer\(s\) 3 \(Ottawa\), 4 \(East \(outside Ottawa\)\), 5 .*, 10 \(London, Elgin, "
                                              r"Oxford\); add them"):
        # each area by its name too, as surveys/2025/instrument.yaml words it: rates are published by name
        derive(answers(hourly_wage=["10"], lw_region=["1"]), INSTRUMENT_2025, definitions)


@pytest.mark.parametrize("broken, where", [
    (ENTRY.replace("UNKNOWN", "no_answer").replace("disclosure: sensitive", "disclosure: quasi"), "derived[0] (id under_rate).disclosure"),
    (ENTRY.replace("UNKNOWN", "no_answer").replace("compare:", "compair:"), "derived[0] (id under_rate).compair"),
    (ENTRY.replace("UNKNOWN", "{code: 9, label: {en: Not known, fr: Inconnu}}"), "derived[0] (id under_rate)"),
])
def test_a_broken_definition_names_the_file_and_the_field(tmp_path: Path, broken: str, where: str) -> None:
    path = write_definitions(tmp_path, broken)
    with pytest.raises(DerivationError) as error:
        load_derivations(path)
    assert str(path) in str(error.value) and where in str(error.value)


def test_a_derived_id_that_a_questionnaire_uses_is_an_error(tmp_path: Path) -> None:
    path = write_definitions(tmp_path, ENTRY.replace("UNKNOWN", "no_answer").replace("id: under_rate", "id: oh_region"))
    with pytest.raises(DerivationError, match="derived answer 'oh_region' is also a question of"):
        derive(answers(hourly_wage=["10"], lw_region=["1"]), INSTRUMENT_2025, load_derivations(path))


def test_the_indicator_catalogue_knows_derived_answers_only_from_derived_yaml(tmp_path: Path) -> None:
    surveys = tmp_path / "surveys"
    for wave in (2023, 2024, 2025):
        (surveys / str(wave)).mkdir(parents=True)
        (surveys / str(wave) / "instrument.yaml").write_bytes((REPO / "surveys" / str(wave) / "instrument.yaml").read_bytes())
    (surveys / "reference").mkdir()
    (surveys / "reference" / "living_wage.yaml").write_bytes((REPO / "surveys" / "reference" / "living_wage.yaml").read_bytes())
    derived = yaml.safe_load(derived_path(REPO / "surveys").read_text(encoding="utf-8"))
    derived["derived"][0]["id"] = "paid_below_living_wage"  # renamed: PREC-03 now names an unknown concept
    derived_path(surveys).write_text(yaml.safe_dump(derived), encoding="utf-8")
    with pytest.raises(IndicatorError, match="PREC-03: no such concept 'below_living_wage'"):
        load_checked_catalogue(REPO / "surveys" / "indicators.yaml", surveys)
