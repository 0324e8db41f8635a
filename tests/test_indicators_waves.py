"""Across waves: comparability as stated in surveys/indicators.yaml, and the change since the
previous wave with its interval (statsmodels' Newcombe, scipy's Welch) and a plain statement."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from pipeline.disclosure import HIDDEN_WAVE
from pipeline.indicators import CHANGE_DOWN, CHANGE_UP, NOISE, NOT_COMPARABLE, IndicatorError, compute, load_catalogue
from test_indicators import EPI_ALL_1, EPI_MAX, RULES, make_warehouse, paid, run, times, volunteer

CHANGE_COLUMNS = ["previous_wave", "comparability", "comparability_note", "n", "estimate", "previous_n",
                  "previous_estimate", "change", "change_low", "change_high", "statement", "suppressed", "suppression"]


def changes(con, indicator_id: str, wave: int = 2025, view: str = "indicator_changes") -> dict[tuple[str, str], dict]:
    rows = con.execute(
        f"SELECT breakdown, group_code, {', '.join(CHANGE_COLUMNS)} FROM {view} WHERE indicator_id = ? AND wave = ?",
        [indicator_id, wave],
    ).fetchall()
    return {(r[0], r[1]): dict(zip(CHANGE_COLUMNS, r[2:])) for r in rows}


def in_wave(wave: int, people: list[dict]) -> list[dict]:
    return [{**p, "wave": wave} for p in people]


def assert_newcombe_change(row, count, n, previous_count, previous_n):
    low, high = confint_proportions_2indep(count, n, previous_count, previous_n, method="newcomb", compare="diff")
    assert (row["n"], row["previous_n"]) == (n, previous_n)
    assert row["change"] == pytest.approx(100 * (count / n - previous_count / previous_n), abs=1e-9)
    assert row["change_low"] == pytest.approx(100 * low, abs=1e-9)
    assert row["change_high"] == pytest.approx(100 * high, abs=1e-9)
    assert row["statement"] == (CHANGE_UP if low > 0 else CHANGE_DOWN if high < 0 else NOISE)


def sick_days(wave: int, no: int, yes: int, **answers) -> list[dict]:
    return in_wave(wave, times(no, paid(paid_sick_days=2, **answers)) + times(yes, paid(paid_sick_days=1, **answers)))


def test_change_since_the_previous_wave_for_a_question_asked_the_same_way(tmp_path):
    # 2024: 12 of 30 without paid sick days; 2025: 30 of 40. 2023: 10 of 20.
    con = run(tmp_path, sick_days(2023, 10, 10) + sick_days(2024, 12, 18) + sick_days(2025, 30, 10))
    latest = changes(con, "PREC-04")[("all", "all")]
    assert (latest["previous_wave"], latest["comparability"], latest["comparability_note"]) == (2024, "comparable", "")
    assert_newcombe_change(latest, count=30, n=40, previous_count=12, previous_n=30)
    assert latest["statement"] == CHANGE_UP  # 75% against 40%: far beyond chance
    earlier = changes(con, "PREC-04", wave=2024)[("all", "all")]
    assert earlier["previous_wave"] == 2023
    assert_newcombe_change(earlier, count=12, n=30, previous_count=10, previous_n=20)
    assert earlier["statement"] == NOISE  # 40% against 50% with these n
    assert changes(con, "PREC-04", wave=2023) == {}  # nothing before the first wave


def test_change_by_group_where_the_group_is_in_both_waves(tmp_path):
    people = (sick_days(2024, 8, 8, oh_region=5) + sick_days(2025, 12, 8, oh_region=5)
              + sick_days(2025, 6, 6, oh_region=3))  # East only in 2025: no change to report
    con = run(tmp_path, people)
    rows = changes(con, "PREC-04")
    assert set(rows) == {("all", "all"), ("oh_region", "5")}
    assert_newcombe_change(rows[("oh_region", "5")], count=12, n=20, previous_count=8, previous_n=16)


def test_a_change_is_hidden_when_either_wave_is(tmp_path):
    # Toronto had 6 respondents in 2024 (hidden), 20 in 2025; East 12 and 14.
    people = (sick_days(2024, 3, 3, oh_region=5) + sick_days(2024, 6, 6, oh_region=3)
              + sick_days(2025, 10, 10, oh_region=5) + sick_days(2025, 7, 7, oh_region=3))
    con = run(tmp_path, people)
    rows = changes(con, "PREC-04")
    # 2024: Toronto is a small group and East its complementary partner: both changes hidden
    assert rows[("oh_region", "5")]["suppression"] == HIDDEN_WAVE.format(wave=2024)
    assert rows[("oh_region", "3")]["suppression"] == HIDDEN_WAVE.format(wave=2024)
    assert not rows[("all", "all")]["suppressed"]
    published = changes(con, "PREC-04", view="published_changes")[("oh_region", "5")]
    for column in ("n", "estimate", "previous_n", "previous_estimate", "change", "change_low", "change_high", "statement"):
        assert published[column] is None
    assert published["comparability"] == "comparable"  # what kind of comparison it was stays visible


def cbi(code: int, reversed_code: int) -> dict:
    items = ["cbi_emotionally_exhausting", "cbi_burnt_out", "cbi_frustrate", "cbi_worn_out",
             "cbi_exhausted_morning", "cbi_every_hour_tiring", "cbi_energy_leisure"]
    return dict(zip(items, [code] * 6 + [reversed_code]))


def test_mean_change_is_a_welch_difference(tmp_path):
    before = [100.0] * 5 + [50.0] * 8 + [0.0] * 2
    after = [75.0] * 9 + [25.0] * 4 + [100.0] * 1
    people = (in_wave(2024, times(5, volunteer(**cbi(1, 5))) + times(8, paid(**cbi(3, 3))) + times(2, paid(**cbi(5, 1))))
              + times(9, paid(**cbi(2, 4))) + times(4, volunteer(**cbi(4, 2))) + times(1, paid(**cbi(1, 5))))
    con = run(tmp_path, people)
    row = changes(con, "WELL-01")[("all", "all")]
    low, high = stats.ttest_ind(after, before, equal_var=False).confidence_interval()
    assert (row["n"], row["previous_n"]) == (14, 15)
    assert row["change"] == pytest.approx(statistics.fmean(after) - statistics.fmean(before), abs=1e-6)
    assert row["change_low"] == pytest.approx(low, abs=1e-6)
    assert row["change_high"] == pytest.approx(high, abs=1e-6)
    assert row["statement"] == (CHANGE_UP if low > 0 else CHANGE_DOWN if high < 0 else NOISE)


def valued(wave: int, disagree: int, agree: int) -> list[dict]:
    return in_wave(wave, times(disagree, paid(valued_administrators=2)) + times(agree, volunteer(valued_administrators=4)))


def test_a_question_reworded_between_waves_is_not_compared_when_the_catalogue_says_so(tmp_path):
    # 2024 asked about feeling "respected", 2025 about feeling "valued": stated not comparable
    con = run(tmp_path, valued(2023, 6, 9) + valued(2024, 7, 8) + valued(2025, 20, 5))
    latest = changes(con, "DISR-03")[("all", "all")]
    assert latest["comparability"] == "not_comparable" and "respected" in latest["comparability_note"]
    assert (latest["change"], latest["change_low"], latest["change_high"]) == (None, None, None)
    assert latest["statement"] == NOT_COMPARABLE
    assert (latest["n"], latest["previous_n"]) == (25, 15)  # both figures still stand on their own
    # 2023 and 2024 asked it the same way: compared
    earlier = changes(con, "DISR-03", wave=2024)[("all", "all")]
    assert earlier["comparability"] == "comparable"
    assert_newcombe_change(earlier, count=7, n=15, previous_count=6, previous_n=15)


def incivility(wave: int, uncivil: int, civil: int) -> list[dict]:
    never = dict(incivility_condescending=1, incivility_ignored=1, incivility_demeaning=1, incivility_doubted=1)
    return in_wave(wave, times(uncivil, paid(**{**never, "incivility_doubted": 3})) + times(civil, paid(**never)))


def test_comparable_with_a_caveat_is_compared_and_carries_its_note(tmp_path):
    # "in the past year" (2024) against "in the past 12 months" (2025)
    con = run(tmp_path, incivility(2024, 10, 10) + incivility(2025, 15, 5))
    row = changes(con, "DISR-01")[("all", "all")]
    assert row["comparability"] == "comparable_with_caveat" and "past 12 months" in row["comparability_note"]
    assert_newcombe_change(row, count=15, n=20, previous_count=10, previous_n=20)


EPI_2024_ZERO = {k: v for k, v in EPI_ALL_1.items() if k not in ("epi_on_call", "epi_cash_income")}
EPI_2024_MAX = {k: v for k, v in EPI_MAX.items() if k not in ("epi_on_call", "epi_cash_income")}


def test_epi_score_2024_has_eight_items_and_compares_with_a_caveat(tmp_path):
    people = (in_wave(2024, times(6, paid(**EPI_2024_ZERO)) + times(6, paid(**EPI_2024_MAX)))
              + times(10, paid(**EPI_ALL_1)) + times(5, paid(**EPI_MAX)))
    con = run(tmp_path, people)
    row = changes(con, "PREC-02")[("all", "all")]
    assert row["comparability"] == "comparable_with_caveat" and "8 of the 10" in row["comparability_note"]
    assert_newcombe_change(row, count=5, n=15, previous_count=6, previous_n=12)
    mean = changes(con, "PREC-01")[("all", "all")]
    assert mean["change"] == pytest.approx(100 * 5 / 15 - 50.0, abs=1e-6)


ONE_INDICATOR = """
default_breakdowns: []
default_min_n: 10
breakdowns: {{}}
scores: {{}}
indicators:
  - id: DISR-03
    title: Not feeling valued by administrators
    domain: disrespect
    kind: proportion
    definition: Share who disagree that administrators value them.
    population: {{question: eligible_role, in: [1, 2]}}
    population_text: All peer supporters
    questions: [valued_administrators]
    condition: {{question: valued_administrators, in: [1, 2]}}
{comparability}
"""


def test_a_reworded_question_without_a_comparability_statement_stops_the_run(tmp_path):
    path = tmp_path / "indicators.yaml"
    path.write_text(ONE_INDICATOR.format(comparability=""), encoding="utf-8")
    con = make_warehouse(tmp_path, valued(2024, 7, 8) + valued(2025, 20, 5))
    with pytest.raises(IndicatorError) as error:
        compute(con, load_catalogue(path), RULES)
    message = str(error.value)
    for part in (str(path), "DISR-03", "valued_administrators", "2024", "2025", "comparability"):
        assert part in message


def test_a_person_may_judge_a_reworded_question_comparable(tmp_path):
    path = tmp_path / "indicators.yaml"
    statement = "    comparability:\n      - {waves: [2024, 2025], status: comparable}\n"
    path.write_text(ONE_INDICATOR.format(comparability=statement), encoding="utf-8")
    con = run(tmp_path, valued(2024, 7, 8) + valued(2025, 20, 5), catalogue=path)
    row = changes(con, "DISR-03")[("all", "all")]
    assert row["comparability"] == "comparable"
    assert_newcombe_change(row, count=20, n=25, previous_count=7, previous_n=15)


@pytest.mark.parametrize(
    "statement, problem",
    [
        ("{waves: [2024, 2025], status: not_comparable}", "needs a note"),
        ("{waves: [2025, 2024], status: comparable}", "earlier wave first"),
        ("{waves: [2024, 2025], status: roughly}", "status"),
    ],
)
def test_a_comparability_statement_must_be_complete(tmp_path, statement, problem):
    path = tmp_path / "indicators.yaml"
    path.write_text(ONE_INDICATOR.format(comparability=f"    comparability:\n      - {statement}\n"), encoding="utf-8")
    with pytest.raises(IndicatorError, match=problem) as error:
        load_catalogue(path)
    assert str(path) in str(error.value)
