"""Equity breakdowns and gaps (each group against everyone else) on hand-built data.

Groups are worked out by hand from the definitions in surveys/indicators.yaml (Ontario Anti-Racism
Data Standards for race and Indigenous identity); gap intervals are checked against statsmodels
(Newcombe) and scipy (Welch).
"""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

import pandas as pd

from pipeline.disclosure import (
    COMPLEMENTARY,
    HIDDEN_GROUP,
    HIDDEN_NO_GROUP,
    HIDDEN_REST,
    SMALL_CELL,
    SMALL_GROUP,
    DisclosureRules,
    suppress_gaps,
)
from pipeline.indicators import (
    GAP_DOWN,
    GAP_UP,
    NOISE,
    IndicatorError,
    compute,
    load_catalogue,
    load_checked_catalogue,
    newcombe_interval,
    welch_interval,
)
from test_indicators import (
    INDICATORS,
    REPO_SURVEYS,
    RULES,
    WAVE,
    cells,
    groups,
    make_warehouse,
    paid,
    run,
    times,
    volunteer,
)

GAP_COLUMNS = ["n", "count", "estimate", "rest_n", "rest_count", "rest_estimate", "gap", "gap_low", "gap_high",
               "statement", "suppressed", "suppression"]


def gaps(con, indicator_id: str, breakdown: str, view: str = "indicator_gaps") -> dict[str, dict]:
    rows = con.execute(
        f"SELECT group_code, {', '.join(GAP_COLUMNS)} FROM {view} WHERE indicator_id = ? AND wave = ? AND breakdown = ?",
        [indicator_id, WAVE, breakdown],
    ).fetchall()
    return {r[0]: dict(zip(GAP_COLUMNS, r[1:])) for r in rows}


def discriminated(k_yes: int, k_no: int, **answers) -> list[dict]:
    """k_yes + k_no peer supporters answering discrimination_any (DISR-05) yes / no."""
    return times(k_yes, volunteer(discrimination_any=1, **answers)) + times(k_no, paid(discrimination_any=2, **answers))


def assert_newcombe_gap(row, count, n, rest_count, rest_n):
    low, high = confint_proportions_2indep(count, n, rest_count, rest_n, method="newcomb", compare="diff")
    assert (row["n"], row["count"], row["rest_n"], row["rest_count"]) == (n, count, rest_n, rest_count)
    assert row["rest_estimate"] == pytest.approx(100 * rest_count / rest_n)
    assert row["gap"] == pytest.approx(100 * (count / n - rest_count / rest_n), abs=1e-9)
    assert row["gap_low"] == pytest.approx(100 * low, abs=1e-9)
    assert row["gap_high"] == pytest.approx(100 * high, abs=1e-9)
    expected = GAP_UP if low > 0 else GAP_DOWN if high < 0 else NOISE
    assert row["statement"] == expected


# --- intervals for differences ---------------------------------------------------------------

DIFFERENCES = [(0, 10, 0, 12), (10, 10, 0, 12), (0, 15, 15, 15), (3, 17, 9, 20), (1, 1, 0, 1), (5, 20, 3, 30),
               (40, 100, 55, 100), (250, 1000, 120, 400), (7, 13, 7, 13), (1, 50, 49, 50)]


@pytest.mark.parametrize("count1, n1, count2, n2", DIFFERENCES)
def test_newcombe_interval_matches_statsmodels(count1, n1, count2, n2):
    low, high = confint_proportions_2indep(count1, n1, count2, n2, method="newcomb", compare="diff")
    got = newcombe_interval(count1, n1, count2, n2)
    assert got[0] == pytest.approx(low, abs=1e-12)
    assert got[1] == pytest.approx(high, abs=1e-12)
    assert got[0] <= count1 / n1 - count2 / n2 <= got[1]


def test_newcombe_interval_needs_both_groups():
    assert all(math.isnan(x) for x in newcombe_interval(3, 10, 0, 0))


SAMPLES = [
    ([1, 2, 3, 4], [2, 5, 7, 9, 10]),
    ([0, 100, 0, 100, 50, 50], [25, 25, 50, 75]),
    ([46.875] * 3 + [62.5] * 5, [0.0] * 4 + [100.0] * 3 + [96.43] * 2),
    ([10, 10, 11], [10, 10, 11, 12, 12, 40]),
]


@pytest.mark.parametrize("one, two", SAMPLES)
def test_welch_interval_matches_scipy(one, two):
    low, high = stats.ttest_ind(one, two, equal_var=False).confidence_interval()
    got = welch_interval(statistics.fmean(one), statistics.stdev(one), len(one),
                         statistics.fmean(two), statistics.stdev(two), len(two))
    assert got[0] == pytest.approx(low, rel=1e-9, abs=1e-9)
    assert got[1] == pytest.approx(high, rel=1e-9, abs=1e-9)


def test_welch_interval_of_two_constant_groups_is_the_difference_itself():
    # everyone in each group scored the same (scipy gives nan for a zero spread, so by hand)
    assert welch_interval(80.0, 0.0, 12, 50.0, 0.0, 15) == (30.0, 30.0)
    assert all(math.isnan(x) for x in welch_interval(80.0, float("nan"), 1, 50.0, 3.0, 15))


# --- race: the Ontario Anti-Racism Data Standards ---------------------------------------------


def race_people():
    return (
        discriminated(5, 7, race=[1])  # Black only
        + discriminated(1, 2, race=[1, 99])  # Black, and "prefer not to answer" ticked too: Black
        + discriminated(6, 14, race=[8])  # White only
        + discriminated(6, 5, race=[1, 8])  # two categories: "more than one"
        + discriminated(1, 1, race=[3, 8])  # two categories: "more than one"
        + discriminated(1, 2, race=[2])  # East Asian only: a tiny group
        + discriminated(2, 2, race=[99])  # prefer not to answer: in no race group
        + discriminated(0, 3)  # race not answered
    )


def test_race_groups_single_categories_and_more_than_one(tmp_path):
    con = run(tmp_path, race_people())
    table = cells(con, "DISR-05")
    assert groups(table, "race") == {
        "1": ("Black only", 12 + 3, 5 + 1),
        "8": ("White only", 20, 6),
        "multiple": ("More than one race category", 11 + 2, 6 + 1),
        "2": ("East Asian only", 3, 1),
    }
    # everyone is in the total, whatever they said about race
    assert (table[("all", "all")]["n"], table[("all", "all")]["count"]) == (58, 22)


# 6 more people who did not answer race, 3 of them yes: with them, 13 people are in no race group,
# 5 of them yes, enough to show everyone else's figure beside a group
ENOUGH_IN_NO_GROUP = discriminated(3, 3)


def test_race_gaps_compare_with_everyone_else_who_answered_race(tmp_path):
    con = run(tmp_path, race_people() + ENOUGH_IN_NO_GROUP)
    race = gaps(con, "DISR-05", "race")
    # answered race: 15 + 20 + 13 + 3 = 51, of whom 6 + 6 + 7 + 1 = 20 said yes; prefer not to
    # answer and no answer (13 people) are not "everyone else"
    assert_newcombe_gap(race["1"], count=6, n=15, rest_count=14, rest_n=36)
    assert_newcombe_gap(race["8"], count=6, n=20, rest_count=14, rest_n=31)
    assert not race["1"]["suppressed"] and not race["8"]["suppressed"]


def test_gaps_are_hidden_when_few_people_are_in_no_group(tmp_path):
    # 7 people in no race group, 2 of them yes: the overall figure (58, 22) minus the race groups
    # would tell it; a group plus everyone else who answered race gives those groups' total back
    con = run(tmp_path, race_people())
    table = cells(con, "DISR-05")
    assert (table[("all", "all")]["n"], table[("all", "all")]["count"]) == (58, 22)
    race = gaps(con, "DISR-05", "race")
    assert race and all(g["suppressed"] for g in race.values())
    assert race["1"]["suppression"] == HIDDEN_NO_GROUP.format(reason=SMALL_GROUP.format(n=10))
    # East Asian (3) and its partner (13) are hidden already: with the 7, 23 people, 10 of them yes,
    # is all the table gives away, so no further group is hidden
    assert {code for (b, code), cell in table.items() if b == "race" and cell["suppressed"]} == {"2", "multiple"}


def test_a_gap_whose_group_is_hidden_is_hidden_too(tmp_path):
    con = run(tmp_path, race_people() + ENOUGH_IN_NO_GROUP)
    table = cells(con, "DISR-05")
    # East Asian (3) is a small group; its partner is the smallest published race group (13)
    assert table[("race", "2")]["suppression"] == SMALL_GROUP.format(n=10)
    assert table[("race", "multiple")]["suppression"] == COMPLEMENTARY
    race = gaps(con, "DISR-05", "race")
    assert race["2"]["suppression"] == HIDDEN_GROUP and race["multiple"]["suppression"] == HIDDEN_GROUP
    published = gaps(con, "DISR-05", "race", view="published_gaps")
    for code in ("2", "multiple"):
        assert all(published[code][c] is None for c in GAP_COLUMNS if c not in ("suppressed", "suppression"))
        assert published[code]["suppressed"]
    assert published["1"]["gap"] == pytest.approx(race["1"]["gap"])


def test_groups_follow_answers_merged_by_de_identification(tmp_path):
    # De-identification may store merged answers for a wave (surveys/privacy.yaml), with their own
    # labels in `choices`: "more than one" as one value, rare race categories combined, the three
    # Indigenous answers as one, regions as North / South. Groups must follow what is stored.
    people = (
        discriminated(6, 6, race=["multiple"], indigenous=["indigenous"], oh_region="north")
        + discriminated(5, 6, race=["another_or_rare"], indigenous=[4], oh_region="south")
        + discriminated(4, 7, race=[8], indigenous=[1], oh_region="south")
    )
    con = make_warehouse(tmp_path, people)
    merged = [("race", "multiple", "More than one race category"),
              ("race", "another_or_rare", "East Asian, Latino, Middle Eastern, Southeast Asian or another race category"),
              ("indigenous", "indigenous", "First Nations, Inuk/Inuit or Métis"),
              ("oh_region", "north", "North (North West, North East)"),
              ("oh_region", "south", "South (East, Central, Toronto, West)")]
    con.executemany("INSERT INTO choices VALUES (?, ?, ?, ?, ?, NULL, false)",
                    [(WAVE, concept, code, label, label) for concept, code, label in merged])
    compute(con, load_catalogue(INDICATORS), RULES)
    table = cells(con, "DISR-05")
    assert groups(table, "race") == {
        "multiple": ("More than one race category", 12, 6),
        "another_or_rare": ("East Asian, Latino, Middle Eastern, Southeast Asian or another race category", 11, 5),
        "8": ("White only", 11, 4),
    }
    assert groups(table, "indigenous") == {
        "1": ("First Nations, Inuk/Inuit or Métis", 23, 10),
        "2": ("Not Indigenous", 11, 5),
    }
    assert groups(table, "oh_region") == {
        "north": ("North (North West, North East)", 12, 6),
        "south": ("South (East, Central, Toronto, West)", 22, 9),
    }


# --- Indigenous identity, gender and the other yes / no dimensions -----------------------------


def test_indigenous_identity_is_any_indigenous_selection(tmp_path):
    people = (
        discriminated(3, 3, indigenous=[1])  # First Nations
        + discriminated(2, 2, indigenous=[2, 3])  # Inuk and Métis: one person, counted once
        + discriminated(1, 1, indigenous=[1, 4])  # an Indigenous selection (with "No" also ticked)
        + discriminated(4, 8, indigenous=[4])  # not Indigenous
        + discriminated(2, 1, indigenous=[9])  # prefer not to answer: no group
    )
    con = run(tmp_path, people)
    assert groups(cells(con, "DISR-05"), "indigenous") == {
        "1": ("First Nations, Inuk/Inuit or Métis", 12, 6),
        "2": ("Not Indigenous", 12, 4),
    }
    assert_newcombe_gap(gaps(con, "DISR-05", "indigenous")["1"], count=6, n=12, rest_count=4, rest_n=12)


def test_groups_whose_rules_overlap_are_a_catalogue_error(tmp_path):
    # "Not Indigenous" made to take Métis (3) too: a respondent who ticked Inuk and Métis is in both groups
    broken = tmp_path / "indicators.yaml"
    text = INDICATORS.read_text(encoding="utf-8")
    assert "rule: {question: indigenous, only: [4]}" in text
    broken.write_text(text.replace("rule: {question: indigenous, only: [4]}", "rule: {question: indigenous, in: [3, 4]}"),
                      encoding="utf-8")
    people = (discriminated(3, 3, indigenous=[1]) + discriminated(2, 2, indigenous=[2, 3])
              + discriminated(4, 8, indigenous=[4]))
    with pytest.raises(IndicatorError, match=r"breakdown 'indigenous': 4 respondent\(s\) are in its groups 1, 2 at once"
                       ) as error:
        run(tmp_path, people, catalogue=broken)
    assert str(broken) in str(error.value)


def test_gender_and_yes_no_dimensions_leave_out_prefer_not_to_answer(tmp_path):
    people = (
        discriminated(6, 6, gender=2, disability=1, lgbtq=2, francophone=1, newcomer=2)
        + discriminated(5, 6, gender=1, disability=2, lgbtq=1, francophone=2, newcomer=1)
        + discriminated(3, 3, gender=9, disability=9, lgbtq=9, francophone=9, newcomer=9)  # prefer not to answer
    )
    con = run(tmp_path, people)
    table = cells(con, "DISR-05")
    assert groups(table, "gender") == {"2": ("Woman", 12, 6), "1": ("Man", 11, 5)}  # labels from the questionnaire
    assert groups(table, "disability") == {"1": ("Person with a disability", 12, 6), "2": ("No disability", 11, 5)}
    assert groups(table, "lgbtq") == {"2": ("Not 2SLGBTQIA+", 12, 6), "1": ("2SLGBTQIA+", 11, 5)}
    assert groups(table, "francophone") == {"1": ("Francophone", 12, 6), "2": ("Not francophone", 11, 5)}
    assert groups(table, "newcomer") == {"2": ("Not a newcomer", 12, 6), "1": ("Newcomer (last 5 years)", 11, 5)}
    assert table[("all", "all")]["n"] == 29
    assert_newcombe_gap(gaps(con, "DISR-05", "disability")["1"], count=6, n=12, rest_count=5, rest_n=11)


def test_a_gap_is_hidden_when_everyone_else_is_too_few(tmp_path):
    # Women (30) would be published, but "everyone else" is 4 men and 4 non-binary people: 8 < 10,
    # 4 of them yes. Both small groups are hidden; together they would be a group of 8 whose count
    # follows from the total, so the women's cell is hidden as their complement, and the gap with it.
    people = discriminated(15, 15, gender=2) + discriminated(2, 2, gender=1) + discriminated(2, 2, gender=3)
    con = run(tmp_path, people)
    assert cells(con, "DISR-05")[("gender", "2")]["suppression"] == COMPLEMENTARY
    women = gaps(con, "DISR-05", "gender")["2"]
    assert women["suppressed"] and women["suppression"] == HIDDEN_GROUP
    assert gaps(con, "DISR-05", "gender", view="published_gaps")["2"]["rest_n"] is None


def test_a_gap_is_hidden_when_almost_nobody_else_answered_one_way(tmp_path):
    # everyone else: 6 men (1 yes) and 5 non-binary people (0 yes): 11 people, 1 yes
    people = discriminated(15, 15, gender=2) + discriminated(1, 5, gender=1) + discriminated(0, 5, gender=3)
    con = run(tmp_path, people)
    women = gaps(con, "DISR-05", "gender")["2"]
    assert (women["rest_n"], women["rest_count"]) == (11, 1)
    assert women["suppressed"]


@pytest.mark.parametrize(
    ("rest_n", "rest_count", "reason"),
    [(8, 4, SMALL_GROUP.format(n=10)), (11, 1, SMALL_CELL.format(n=5)), (11, 10, SMALL_CELL.format(n=5))],
)
def test_a_published_group_with_too_few_others_still_hides_its_gap(rest_n, rest_count, reason):
    # The gap rule on its own (a safety net behind complementary suppression): everyone else's
    # figure, published with the gap, must pass the primary rules itself.
    rows = pd.DataFrame([{"group_suppressed": False, "overall_suppressed": False, "rest_n": rest_n,
                          "rest_count": rest_count, "kind": "proportion", "min_n": 10}])
    out = suppress_gaps(rows, DisclosureRules(min_group_n=10, min_cell=5, complementary=True))
    assert out.loc[0, "suppressed"] and out.loc[0, "suppression"] == HIDDEN_REST.format(reason=reason)


def test_everyone_versus_no_one(tmp_path):
    # region 5: all 12 said yes; region 3: none of 15 did. The figures are computed (100 points,
    # Newcombe interval) but each group tells its members' answers, so nothing is published.
    people = discriminated(12, 0, oh_region=5) + discriminated(0, 15, oh_region=3)
    con = run(tmp_path, people)
    region = gaps(con, "DISR-05", "oh_region")
    assert_newcombe_gap(region["5"], count=12, n=12, rest_count=0, rest_n=15)
    assert region["5"]["gap"] == pytest.approx(100.0) and region["5"]["statement"] == GAP_UP
    assert_newcombe_gap(region["3"], count=0, n=15, rest_count=12, rest_n=12)
    assert region["3"]["statement"] == GAP_DOWN
    assert region["5"]["suppression"] == HIDDEN_GROUP and region["3"]["suppression"] == HIDDEN_GROUP


def test_a_single_group_has_nothing_to_be_compared_with(tmp_path):
    con = run(tmp_path, discriminated(6, 6, oh_region=5))
    assert gaps(con, "DISR-05", "oh_region") == {}


# --- means ----------------------------------------------------------------------------------

CBI = ["cbi_emotionally_exhausting", "cbi_burnt_out", "cbi_frustrate", "cbi_worn_out", "cbi_exhausted_morning",
       "cbi_every_hour_tiring", "cbi_energy_leisure"]


def burnout(code: int, reversed_code: int, **answers) -> dict:
    # six items with one code (1 = 100 ... 5 = 0) and the reversed item (1 = 0 ... 5 = 100)
    return volunteer(**dict(zip(CBI, [code] * 6 + [reversed_code])), **answers)


def test_mean_gap_is_a_welch_difference(tmp_path):
    people = (
        times(6, burnout(5, 1, oh_region=1)) + times(6, burnout(1, 5, oh_region=1))  # 0 and 100
        + times(10, burnout(3, 3, oh_region=2)) + times(1, burnout(1, 5, oh_region=2))  # 50 and 100
        + times(7, burnout(2, 4, oh_region=3)) + times(5, burnout(4, 2, oh_region=3))  # 75 and 25
        + times(3, burnout(1, 5))  # no region: in no group
    )
    con = run(tmp_path, people)
    scores = {1: [0.0] * 6 + [100.0] * 6, 2: [50.0] * 10 + [100.0], 3: [75.0] * 7 + [25.0] * 5}
    region = gaps(con, "WELL-01", "oh_region")
    for code, own in scores.items():
        rest = [s for other, values in scores.items() if other != code for s in values]
        low, high = stats.ttest_ind(own, rest, equal_var=False).confidence_interval()
        row = region[str(code)]
        assert (row["n"], row["count"], row["rest_n"], row["rest_count"]) == (len(own), None, len(rest), None)
        assert row["rest_estimate"] == pytest.approx(statistics.fmean(rest), abs=1e-6)
        assert row["gap"] == pytest.approx(statistics.fmean(own) - statistics.fmean(rest), abs=1e-6)
        assert row["gap_low"] == pytest.approx(low, abs=1e-6)
        assert row["gap_high"] == pytest.approx(high, abs=1e-6)
        assert row["statement"] == (GAP_UP if low > 0 else GAP_DOWN if high < 0 else NOISE)


# --- breakdown definitions that cannot work are errors ------------------------------------------

CATALOGUE = """
default_breakdowns: [{default}]
default_min_n: 10
breakdowns:
  {breakdown}
scores: {{}}
indicators:
  - id: PREC-05
    title: Several jobs
    domain: precarity
    kind: proportion
    definition: Share with two jobs or more.
    population: {{question: eligible_role, in: [1, 2]}}
    population_text: All peer supporters
    questions: [several_jobs]
    condition: {{question: several_jobs, in: [2, 3]}}
"""

BREAKDOWN_ERRORS = [
    # a breakdown named but never defined
    ("oh_region, regions", "oh_region: {title: Region, definition: Where., question: oh_region}",
     "'regions' is not defined under breakdowns"),
    # race is multiple choice: one group per answer needs to say what "more than one" is
    ("race", "race: {title: Race, definition: Race., question: race}", "breakdown race: 'race' is not a single-choice"),
    # a misspelt concept in a group's rule
    ("ind", "ind: {title: Indigenous, definition: I., groups: [{code: '1', label: Indigenous, rule: {question: indigenus, in: [1]}}]}",
     "breakdown ind: rule on 'indigenus'"),
    # one way of grouping only
    ("ind", "ind: {title: I, definition: I., question: gender, groups: [{code: '1', label: Y, rule: {question: gender, in: [1]}}]}",
     "not both"),
]


@pytest.mark.parametrize("default, breakdown, problem", BREAKDOWN_ERRORS)
def test_a_breakdown_that_cannot_work_is_an_error_naming_the_file(tmp_path, default, breakdown, problem):
    path = tmp_path / "indicators.yaml"
    path.write_text(CATALOGUE.format(default=default, breakdown=breakdown), encoding="utf-8")
    with pytest.raises(IndicatorError) as error:
        load_checked_catalogue(path, REPO_SURVEYS)
    assert problem in str(error.value) and str(path) in str(error.value)



def test_everyone_else_for_rule_groups_is_everyone_in_some_group(tmp_path):
    # volunteers with one job are in neither group: in the total, not among "everyone else"
    breakdown = ("work: {title: Work, definition: W., groups: [{code: paid, label: Paid, rule: {question: eligible_role, "
                 "in: [1]}}, {code: several, label: Volunteer with several jobs, rule: {all: [{question: eligible_role, "
                 "in: [2]}, {question: several_jobs, in: [2, 3]}]}}]}")
    path = tmp_path / "indicators.yaml"
    path.write_text(CATALOGUE.format(default="work", breakdown=breakdown), encoding="utf-8")
    people = (times(12, paid(several_jobs=2)) + times(10, paid(several_jobs=1))
              + times(11, volunteer(several_jobs=3)) + times(13, volunteer(several_jobs=1)))
    con = run(tmp_path, people, catalogue=path)
    table = cells(con, "PREC-05")
    assert (table[("all", "all")]["n"], table[("all", "all")]["count"]) == (46, 23)
    assert groups(table, "work") == {"paid": ("Paid", 22, 12), "several": ("Volunteer with several jobs", 11, 11)}
    # in some group: 22 paid + 11 volunteers with several jobs = 33, of whom 12 + 11 = 23 have several
    work = gaps(con, "PREC-05", "work")
    assert (work["paid"]["rest_n"], work["paid"]["rest_count"]) == (11, 11)
    assert (work["several"]["rest_n"], work["several"]["rest_count"]) == (22, 12)
