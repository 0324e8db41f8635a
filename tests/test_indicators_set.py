"""Every indicator of surveys/indicators.yaml on hand-built data (the rest are in test_indicators.py).

Expected figures are worked out here from the plain-language definitions and the answer codes of
surveys/2025/instrument.yaml, never from the code under test; intervals come from statsmodels and
scipy through the helpers of test_indicators.py.
"""

from __future__ import annotations

import pytest
import yaml

from pipeline.disclosure import COMPLEMENTARY, SMALL_CELL, DisclosureRules
from pipeline.indicators import IndicatorError, compute, load_catalogue
from test_indicators import (
    EPI_ALL_1,
    EPI_EIGHT,
    EPI_MAX,
    EPI_MIXED,
    INDICATORS,
    RULES,
    assert_mean,
    assert_proportion,
    cells,
    groups,
    make_warehouse,
    paid,
    run,
    times,
    volunteer,
)

# Indicators whose figures are tested in test_indicators.py (hand-built data there too).
TESTED_IN_TEST_INDICATORS = {"PREC-01", "PREC-02", "PREC-03", "PREC-04", "PREC-05", "DISR-01", "DISR-02",
                             "DISR-05", "DRIFT-01", "DRIFT-04", "RES-01", "WELL-01", "WELL-02"}

# One question, one answer set counted as yes. Written from each indicator's plain-language
# definition and the questionnaire's codes: id, question, counted, answered but not counted,
# answers that are no answer (prefer not to answer, don't know, does not apply), paid roles only.
SINGLE_QUESTION = [
    ("PREC-06", "contract_type", [3, 4], [1, 2, 5, 6], [], True),  # fixed-term or casual
    ("PREC-10", "health_benefits", [2], [1], [3], True),  # no benefits; don't know left out
    ("DISR-03", "valued_administrators", [1, 2], [3, 4, 5], [6], False),  # (strongly) disagree
    ("DISR-06", "valued_clinicians", [1, 2], [3, 4, 5], [6], False),
    ("DISR-07", "valued_people_served", [1, 2], [3, 4, 5], [6], False),
    ("DISR-08", "valued_peers", [1, 2], [3, 4, 5], [6], False),
    ("DISR-04", "micro_lived_experience", [3, 4, 5], [1, 2], [], False),  # sometimes or more
    ("DISR-09", "micro_peer_role", [3, 4, 5], [1, 2], [], False),
    ("DISR-10", "tokenism", [4, 5], [1, 2, 3], [6], False),  # (strongly) agree
    ("DISR-11", "unpaid_work", [3, 4, 5], [1, 2], [], False),  # sometimes or more
    ("RES-02", "peer_supervision", [1], [2, 3], [], False),  # supervisor with lived experience
    ("RES-03", "training_vs_others", [3], [1, 2], [4], False),  # less than other disciplines
    ("RES-04", "paid_development_time", [1], [2], [3], False),  # not sure left out
    ("RES-05", "funding_vs_others", [3], [1, 2], [4], False),
    ("DRIFT-03", "pressure_illness_language", [4, 5], [1, 2, 3], [], False),  # often or very often
    ("DRIFT-05", "values_alignment", [4, 5], [1, 2, 3], [6], False),  # (strongly) agree
    ("WELL-04", "moral_acted_against_values", [4, 5], [1, 2, 3], [], False),  # often or very often
]

TESTED_HERE = {row[0] for row in SINGLE_QUESTION} | {
    "PREC-07", "PREC-08", "PREC-09", "PREC-11", "DRIFT-02", "DRIFT-06", "WELL-03",
}


def test_every_indicator_in_the_catalogue_has_a_hand_built_test():
    # read as plain YAML, not through the code under test
    ids = {i["id"] for i in yaml.safe_load(INDICATORS.read_text(encoding="utf-8"))["indicators"]}
    assert ids == TESTED_IN_TEST_INDICATORS | TESTED_HERE


@pytest.mark.parametrize("indicator_id, question, counted, not_counted, no_answer, paid_only", SINGLE_QUESTION)
def test_single_question_share(tmp_path, indicator_id, question, counted, not_counted, no_answer, paid_only):
    people = []
    for code in counted:
        people += times(3, paid(**{question: code})) + times(2, volunteer(**{question: code}))
    for code in not_counted:
        people += times(4, paid(**{question: code})) + times(1, volunteer(**{question: code}))
    for code in no_answer:
        people += times(5, paid(**{question: code})) + times(5, volunteer(**{question: code}))
    people += times(2, paid(oh_region=1)) + times(2, volunteer(oh_region=1))  # skipped the question
    con = run(tmp_path, people)
    # volunteers are in the population unless the indicator is about paid roles
    per_counted, per_not_counted = (3, 4) if paid_only else (3 + 2, 4 + 1)
    count = per_counted * len(counted)
    n = count + per_not_counted * len(not_counted)
    assert_proportion(cells(con, indicator_id)[("all", "all")], n=n, count=count)


def test_prec11_neither_sick_days_nor_benefits(tmp_path):
    people = (
        times(6, paid(paid_sick_days=2, health_benefits=2))  # neither: counted
        + times(4, paid(paid_sick_days=2, health_benefits=1))
        + times(3, paid(paid_sick_days=1, health_benefits=2))
        + times(5, paid(paid_sick_days=1, health_benefits=1))
        + times(2, paid(paid_sick_days=3, health_benefits=2))  # don't know sick days: not in n
        + times(2, paid(paid_sick_days=2, health_benefits=3))  # don't know benefits: not in n
        + times(1, paid(paid_sick_days=2))  # benefits not answered: not in n
        + times(4, volunteer(paid_sick_days=2, health_benefits=2))  # not a paid role
    )
    con = run(tmp_path, people)
    assert_proportion(cells(con, "PREC-11")[("all", "all")], n=6 + 4 + 3 + 5, count=6)


def test_drift02_instrumental_tasks_multiple_choice(tmp_path):
    people = (
        times(6, paid(tasks_instrumental=[5]))  # none of these: in n, not counted
        + times(2, paid(tasks_instrumental=[1]))
        + times(3, volunteer(tasks_instrumental=[2, 3]))  # two tasks: counted once
        + times(2, paid(tasks_instrumental=[4]))
        + times(1, paid(tasks_instrumental=[1, 2, 3, 4]))
        + times(3, paid(tasks_clinical=[1]))  # did not answer the instrumental question
    )
    con = run(tmp_path, people)
    assert_proportion(cells(con, "DRIFT-02")[("all", "all")], n=6 + 2 + 3 + 2 + 1, count=2 + 3 + 2 + 1)


def test_drift06_coercive_measures_is_one_option_of_the_clinical_list(tmp_path):
    people = (
        times(4, paid(tasks_clinical=[5]))  # coercive measures only: counted
        + times(3, volunteer(tasks_clinical=[1, 5]))  # with another task: counted
        + times(5, paid(tasks_clinical=[1, 2, 3, 4]))  # every other clinical task: not counted
        + times(6, paid(tasks_clinical=[6]))  # none of these
    )
    con = run(tmp_path, people)
    assert_proportion(cells(con, "DRIFT-06")[("all", "all")], n=4 + 3 + 5 + 6, count=4 + 3)


def moral(*codes):
    items = ["moral_acted_against_values", "moral_witnessed_harm", "moral_betrayed"]
    return {item: code for item, code in zip(items, codes) if code is not None}


def test_well03_moral_distress_score_points_set_in_the_catalogue(tmp_path):
    # Never 0, rarely 25, sometimes 50, often 75, very often 100 (codes 1-5); two items at least
    people = (
        times(3, paid(**moral(1, 1, 1)))  # 0
        + times(2, paid(**moral(5, 5, 5)))  # 100
        + times(4, volunteer(**moral(2, 3, 4)))  # (25 + 50 + 75) / 3 = 50
        + times(3, paid(**moral(5, 4, None)))  # two answered: (100 + 75) / 2 = 87.5
        + times(2, volunteer(**moral(4, 4, 2)))  # (75 + 75 + 25) / 3 = 58.33
        + times(2, paid(**moral(3, None, None)))  # one answered: no score
    )
    con = run(tmp_path, people)
    scores = [0.0] * 3 + [100.0] * 2 + [50.0] * 4 + [87.5] * 3 + [175 / 3] * 2
    assert_mean(cells(con, "WELL-03")[("all", "all")], scores)


# --- the four precarity bands ----------------------------------------------------------------

# Ten EPI answers summing to exactly 25, 50 and 75 points (the band edges belong to the band above).
EPI_25 = {**EPI_ALL_1, "epi_paid_missed_day": 2, "epi_one_employer": 2, "epi_income_varies": 3}  # 10 + 10 + 5
EPI_50 = {**EPI_ALL_1, "epi_paid_missed_day": 2, "epi_one_employer": 2, "epi_other_benefits": 2,
          "epi_raise_concern": 3, "epi_on_call": 4}  # 5 x 10
EPI_75 = {**EPI_50, "epi_schedule_known": 4, "epi_employment_form": 3, "epi_income_varies": 3,
          "epi_hours_cut": 2}  # 50 + 10 + 7.5 + 5 + 2.5
BANDS = ["PREC-07", "PREC-08", "PREC-09", "PREC-02"]  # secure, stable, vulnerable, precarious


def test_bands_split_the_scored_population_at_25_50_and_75(tmp_path):
    people = (
        times(6, paid(**EPI_ALL_1))  # 0: secure
        + times(5, paid(**EPI_25))  # 25: stable
        + times(4, paid(**EPI_EIGHT))  # 46.875: stable
        + times(5, paid(**EPI_50))  # 50: vulnerable
        + times(3, paid(**EPI_MIXED))  # 62.5: vulnerable
        + times(5, paid(**EPI_75))  # 75: precarious
        + times(2, paid(**EPI_MAX))  # 100: precarious
        + times(3, volunteer(**EPI_MAX))  # not a paid role
    )
    con = run(tmp_path, people)
    scores = dict(con.execute("SELECT epi_score, count(*) FROM respondent_wide WHERE eligible_role = '1' GROUP BY 1").fetchall())
    assert scores == {0.0: 6, 25.0: 5, 46.875: 4, 50.0: 5, 62.5: 3, 75.0: 5, 100.0: 2}
    for indicator_id, count in zip(BANDS, [6, 5 + 4, 5 + 3, 5 + 2]):
        assert_proportion(cells(con, indicator_id)[("all", "all")], n=30, count=count)


def band_people(region: int | None, secure: int, stable: int, vulnerable: int, precarious: int) -> list[dict]:
    where = {} if region is None else {"oh_region": region}
    return (times(secure, paid(**where, **EPI_ALL_1)) + times(stable, paid(**where, **EPI_25))
            + times(vulnerable, paid(**where, **EPI_50)) + times(precarious, paid(**where, **EPI_75)))


def hidden_bands(con, breakdown="all", code="all") -> dict[str, str]:
    return {i: cells(con, i)[(breakdown, code)]["suppression"] for i in BANDS if cells(con, i)[(breakdown, code)]["suppressed"]}


def test_one_small_band_hides_a_second_band_of_the_same_group(tmp_path):
    # n = 50: secure 20, stable 12, vulnerable 3, precarious 15. Vulnerable (3) is hidden; the four
    # bands add up to the published n, so the smallest other band (stable, 12) is hidden too.
    con = run(tmp_path, band_people(None, 20, 12, 3, 15))
    assert hidden_bands(con) == {"PREC-09": SMALL_CELL.format(n=5), "PREC-08": COMPLEMENTARY}


def test_without_the_partition_the_bands_are_still_linked_by_their_definitions(tmp_path):
    # the same people with `partition` taken out of the definitions: the four conditions still cut
    # one score into bands that cover every value, so the bands add up to n and the smallest other
    # band is hidden as above (otherwise 50 - 20 - 12 - 15 would give the hidden 3)
    unlinked = tmp_path / "indicators.yaml"
    unlinked.write_text(INDICATORS.read_text(encoding="utf-8").replace("    partition: epi_band\n", ""), encoding="utf-8")
    con = run(tmp_path, band_people(None, 20, 12, 3, 15), catalogue=unlinked)
    assert hidden_bands(con) == {"PREC-09": SMALL_CELL.format(n=5), "PREC-08": COMPLEMENTARY}


def test_band_suppression_across_groups_and_bands_leaves_no_single_hidden_cell(tmp_path):
    # Toronto (5): 10 in each band; East (3): 8, 6, 2, 7. East vulnerable (2) is hidden; its
    # partner among East's bands is stable (6); then East is the only hidden group of the stable and
    # vulnerable tables, so Toronto's stable and vulnerable cells are hidden too.
    con = run(tmp_path, band_people(5, 10, 10, 10, 10) + band_people(3, 8, 6, 2, 7))
    assert hidden_bands(con, "oh_region", "3") == {"PREC-09": SMALL_CELL.format(n=5), "PREC-08": COMPLEMENTARY}
    assert hidden_bands(con, "oh_region", "5") == {"PREC-09": COMPLEMENTARY, "PREC-08": COMPLEMENTARY}
    assert hidden_bands(con) == {}
    # What a reader can work out: East stable + vulnerable = 23 - 8 - 7; Toronto's = 40 - 10 - 10;
    # stable total 16 and vulnerable total 12. Every East stable count the reasons allow (a
    # complementary cell passes the primary rules: 5 to 18 of 23) gives a different vulnerable count.
    published = cells(con, "PREC-09", view="published_estimates")[("oh_region", "3")]
    assert (published["n"], published["count"]) == (None, None)  # hidden cells carry no number
    feasible = set()
    for east_stable in range(0, 24):
        east_vulnerable = (23 - 8 - 7) - east_stable
        toronto_stable, toronto_vulnerable = 16 - east_stable, 12 - east_vulnerable
        if min(east_vulnerable, toronto_stable, toronto_vulnerable) < 0:
            continue
        small = min(east_vulnerable, 23 - east_vulnerable) < 5
        passes = all(5 <= c <= total - 5 for c, total in
                     [(east_stable, 23), (toronto_stable, 40), (toronto_vulnerable, 40)])
        if small and passes:
            feasible.add(east_vulnerable)
    assert 2 in feasible and len(feasible) > 1


def test_a_partition_whose_bands_overlap_is_an_error(tmp_path):
    # stable made to run to 60: a score of 50-60 would be in two bands
    broken = tmp_path / "indicators.yaml"
    text = INDICATORS.read_text(encoding="utf-8")
    broken.write_text(text.replace("condition: {question: epi_score, at_least: 25, below: 50}",
                                   "condition: {question: epi_score, at_least: 25, below: 60}"), encoding="utf-8")
    con = make_warehouse(tmp_path, band_people(None, 10, 10, 10, 10))
    with pytest.raises(IndicatorError, match="partition 'epi_band'.*does not split") as error:
        compute(con, load_catalogue(broken), RULES)
    assert str(broken) in str(error.value)


def test_partition_members_must_share_population_and_questions(tmp_path):
    broken = tmp_path / "indicators.yaml"
    text = INDICATORS.read_text(encoding="utf-8")
    # the secure band made to count volunteers too
    start = text.index("  - id: PREC-07")
    end = text.index("  - id: PREC-08")
    block = text[start:end].replace("population: {question: eligible_role, in: [1]}",
                                    "population: {question: eligible_role, in: [1, 2]}")
    broken.write_text(text[:start] + block + text[end:], encoding="utf-8")
    with pytest.raises(IndicatorError, match="partition 'epi_band'"):
        load_catalogue(broken)


def test_band_groups_appear_by_region(tmp_path):
    con = run(tmp_path, band_people(5, 10, 10, 10, 10) + band_people(3, 12, 11, 10, 10))
    assert groups(cells(con, "PREC-07"), "oh_region") == {"5": ("Toronto", 40, 10), "3": ("East", 43, 12)}


def test_rules_from_the_disclosure_file_apply_to_bands(tmp_path):
    # complementary suppression switched off: nothing but the small band is hidden
    rules = DisclosureRules(min_group_n=10, min_cell=5, complementary=False)
    con = run(tmp_path, band_people(None, 20, 12, 3, 15), rules=rules)
    assert hidden_bands(con) == {"PREC-09": SMALL_CELL.format(n=5)}
