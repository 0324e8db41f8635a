"""pipeline.indicators on a hand-built warehouse.

Each test writes the real questionnaires (concepts, choices, living wages; 2025 unless a person
carries an earlier `wave`) into a fresh DuckDB, inserts respondents and answers designed by hand
(with the derived answers of surveys/derived.yaml worked out from them, as de-identification
does), runs `compute` with the real
surveys/indicators.yaml and compares `indicator_estimates` with numbers worked out in the test:
counts by hand, scores from the choice points of surveys/2025/instrument.yaml, intervals with
statsmodels / scipy.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from pipeline.deidentify import derive, derived_path, load_derivations
from pipeline.disclosure import COMPLEMENTARY, SMALL_CELL, SMALL_GROUP, DisclosureRules
from pipeline.indicators import (
    IndicatorError,
    compute,
    load_catalogue,
    load_checked_catalogue,
    t_interval,
    wilson_interval,
)
from pipeline.instrument import load_instrument
from pipeline.load import _write_catalogue, _write_living_wage, schema_sql

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENT = ROOT / "surveys" / "2025" / "instrument.yaml"
LIVING_WAGE = ROOT / "surveys" / "reference" / "living_wage.yaml"
INDICATORS = ROOT / "surveys" / "indicators.yaml"
REPO_SURVEYS = ROOT / "surveys"
WAVE = 2025
RULES = DisclosureRules(min_group_n=10, min_cell=5, complementary=True)
MIN_N_REASON = "fewer than 15 respondents, the indicator's minimum reportable n"


# --- building a warehouse by hand ------------------------------------------------------------


def paid(**answers):
    return {"eligible_role": 1, **answers}


def volunteer(**answers):
    return {"eligible_role": 2, **answers}


def times(k: int, person: dict) -> list[dict]:
    return [dict(person) for _ in range(k)]


def make_warehouse(tmp_path: Path, people: list[dict]) -> duckdb.DuckDBPyConnection:
    """People answer the 2025 questionnaire unless they carry a `wave` (2023 or 2024)."""
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(schema_sql())
    waves = {person.get("wave", WAVE) for person in people} | {WAVE}
    derivations = load_derivations(derived_path(REPO_SURVEYS))
    people = [dict(person) for person in people]
    for wave in sorted(waves):
        instrument = load_instrument(REPO_SURVEYS / str(wave) / "instrument.yaml")
        raw = [p for p in people if p.get("wave", WAVE) == wave]
        frame = pd.DataFrame([{c: v if isinstance(v, list) else str(v) for c, v in p.items()} for p in raw])
        derived = derive(frame, instrument, derivations) if raw else []
        for concept, values in derived:
            for person, value in zip(raw, values):
                if value is not None:
                    person[concept.question.id] = value
        _write_catalogue(con, instrument, [concept for concept, _ in derived])
    _write_living_wage(con, LIVING_WAGE, waves)
    respondents, answers = [], []
    for i, person in enumerate(people):
        key = i + 1  # keys are whole numbers, as de-identification draws them
        wave = person.get("wave", WAVE)
        respondents.append((key, wave, "hand-built"))
        for concept, value in person.items():
            if concept == "wave":
                continue
            for v in value if isinstance(value, list) else [value]:
                answers.append((key, wave, concept, str(v)))
    con.executemany("INSERT INTO respondents VALUES (?, ?, ?)", respondents)
    if answers:
        con.executemany("INSERT INTO answers VALUES (?, ?, ?, ?)", answers)
    return con


def run(tmp_path, people, rules=RULES, catalogue=INDICATORS) -> duckdb.DuckDBPyConnection:
    con = make_warehouse(tmp_path, people)
    compute(con, load_catalogue(catalogue), rules)
    return con


COLUMNS = ["breakdown", "group_code", "group_label", "n", "count", "estimate", "ci_low", "ci_high",
           "suppressed", "suppression"]


def cells(con, indicator_id: str, view: str = "indicator_estimates", wave: int = WAVE) -> dict[tuple[str, str], dict]:
    rows = con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM {view} WHERE indicator_id = ? AND wave = ?", [indicator_id, wave]
    ).fetchall()
    return {(r[0], r[1]): dict(zip(COLUMNS, r)) for r in rows}


def groups(table: dict, breakdown: str) -> dict[str, tuple]:
    """group code -> (label, n, count) of one breakdown."""
    return {code: (c["group_label"], c["n"], c["count"]) for (b, code), c in table.items() if b == breakdown}


def wilson_pct(count, n):
    low, high = proportion_confint(count, n, alpha=0.05, method="wilson")
    return 100 * low, 100 * high


def assert_proportion(cell, n, count):
    assert (cell["n"], cell["count"]) == (n, count)
    assert cell["estimate"] == pytest.approx(100 * count / n)
    low, high = wilson_pct(count, n)
    assert cell["ci_low"] == pytest.approx(low, abs=1e-9)
    assert cell["ci_high"] == pytest.approx(high, abs=1e-9)


def assert_mean(cell, scores):
    n = len(scores)
    mean, sd = statistics.fmean(scores), statistics.stdev(scores)
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
    assert cell["n"] == n
    assert cell["count"] is None
    # scores are 0-100 and published to one decimal: agreement to 1e-6 is far beyond that
    # (and allows for sums taken over scores stored to six decimals)
    assert cell["estimate"] == pytest.approx(mean, abs=1e-6)
    assert cell["ci_low"] == pytest.approx(low, abs=1e-6)
    assert cell["ci_high"] == pytest.approx(high, abs=1e-6)


# --- intervals -------------------------------------------------------------------------------

PAIRS = [(c, n) for n in (1, 2, 3, 4, 5, 7, 10, 13) for c in range(n + 1)] + [
    (c, n) for n in (20, 37, 50, 100, 250, 1000, 5000) for c in sorted({0, 1, 2, 5, n // 3, n // 2, n - 5, n - 1, n})
]


@pytest.mark.parametrize("count, n", PAIRS)
def test_wilson_interval_matches_statsmodels(count, n):
    low, high = proportion_confint(count, n, alpha=0.05, method="wilson")
    got = wilson_interval(count, n)
    assert got[0] == pytest.approx(low, abs=1e-12)
    assert got[1] == pytest.approx(high, abs=1e-12)
    # the interval holds the observed share and stays within 0-1 (to rounding)
    assert -1e-12 <= got[0] <= count / n + 1e-12
    assert count / n - 1e-12 <= got[1] <= 1.0 + 1e-12


@pytest.mark.parametrize(
    "mean, sd, n",
    [(50.0, 10.0, 2), (50.0, 10.0, 3), (12.5, 0.5, 10), (61.42, 23.7, 31), (0.0, 1.0, 500), (75.0, 1e-6, 12)],
)
def test_t_interval_matches_scipy(mean, sd, n):
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
    got = t_interval(mean, sd, n)
    assert got[0] == pytest.approx(low, rel=1e-12, abs=1e-12)
    assert got[1] == pytest.approx(high, rel=1e-12, abs=1e-12)


def test_t_interval_of_identical_scores_is_the_mean_itself():
    # everyone scored 88: sd 0, no spread (scipy refuses a zero scale, so by hand)
    assert t_interval(88.0, 0.0, 12) == (88.0, 88.0)


def test_t_interval_needs_two_respondents():
    assert all(math.isnan(x) for x in t_interval(40.0, float("nan"), 1))


# --- proportions -----------------------------------------------------------------------------


def living_wage_people():
    # 2024 living wages (used for wave 2025): region 1 GTA 26.00, 3 Ottawa 22.80, 9 Southwest 19.85.
    # The 2023 rates would be 25.05, 21.95 and 18.65: 25.50, 22.00 and 19.00 are below only in 2024.
    return (
        times(4, paid(lw_region=1, oh_region=5, hourly_wage="25.50"))  # below
        + times(3, paid(lw_region=1, oh_region=5, hourly_wage="26.00"))  # equal: not below
        + times(3, paid(lw_region=1, oh_region=5, hourly_wage="30"))
        + times(2, paid(lw_region=1, oh_region=5, hourly_wage="20"))  # below
        + times(2, paid(lw_region=3, oh_region=3, hourly_wage="22.79"))  # below
        + times(2, paid(lw_region=3, oh_region=3, hourly_wage="22.80"))  # equal: not below
        + times(2, paid(lw_region=3, oh_region=3, hourly_wage="22.00"))  # below
        + times(3, paid(lw_region=9, oh_region=6, hourly_wage="19"))  # below
        + times(2, paid(lw_region=1, oh_region=5))  # no wage given: not in n
        + times(2, paid(oh_region=4, hourly_wage="15"))  # no living-wage region: not in n
        + times(3, volunteer(lw_region=1, oh_region=5, hourly_wage="10"))  # not paid: not in population
    )


def test_prec03_below_living_wage_uses_the_regions_2024_rate_and_equal_is_not_below(tmp_path):
    con = run(tmp_path, living_wage_people())
    table = cells(con, "PREC-03")
    # n: 12 in region 1 + 6 in region 3 + 3 in region 9 = 21
    # below: (4 + 2) + (2 + 2) + 3 = 13
    assert_proportion(table[("all", "all")], n=21, count=13)
    assert table[("all", "all")]["group_label"] == "All respondents"


def test_prec03_compares_each_wave_with_the_rates_its_reference_names(tmp_path):
    # GTA (area 1): the 2023 wave and the 2024 wave use the 2023 rate 25.05; the 2025 wave the 2024 rate 26.00.
    people = (
        times(3, paid(wave=2023, lw_region=1, hourly_wage="25.05"))  # equal: not below
        + times(2, paid(wave=2023, lw_region=1, hourly_wage="25.04"))  # below
        + times(4, paid(wave=2024, lw_region=1, hourly_wage="25.50"))  # above 25.05: not below
        + times(1, paid(wave=2024, lw_region=1, hourly_wage="25.00"))  # below
        + times(5, paid(wave=2025, lw_region=1, hourly_wage="25.50"))  # below 26.00
        + times(2, paid(wave=2025, lw_region=1, hourly_wage="26"))  # equal: not below
    )
    con = run(tmp_path, people)
    overall = {wave: cells(con, "PREC-03", wave=wave)[("all", "all")] for wave in (2023, 2024, 2025)}
    assert {wave: (cell["n"], cell["count"]) for wave, cell in overall.items()} == {2023: (5, 2), 2024: (5, 1), 2025: (7, 5)}


def test_prec03_breakdown_by_oh_region(tmp_path):
    con = run(tmp_path, living_wage_people())
    table = cells(con, "PREC-03")
    assert groups(table, "oh_region") == {
        "5": ("Toronto", 12, 6),
        "3": ("East", 6, 4),
        "6": ("West", 3, 3),
        # no "4" (Central): those two gave no living-wage region, so are not in n
    }
    assert groups(table, "work_setting") == {}  # nobody answered it
    assert_proportion(table[("oh_region", "5")], n=12, count=6)
    assert_proportion(table[("oh_region", "3")], n=6, count=4)
    # East (6) and West (3) are small groups. Together they hold 9 people, 7 below and 2 not: with
    # the total (21, 13 / 8) published, that would show fewer than 5 answering one way among them,
    # so Toronto (12, 6 / 6) is hidden as their complement. The total stays published.
    assert table[("oh_region", "3")]["suppression"] == SMALL_GROUP.format(n=10)
    assert table[("oh_region", "6")]["suppression"] == SMALL_GROUP.format(n=10)
    assert table[("oh_region", "5")]["suppression"] == COMPLEMENTARY
    assert not table[("all", "all")]["suppressed"]


def test_prec04_no_paid_sick_days_leaves_out_dont_know_and_volunteers(tmp_path):
    people = (
        times(7, paid(paid_sick_days=1))
        + times(5, paid(paid_sick_days=2))
        + times(4, paid(paid_sick_days=3))  # don't know: not an answer
        + times(2, paid(epi_one_employer=1))  # did not answer
        + times(6, volunteer(paid_sick_days=2))  # outside the paid population
    )
    con = run(tmp_path, people)
    cell = cells(con, "PREC-04")[("all", "all")]
    assert_proportion(cell, n=12, count=5)  # 7 + 5 paid answered yes/no; 5 said no
    assert not cell["suppressed"]  # 5 and 7: both at least 5


def test_disr01_any_of_four_incivility_items(tmp_path):
    never = dict(incivility_condescending=1, incivility_ignored=1, incivility_demeaning=1, incivility_doubted=1)
    people = (
        times(6, paid(**never))  # never anything: in n, not counted
        + times(2, paid(**{**never, "incivility_condescending": 2}))
        + times(2, paid(**{**never, "incivility_ignored": 3}))
        + times(2, paid(**{**never, "incivility_demeaning": 5}))
        + times(2, paid(**{**never, "incivility_doubted": 4}))
        + times(3, paid(incivility_condescending=5, incivility_ignored=5, incivility_demeaning=5, incivility_doubted=5))
        + times(2, paid(incivility_condescending=2, incivility_ignored=2, incivility_demeaning=2))  # 3 of 4: not in n
        + times(3, volunteer(**{**never, "incivility_ignored": 2}))  # volunteers are in this population
    )
    con = run(tmp_path, people)
    # n = 6 + 8 + 3 + 3 = 20; at least once or twice on one item: 8 + 3 + 3 = 14
    assert_proportion(cells(con, "DISR-01")[("all", "all")], n=20, count=14)
    # often or many times (codes 4, 5): demeaning 5 (2), doubted 4 (2), all 5 (3) = 7
    assert_proportion(cells(con, "DISR-02")[("all", "all")], n=20, count=7)


def test_drift01_none_of_these_alone_does_not_count(tmp_path):
    people = (
        times(7, paid(tasks_clinical=[6]))  # none of these: in n, not counted
        + times(2, paid(tasks_clinical=[1]))
        + times(2, volunteer(tasks_clinical=[2, 3]))
        + times(1, paid(tasks_clinical=[5]))
        + times(1, paid(tasks_clinical=[4]))
        + times(2, paid(tasks_clinical=[1, 2, 3, 4, 5]))
        + times(3, paid(tasks_instrumental=[5]))  # did not answer the clinical question
    )
    con = run(tmp_path, people)
    # n = 7 + 2 + 2 + 1 + 1 + 2 = 15; at least one clinical task: 8
    assert_proportion(cells(con, "DRIFT-01")[("all", "all")], n=15, count=8)


def test_res01_not_sure_is_not_in_the_denominator(tmp_path):
    people = (
        times(5, paid(training_employer_funded=1))
        + times(4, volunteer(training_employer_funded=1))
        + times(6, paid(training_employer_funded=2))
        + times(5, paid(training_employer_funded=3))  # not sure: missing
        + times(2, paid(peer_supervision=1))  # did not answer
    )
    con = run(tmp_path, people)
    assert_proportion(cells(con, "RES-01")[("all", "all")], n=15, count=9)  # (5 + 4) yes of 9 + 6


def test_disr05_prefer_not_to_answer_is_left_out_and_tiny_group_hidden_with_a_partner(tmp_path):
    people = (
        times(6, paid(oh_region=5, discrimination_any=1))
        + times(8, volunteer(oh_region=5, discrimination_any=2))
        + times(3, paid(oh_region=5, discrimination_any=9))  # prefer not to answer
        + times(1, paid(oh_region=6, discrimination_any=1))
        + times(2, paid(oh_region=6, discrimination_any=2))
        + times(7, paid(oh_region=3, discrimination_any=1))
        + times(9, paid(oh_region=3, discrimination_any=2))
        + times(5, volunteer(oh_region=4, discrimination_any=1))
        + times(6, paid(oh_region=4, discrimination_any=2))
    )
    con = run(tmp_path, people)
    table = cells(con, "DISR-05")
    # n = 14 + 3 + 16 + 11 = 44 (prefer not to answer left out); yes = 6 + 1 + 7 + 5 = 19
    assert_proportion(table[("all", "all")], n=44, count=19)
    assert groups(table, "oh_region") == {
        "5": ("Toronto", 14, 6),
        "6": ("West", 3, 1),
        "3": ("East", 16, 7),
        "4": ("Central", 11, 5),
    }
    # West (3) is a small group; the smallest published group, Central (11), is hidden with it
    hidden = {code: c["suppression"] for (b, code), c in table.items() if c["suppressed"]}
    assert hidden == {"6": SMALL_GROUP.format(n=10), "4": COMPLEMENTARY}

    published = cells(con, "DISR-05", view="published_estimates")
    for code in ("6", "4"):
        cell = published[("oh_region", code)]
        assert (cell["n"], cell["count"], cell["estimate"], cell["ci_low"], cell["ci_high"]) == (None,) * 5
        assert cell["group_label"] == table[("oh_region", code)]["group_label"]
    assert published[("oh_region", "5")]["count"] == 6
    # West's count cannot be worked out from what is published
    assert len(feasible_counts(published, "oh_region", "6", RULES)) > 1


def test_none_and_everyone_meet_the_condition(tmp_path):
    people = times(12, volunteer(several_jobs=1, role_matches_description=5))
    con = run(tmp_path, people)
    none = cells(con, "PREC-05")[("all", "all")]  # two or more jobs: nobody
    everyone = cells(con, "DRIFT-04")[("all", "all")]  # agree or strongly agree: everybody
    assert_proportion(none, n=12, count=0)
    assert_proportion(everyone, n=12, count=12)
    assert none["estimate"] == 0.0 and none["ci_low"] == pytest.approx(0.0, abs=1e-9)
    assert everyone["estimate"] == 100.0 and everyone["ci_high"] == pytest.approx(100.0, abs=1e-9)
    # "none" and "all" tell every member's answer: both are hidden
    assert none["suppression"] == SMALL_CELL.format(n=5)
    assert everyone["suppression"] == SMALL_CELL.format(n=5)


def test_population_with_nobody_in_it_gives_no_cells(tmp_path):
    # PREC-04 is for paid roles only; only volunteers answered
    con = run(tmp_path, times(15, volunteer(paid_sick_days=2, several_jobs=2)))
    assert cells(con, "PREC-04") == {}
    assert_proportion(cells(con, "PREC-05")[("all", "all")], n=15, count=15)


# --- means -----------------------------------------------------------------------------------

# EPI item points (surveys/2025/instrument.yaml), by code.
EPI_ALL_1 = dict(epi_paid_missed_day=1, epi_one_employer=1, epi_income_varies=1, epi_hours_cut=1, epi_on_call=1,
                 epi_schedule_known=1, epi_cash_income=1, epi_employment_form=1, epi_other_benefits=1,
                 epi_raise_concern=1)  # every item 0 points: score 0
EPI_MAX = dict(epi_paid_missed_day=2, epi_one_employer=2, epi_income_varies=4, epi_hours_cut=4, epi_on_call=4,
               epi_schedule_known=4, epi_cash_income=3, epi_employment_form=4, epi_other_benefits=2,
               epi_raise_concern=3)  # every item 10 points: score 100
EPI_MIXED = dict(epi_paid_missed_day=2, epi_one_employer=2, epi_income_varies=3, epi_hours_cut=2, epi_on_call=2,
                 epi_schedule_known=3, epi_cash_income=1, epi_employment_form=3, epi_other_benefits=2,
                 epi_raise_concern=2)
# 10 + 10 + 5 + 2.5 + 5 + 7.5 + 0 + 7.5 + 10 + 5 = 62.5 points of 100
EPI_MIXED_SCORE = 62.5
EPI_EIGHT = dict(epi_paid_missed_day=3, epi_one_employer=2, epi_income_varies=2, epi_hours_cut=3, epi_on_call=1,
                 epi_schedule_known=2, epi_employment_form=2, epi_other_benefits=2, epi_raise_concern=1)
# "don't know" on paid_missed_day and cash_income skipped: 8 items,
# 10 + 2.5 + 7.5 + 0 + 2.5 + 5 + 10 + 0 = 37.5 points, average 4.6875 of 10 -> 46.875
EPI_EIGHT_SCORE = 46.875
EPI_SEVEN = dict(epi_one_employer=2, epi_income_varies=4, epi_hours_cut=4, epi_on_call=3, epi_schedule_known=4,
                 epi_employment_form=4, epi_other_benefits=2)
# 7 items (the minimum): 10 + 10 + 10 + 7.5 + 10 + 10 + 10 = 67.5 points, 67.5 / 7 * 10 = 96.43
EPI_SEVEN_SCORE = 675 / 7
EPI_SIX = dict(epi_one_employer=1, epi_income_varies=1, epi_hours_cut=1, epi_on_call=1, epi_schedule_known=1,
               epi_employment_form=1)  # 6 items: below min_items, no score


def epi_people():
    return (
        times(4, paid(**EPI_ALL_1))
        + times(3, paid(**EPI_MAX))
        + times(5, paid(**EPI_MIXED))
        + times(4, paid(**EPI_EIGHT))
        + times(2, paid(**EPI_SEVEN))
        + times(3, paid(**EPI_SIX))  # no score: not in n
        + times(3, volunteer(**EPI_MAX))  # not paid: not in the population
    )


def test_prec01_epi_score_mean_with_rescaling_and_min_items(tmp_path):
    con = run(tmp_path, epi_people())
    scores = [0.0] * 4 + [100.0] * 3 + [EPI_MIXED_SCORE] * 5 + [EPI_EIGHT_SCORE] * 4 + [EPI_SEVEN_SCORE] * 2
    cell = cells(con, "PREC-01")[("all", "all")]
    assert cell["n"] == 18
    assert cell["estimate"] == pytest.approx(3475 / 63, abs=1e-6)  # (300 + 312.5 + 187.5 + 1350/7) / 18
    assert_mean(cell, scores)
    assert not cell["suppressed"]


def test_prec01_scores_per_respondent(tmp_path):
    con = run(tmp_path, epi_people())
    got = Counter(
        (role, None if score is None else round(score, 9))
        for role, score in con.execute("SELECT eligible_role, epi_score FROM respondent_wide").fetchall()
    )
    assert got == Counter({
        ("1", 0.0): 4,
        ("1", 100.0): 3,
        ("1", 62.5): 5,
        ("1", 46.875): 4,  # 8 items answered, scaled
        ("1", round(675 / 7, 9)): 2,  # 7 items answered, scaled
        ("1", None): 3,  # 6 items: fewer than min_items
        ("2", 100.0): 3,
    })


def test_prec02_precarious_band(tmp_path):
    con = run(tmp_path, epi_people())
    # 75 or more: the 3 at 100 and the 2 at 96.43, of 18 with a score
    assert_proportion(cells(con, "PREC-02")[("all", "all")], n=18, count=5)


CBI_ITEMS = ["cbi_emotionally_exhausting", "cbi_burnt_out", "cbi_frustrate", "cbi_worn_out",
             "cbi_exhausted_morning", "cbi_every_hour_tiring", "cbi_energy_leisure"]


def cbi(*codes):
    return dict(zip(CBI_ITEMS, codes))


def burnout_people():
    # degree5 / often5: code 1 = 100 ... code 5 = 0; energy_leisure reversed: code 1 = 0 ... 5 = 100
    return (
        times(3, paid(**cbi(5, 5, 5, 5, 5, 5, 1)))  # 0
        + times(2, volunteer(**cbi(1, 1, 1, 1, 1, 1, 5)))  # 100
        + times(4, volunteer(**cbi(3, 2, 4, 3, 2, 5, 3)))  # 50+75+25+50+75+0+50 = 325 / 7
        + times(2, paid(**cbi(1, 1, 1, 1, 1, 1, 1)))  # 6 x 100 + 0 (reversed) = 600 / 7
        + times(3, paid(cbi_emotionally_exhausting=2, cbi_burnt_out=2, cbi_worn_out=3, cbi_energy_leisure=2))
        # 4 items: 75 + 75 + 50 + 25 = 225 / 4 = 56.25
        + times(2, paid(cbi_emotionally_exhausting=1, cbi_burnt_out=1, cbi_frustrate=1))  # 3 items: no score
    )


def test_well01_burnout_mean_with_reversed_item_and_min_items(tmp_path):
    con = run(tmp_path, burnout_people())
    scores = [0.0] * 3 + [100.0] * 2 + [325 / 7] * 4 + [600 / 7] * 2 + [56.25] * 3
    cell = cells(con, "WELL-01")[("all", "all")]
    assert cell["n"] == 14
    # (0 + 200 + 1300/7 + 1200/7 + 168.75) / 14
    assert cell["estimate"] == pytest.approx((368.75 + 2500 / 7) / 14, abs=1e-6)
    assert_mean(cell, scores)


def test_well02_high_burnout(tmp_path):
    con = run(tmp_path, burnout_people())
    # 50 or more: 100 (2), 85.71 (2), 56.25 (3) = 7; 46.43 and 0 are below
    assert_proportion(cells(con, "WELL-02")[("all", "all")], n=14, count=7)


def test_mean_breakdown_by_oh_region(tmp_path):
    people = (
        times(6, paid(oh_region=1, **cbi(5, 5, 5, 5, 5, 5, 1)))  # 0
        + times(6, paid(oh_region=1, **cbi(1, 1, 1, 1, 1, 1, 5)))  # 100
        + times(10, volunteer(oh_region=2, **cbi(3, 3, 3, 3, 3, 3, 3)))  # 50
        + times(1, volunteer(oh_region=2, **cbi(1, 1, 1, 1, 1, 1, 5)))  # 100
    )
    con = run(tmp_path, people)
    table = cells(con, "WELL-01")
    assert groups(table, "oh_region") == {"1": ("North West", 12, None), "2": ("North East", 11, None)}
    assert_mean(table[("oh_region", "1")], [0.0] * 6 + [100.0] * 6)
    assert_mean(table[("oh_region", "2")], [50.0] * 10 + [100.0])
    assert_mean(table[("all", "all")], [0.0] * 6 + [100.0] * 6 + [50.0] * 10 + [100.0])


# --- disclosure inside compute ---------------------------------------------------------------


def reason_allows(reason, n, c, rules, min_n=None):
    passes_primary = n >= rules.min_group_n and min(c, n - c) >= rules.min_cell
    if reason == SMALL_GROUP.format(n=rules.min_group_n):
        return n < rules.min_group_n
    if reason == SMALL_CELL.format(n=rules.min_cell):
        return n >= rules.min_group_n and min(c, n - c) < rules.min_cell
    if reason == COMPLEMENTARY:
        return passes_primary
    if reason == MIN_N_REASON and min_n is not None:
        return passes_primary and n < min_n
    return True


def feasible_counts(published: dict, breakdown: str, target: str, rules, min_n=None) -> set[int]:
    """Every count of hidden group `target` consistent with the published 'all' row and groups."""
    total = published[("all", "all")]
    rows = [c for (b, _), c in published.items() if b == breakdown]
    shown = [r for r in rows if not r["suppressed"]]
    hidden = [r for r in rows if r["suppressed"]]
    n_left = total["n"] - sum(r["n"] for r in shown)
    c_left = total["count"] - sum(r["count"] for r in shown)
    t = [r["group_code"] for r in hidden].index(target)
    found = set()

    def assign(i, n_rest, c_rest, chosen):
        if i == len(hidden) - 1:
            if n_rest >= 1 and 0 <= c_rest <= n_rest and reason_allows(hidden[i]["suppression"], n_rest, c_rest, rules, min_n):
                found.add((chosen + [c_rest])[t])
            return
        for n in range(1, n_rest):
            for c in range(0, min(n, c_rest) + 1):
                if reason_allows(hidden[i]["suppression"], n, c, rules, min_n):
                    assign(i + 1, n_rest - n, c_rest - c, chosen + [c])

    assign(0, n_left, c_left, [])
    return found


def test_indicator_min_n_hides_a_group_and_its_partner(tmp_path):
    # an indicator stricter than the disclosure rules (min_n 15): a group of 12 is hidden, and
    # with the total published its count would follow by subtraction unless a partner is hidden
    catalogue = tmp_path / "indicators.yaml"
    catalogue.write_text(
        """
default_breakdowns: [oh_region]
default_min_n: 10
breakdowns:
  oh_region: {title: Ontario Health region, definition: Where people work., question: oh_region}
scores: {}
indicators:
  - id: RES-02
    title: Peer supervision
    domain: resources
    kind: proportion
    definition: Share supervised by someone with lived experience.
    population: {question: eligible_role, in: [1, 2]}
    population_text: All peer supporters
    questions: [peer_supervision]
    condition: {question: peer_supervision, in: [1]}
    min_n: 15
""",
        encoding="utf-8",
    )
    people = (
        times(6, paid(oh_region=1, peer_supervision=1)) + times(6, paid(oh_region=1, peer_supervision=2))
        + times(10, paid(oh_region=3, peer_supervision=1)) + times(10, paid(oh_region=3, peer_supervision=3))
        + times(12, paid(oh_region=5, peer_supervision=1)) + times(13, paid(oh_region=5, peer_supervision=2))
    )
    con = run(tmp_path, people, catalogue=catalogue)
    table = cells(con, "RES-02")
    assert groups(table, "oh_region") == {"1": ("North West", 12, 6), "3": ("East", 20, 10), "5": ("Toronto", 25, 12)}
    assert_proportion(table[("all", "all")], n=57, count=28)
    assert table[("oh_region", "1")]["suppression"] == MIN_N_REASON
    published = cells(con, "RES-02", view="published_estimates")
    # the hidden count of North West must not be recoverable from the total and the other groups
    assert len(feasible_counts(published, "oh_region", "1", RULES, min_n=15)) > 1
    assert table[("oh_region", "3")]["suppressed"]  # East (20), the smallest other group


# --- compile errors --------------------------------------------------------------------------

ONE_INDICATOR = """
default_breakdowns: [oh_region]
default_min_n: 10
breakdowns:
  oh_region: {{title: Ontario Health region, definition: Where people work., question: oh_region}}
scores: {{}}
indicators:
  - id: PREC-04
    title: No paid sick days
    domain: precarity
    kind: proportion
    definition: Share with no paid sick days.
    population: {population}
    population_text: Peer supporters in paid roles
    questions: [{questions}]
    condition: {condition}
"""


@pytest.mark.parametrize(
    "population, questions, condition, unknown",
    [
        ("{question: eligible_role, in: [1]}", "paid_sick_days", "{question: paid_sick_dayz, in: [2]}", "paid_sick_dayz"),
        ("{question: eligibel_role, in: [1]}", "paid_sick_days", "{question: paid_sick_days, in: [2]}", "eligibel_role"),
        ("{question: eligible_role, in: [1]}", "hourly_wage", "{question: hourly_wage, below: living_wages}", "living_wages"),
        (
            "{question: eligible_role, in: [1]}", "paid_sick_days",
            "{any: [{question: paid_sick_days, in: [2]}, {question: health_benefit, in: [2]}]}", "health_benefit",
        ),
        # the natural typo: the same misspelt concept in questions and in the rule
        ("{question: eligible_role, in: [1]}", "paid_sick_dayz", "{question: paid_sick_dayz, in: [2]}", "paid_sick_dayz"),
    ],
)
def test_rule_naming_an_unknown_concept_is_an_error(tmp_path, population, questions, condition, unknown):
    path = tmp_path / "indicators.yaml"
    path.write_text(ONE_INDICATOR.format(population=population, questions=questions, condition=condition),
                    encoding="utf-8")
    # Checked against the instruments before anything is computed...
    with pytest.raises(IndicatorError, match=unknown) as error:
        load_checked_catalogue(path, REPO_SURVEYS)
    assert str(path) in str(error.value) and "PREC-04" in str(error.value)
    # ...and, for rules, again when compiled against the loaded warehouse.
    if questions != unknown:
        con = make_warehouse(tmp_path, times(12, paid(paid_sick_days=2, hourly_wage="20", lw_region=1)))
        with pytest.raises(IndicatorError, match=unknown):
            compute(con, load_catalogue(path), RULES)


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    """surveys/indicators.yaml with one analyst's mistake in it."""
    text = INDICATORS.read_text(encoding="utf-8")
    assert text.count(old) >= 1
    path = tmp_path / "indicators.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def position_of(indicator_id: str) -> int:
    return [i["id"] for i in yaml.safe_load(INDICATORS.read_text(encoding="utf-8"))["indicators"]].index(indicator_id)


@pytest.mark.parametrize("old, new, where, what", [
    # a misspelt field name
    ("    condition: {question: paid_sick_days, in: [2]}", "    conditon: {question: paid_sick_days, in: [2]}",
     "indicators[{PREC-04}] (id PREC-04).conditon", "Extra inputs are not permitted"),
    # a value the schema does not allow
    ("    title: No paid sick days\n    domain: precarity\n    kind: proportion",
     "    title: No paid sick days\n    domain: precarity\n    kind: proportions",
     "indicators[{PREC-04}] (id PREC-04).kind", "Input should be 'proportion' or 'mean'"),
    # a number written as words
    ("default_min_n: 11", "default_min_n: ten", "at default_min_n", "valid integer"),
])
def test_a_mistake_in_the_catalogue_names_the_file_and_the_field(tmp_path, old, new, where, what):
    path = broken_copy(tmp_path, old, new)
    with pytest.raises(IndicatorError) as error:
        load_catalogue(path)
    message = str(error.value)
    assert message.startswith(f"{path}: invalid indicator definitions")
    assert where.replace("{PREC-04}", str(position_of("PREC-04"))) in message and what in message
    assert "pydantic" not in message  # the analyst sees the place and the problem, not a library's help links


def test_a_catalogue_that_is_not_yaml_names_the_file(tmp_path):
    path = broken_copy(tmp_path, "default_min_n: 11", "default_min_n: [11")
    with pytest.raises(IndicatorError, match="not valid YAML") as error:
        load_catalogue(path)
    assert str(error.value).startswith(f"{path}: ")
    with pytest.raises(IndicatorError, match=r"cannot read the indicator definitions file"):
        load_catalogue(tmp_path / "missing.yaml")


def test_a_concept_asked_only_in_a_wave_not_yet_loaded_is_not_an_error(tmp_path):
    # DISR-04 uses micro_lived_experience, asked only from 2025: a 2023-only warehouse computes
    # the rest and leaves DISR-04 out, rather than failing.
    catalogue = load_checked_catalogue(INDICATORS, REPO_SURVEYS)
    assert any(i.id == "DISR-04" for i in catalogue.indicators)


@pytest.mark.parametrize("old, new, what", [
    # a question listed twice would weigh double in the average
    ("items: [moral_acted_against_values, moral_witnessed_harm, moral_betrayed]",
     "items: [moral_acted_against_values, moral_witnessed_harm, moral_betrayed, moral_witnessed_harm]",
     "scores.moral_distress_score.items: 'moral_witnessed_harm' is listed twice"),
    # more answers required than there are questions: nobody would have a score
    ("    item_max: 100\n    min_items: 4", "    item_max: 100\n    min_items: 8",
     "scores.burnout_score.min_items: 8 is not between 1 and the number of items (7)"),
    ("    item_max: 10\n    min_items: 7", "    item_max: 0\n    min_items: 7",
     "scores.epi_score.item_max: 0 must be above 0"),
])
def test_a_score_that_cannot_be_computed_as_written_names_the_file_and_the_score(tmp_path, old, new, what):
    path = broken_copy(tmp_path, old, new)
    with pytest.raises(IndicatorError) as error:
        load_catalogue(path)
    assert str(error.value).startswith(f"{path}: ") and what in str(error.value)
