"""k-anonymity and l-diversity of the stored microdata, on a warehouse small enough to work out by hand:
a multiple-choice key question (the same choices in any order are one class), an unanswered key
question (its own class), a missing code and a multiple-choice sensitive answer."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from pipeline.anonymity import MicrodataRules, load_privacy_rules, privacy_path
from pipeline.audit import check_k_anonymity, check_l_diversity, equivalence_classes
from pipeline.config import Paths
from pipeline.load import connect

RULES = MicrodataRules.model_validate({
    "k": 2, "l_diversity": {"l": 2},
    "key_quasi_identifiers": {"region": {"levels": [{"name": "as asked"}]},
                              "roles": {"levels": [{"name": "as asked"}]}}})
ANSWERS = [  # (respondent, concept, value)
    ("r1", "region", "1"), ("r1", "roles", "a"), ("r1", "roles", "b"), ("r1", "burnout", "1"), ("r1", "grounds", "x"),
    ("r2", "region", "1"), ("r2", "roles", "b"), ("r2", "roles", "a"), ("r2", "burnout", "2"),
    ("r3", "region", "1"), ("r3", "roles", "a"), ("r3", "burnout", "9"),
    ("r4", "region", "2"), ("r4", "roles", "a"), ("r4", "burnout", "1"), ("r4", "grounds", "x"), ("r4", "grounds", "y"),
    ("r5", "region", "2"), ("r5", "roles", "a"), ("r5", "burnout", "1"), ("r5", "grounds", "y"), ("r5", "grounds", "x"),
    ("r6", "roles", "a"), ("r6", "burnout", "2"),
]


def warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE respondents (respondent_key VARCHAR PRIMARY KEY, wave INTEGER)")
    con.execute("INSERT INTO respondents SELECT 'r' || i, 2025 FROM range(1, 7) t(i)")
    con.execute("CREATE TABLE answers (respondent_key VARCHAR, wave INTEGER, concept VARCHAR, value VARCHAR)")
    con.executemany("INSERT INTO answers VALUES (?, 2025, ?, ?)", ANSWERS)
    con.execute("CREATE TABLE concepts (wave INTEGER, concept VARCHAR, stored BOOLEAN, disclosure VARCHAR, type VARCHAR)")
    con.executemany("INSERT INTO concepts VALUES (2025, ?, true, ?, ?)",
                    [("region", "quasi", "single"), ("roles", "quasi", "multiple"),
                     ("burnout", "sensitive", "likert"), ("grounds", "sensitive", "multiple")])
    con.execute("CREATE TABLE choices (wave INTEGER, concept VARCHAR, code VARCHAR, missing BOOLEAN)")
    con.executemany("INSERT INTO choices VALUES (2025, ?, ?, ?)",
                    [("burnout", "1", False), ("burnout", "2", False), ("burnout", "9", True),
                     ("grounds", "x", False), ("grounds", "y", False)])
    con.execute("CREATE TABLE column_protection (wave INTEGER, concept VARCHAR, cells_suppressed INTEGER, "
                "k_anonymity_key BOOLEAN, level_name VARCHAR)")
    con.execute("INSERT INTO column_protection VALUES (2025, 'region', 0, true, 'as asked')")
    return con


def test_groups_are_the_key_answers_whatever_their_order_and_unanswered_is_a_group() -> None:
    # Classes: r1 and r2 (region 1, roles a and b), r3 (1, a), r4 and r5 (2, a), r6 (no region, a).
    check = check_k_anonymity(warehouse(), RULES)
    assert not check.passed
    assert check.details == [{"wave": 2025, "respondents": 6, "key": "region, roles", "groups": 4,
                              "smallest_group": 1, "respondents_at_risk": 2, "cells_suppressed": {"region": 0},
                              "generalised_to": {"region": "as asked"}}]


def test_a_multiple_choice_of_more_codes_than_a_bit_mask_holds_is_still_one_set() -> None:
    # r1 and r2 also chose 70 more roles, in opposite orders: still one class (r3 is not in it).
    con = warehouse()
    more = [f"z{i}" for i in range(70)]
    con.executemany("INSERT INTO answers VALUES (?, 2025, 'roles', ?)",
                    [("r1", v) for v in more] + [("r2", v) for v in reversed(more)])
    check = check_k_anonymity(con, RULES)
    assert (check.details[0]["groups"], check.details[0]["smallest_group"], check.details[0]["respondents_at_risk"]) \
        == (4, 1, 2)


def test_l_diversity_counts_the_different_answers_in_each_group() -> None:
    # burnout: r1 and r2 answer 1 and 2 (l 2); r3's 9 is a missing code, so its group has no answer;
    # r4 and r5 both 1 (l 1); r6 alone (l 1). grounds: r1 x (l 1); r4 and r5 both x and y (l 1).
    con = warehouse()
    with equivalence_classes(con, RULES) as classes:
        check = check_l_diversity(con, RULES, classes)
    assert check.details == [
        {"wave": 2025, "question": "burnout", "l": 1, "groups": 3, "groups_below_l": 2},
        {"wave": 2025, "question": "grounds", "l": 1, "groups": 2, "groups_below_l": 2},
    ]
    assert check.passed  # reported, not enforced
    assert check.summary == "lowest l 1; 4 group-question pairs under l = 2 (reported, not enforced)"


def test_the_checks_leave_no_table_behind_for_the_identifier_scan_to_read() -> None:
    con = warehouse()
    listing = "SELECT table_catalog, table_name FROM information_schema.tables ORDER BY ALL"
    tables = con.execute(listing).fetchall()
    check_k_anonymity(con, RULES)
    check_l_diversity(con, RULES)
    assert con.execute(listing).fetchall() == tables


def _pandas_microdata(con: duckdb.DuckDBPyConnection, micro: MicrodataRules) -> tuple[list[dict], list[dict]]:
    """k-anonymity's and l-diversity's details worked out in pandas, apart from the SQL: a respondent's
    class is the tuple of its key answers (a multiple choice: the set of its codes; None: unanswered)."""
    answers = con.execute("SELECT respondent_key, wave, concept, value FROM answers").df()
    respondents = con.execute("SELECT respondent_key, wave FROM respondents").df()
    concepts = con.execute("SELECT wave, concept, type, disclosure, stored FROM concepts").df()
    choices = con.execute("SELECT wave, concept, code, missing FROM choices").df()
    k_details, l_details = [], []
    for wave in sorted(respondents.wave.unique()):
        asked = concepts[(concepts.wave == wave) & concepts.stored]
        types = dict(zip(asked.concept, asked.type))
        keys = [c for c in micro.key_quasi_identifiers if c in types]
        people = respondents[respondents.wave == wave].respondent_key
        given = answers[answers.wave == wave]
        columns = {}
        for concept in keys:
            values = given[given.concept == concept].groupby("respondent_key").value
            columns[concept] = values.agg(lambda v: frozenset(v)) if types[concept] == "multiple" else values.agg("max")
        classes = pd.Series([tuple(columns[c].get(r) for c in keys) for r in people], index=people.values)
        sizes = classes.value_counts()
        k_details.append({"wave": int(wave), "respondents": len(people), "groups": len(sizes),
                          "smallest_group": int(sizes.min()), "respondents_at_risk": int(sizes[sizes < micro.k].sum())})
        sensitive = asked[(asked.disclosure == "sensitive") & (asked.type != "text")]
        kept = choices[(choices.wave == wave) & ~choices.missing][["concept", "code"]]
        for concept in sorted(sensitive.concept):
            rows = given[given.concept == concept].merge(kept, left_on=["concept", "value"], right_on=["concept", "code"])
            if rows.empty:
                continue
            if types[concept] == "multiple":
                answer = rows.groupby("respondent_key").value.agg(lambda v: tuple(sorted(v)))
            else:
                answer = rows.set_index("respondent_key").value
            diversity = pd.DataFrame({"class": classes.loc[answer.index].values, "answer": answer.values}) \
                .groupby("class").answer.nunique()
            l_details.append({"wave": int(wave), "question": concept, "l": int(diversity.min()),
                              "groups": len(diversity), "groups_below_l": int((diversity < micro.l_diversity.l).sum())})
    return k_details, l_details


@pytest.mark.parametrize("k, l_min", [(None, None), (3, 4)])
def test_the_checks_agree_with_pandas_on_the_synthetic_warehouse(loaded: Paths, k, l_min) -> None:
    micro = load_privacy_rules(privacy_path(loaded)).microdata
    if k is not None:  # other thresholds: more groups at risk or below l
        micro = micro.model_copy(update={"k": k, "l_diversity": micro.l_diversity.model_copy(update={"l": l_min})})
    k_expected, l_expected = _pandas_microdata(duckdb.connect(str(loaded.warehouse), read_only=True), micro)
    with connect(loaded.warehouse, read_only=True) as con, equivalence_classes(con, micro) as classes:
        k_check, l_check = check_k_anonymity(con, micro, classes), check_l_diversity(con, micro, classes)
    assert [{f: d[f] for f in k_expected[0]} for d in k_check.details] == k_expected
    assert l_check.details == l_expected
    assert l_expected and any(d["groups_below_l"] for d in l_expected)  # the comparison is not vacuous
