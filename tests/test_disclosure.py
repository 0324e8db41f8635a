"""pipeline.disclosure.suppress and the published_estimates view, on hand-built cells.

Every expected flag below follows from the rules in surveys/disclosure.yaml applied by hand to the
numbers written in the test (min_group_n 10, min_cell 5, complementary suppression on).
"""

from __future__ import annotations

import itertools

import duckdb
import pandas as pd
import pytest

from conftest import REPO
from pipeline.audit import check_derivability
from pipeline.derivation import Family, linked_families
from pipeline.disclosure import COMPLEMENTARY, SMALL_CELL, SMALL_GROUP, DisclosureRules, load_rules, suppress
from pipeline.indicators import load_catalogue
from pipeline.load import schema_sql

RULES = DisclosureRules(min_group_n=10, min_cell=5, complementary=True)


def table(rows, indicator_id="IND-01", wave=2025, breakdown="oh_region", kind="proportion", total=True):
    """Cells of one table: rows are (group_code, n, count); the 'all' row is their sum."""
    records = []
    if total:
        n_all = sum(n for _, n, _ in rows)
        count_all = None if kind == "mean" else sum(c for _, _, c in rows)
        records.append(dict(indicator_id=indicator_id, wave=wave, breakdown="all", group_code="all",
                            kind=kind, n=n_all, count=count_all))
    for code, n, count in rows:
        records.append(dict(indicator_id=indicator_id, wave=wave, breakdown=breakdown, group_code=code,
                            kind=kind, n=n, count=None if kind == "mean" else count))
    return pd.DataFrame(records)


def status(result: pd.DataFrame, breakdown="oh_region") -> dict[str, tuple[bool, str | None]]:
    rows = result[result["breakdown"] == breakdown]
    return {
        r.group_code: (bool(r.suppressed), None if pd.isna(r.suppression) else r.suppression)
        for r in rows.itertuples()
    }


def reason_allows(reason: str | None, n: int, c: int, rules: DisclosureRules) -> bool:
    """What a reader learns about a hidden cell from the published reason."""
    passes_primary = n >= rules.min_group_n and min(c, n - c) >= rules.min_cell
    if reason == SMALL_GROUP.format(n=rules.min_group_n):
        return n < rules.min_group_n
    if reason == SMALL_CELL.format(n=rules.min_cell):
        return n >= rules.min_group_n and min(c, n - c) < rules.min_cell
    if reason == COMPLEMENTARY:
        return passes_primary
    return True


def feasible_counts(published: list[dict], target: str, rules: DisclosureRules) -> set[int]:
    """Every count of group `target` consistent with what is published for its table.

    `published` holds the 'all' row and the group rows as a reader sees them: numbers of hidden
    rows are None, the reason is shown. Hidden groups have n >= 1 and 0 <= count <= n; their n
    and counts add up to the total minus the published groups.
    """
    total = next(r for r in published if r["group_code"] == "all")
    groups = [r for r in published if r["group_code"] != "all"]
    shown = [r for r in groups if not r["suppressed"]]
    hidden = [r for r in groups if r["suppressed"]]
    n_left = total["n"] - sum(r["n"] for r in shown)
    c_left = total["count"] - sum(r["count"] for r in shown)
    target_index = [r["group_code"] for r in hidden].index(target)
    found: set[int] = set()

    def assign(i: int, n_rest: int, c_rest: int, chosen: list[tuple[int, int]]) -> None:
        if i == len(hidden) - 1:  # the last hidden group takes what is left
            if n_rest >= 1 and 0 <= c_rest <= n_rest and reason_allows(hidden[i]["suppression"], n_rest, c_rest, rules):
                found.add((chosen + [(n_rest, c_rest)])[target_index][1])
            return
        for n in range(1, n_rest):
            for c in range(0, min(n, c_rest) + 1):
                if reason_allows(hidden[i]["suppression"], n, c, rules):
                    assign(i + 1, n_rest - n, c_rest - c, chosen + [(n, c)])

    assign(0, n_left, c_left, [])
    return found


def as_published(result: pd.DataFrame, breakdown: str) -> list[dict]:
    rows = result[result["breakdown"].isin(["all", breakdown])]
    out = []
    for r in rows.itertuples():
        hide = bool(r.suppressed)
        out.append(dict(group_code=r.group_code, suppressed=hide,
                        suppression=None if pd.isna(r.suppression) else r.suppression,
                        n=None if hide else int(r.n), count=None if hide else int(r.count)))
    return out


# --- primary suppression ---------------------------------------------------------------------


def test_group_smaller_than_min_group_n_is_hidden_and_ten_is_shown():
    # counts chosen so that min_cell never applies (count and complement >= 5)
    cells = table([("1", 9, 5), ("2", 10, 5), ("3", 40, 20), ("4", 3, 1), ("5", 60, 30)])
    result = suppress(cells, RULES)
    got = status(result)
    assert got["1"] == (True, "fewer than 10 respondents in the group")  # 9 < 10
    assert got["4"][0] and got["4"][1] == SMALL_GROUP.format(n=10)  # 3 < 10 (and count 1)
    assert got["2"] == (False, None)  # exactly 10 is reportable
    assert got["3"] == (False, None)
    assert got["5"] == (False, None)


@pytest.mark.parametrize(
    "n, count, hidden",
    [
        (20, 0, True),    # nobody: tells each member's answer
        (20, 4, True),    # count 4 < 5
        (20, 5, False),   # count 5 and complement 15: shown
        (20, 15, False),  # complement 5: shown
        (20, 16, True),   # complement 4 < 5
        (20, 20, True),   # everybody
        (10, 5, False),   # smallest reportable group, split 5/5
    ],
)
def test_small_count_or_small_complement_hides_a_proportion(n, count, hidden):
    cells = table([("1", n, count)], breakdown="all", total=False)
    cells["breakdown"] = "all"
    cells["group_code"] = "all"
    result = suppress(cells, RULES)
    assert bool(result["suppressed"].iloc[0]) is hidden
    if hidden:
        assert result["suppression"].iloc[0] == "fewer than 5 respondents answered one way"
    else:
        assert pd.isna(result["suppression"].iloc[0])


def test_min_cell_does_not_apply_to_means():
    # a mean has no count: only the group size matters
    cells = table([("1", 12, None), ("2", 30, None), ("3", 9, None)], kind="mean")
    got = status(suppress(cells, DisclosureRules(complementary=False)))
    assert got["1"] == (False, None)
    assert got["2"] == (False, None)
    assert got["3"] == (True, SMALL_GROUP.format(n=10))


def test_rules_come_from_the_yaml_file(tmp_path):
    path = tmp_path / "disclosure.yaml"
    path.write_text("min_group_n: 20\nmin_cell: 3\ncomplementary: false\n", encoding="utf-8")
    assert load_rules(path) == DisclosureRules(min_group_n=20, min_cell=3, complementary=False)
    cells = table([("1", 19, 9), ("2", 20, 3), ("3", 20, 2), ("4", 40, 20)])
    got = status(suppress(cells, load_rules(path)))
    assert got == {
        "1": (True, "fewer than 20 respondents in the group"),
        "2": (False, None),
        "3": (True, "fewer than 3 respondents answered one way"),
        "4": (False, None),  # no complementary suppression when it is switched off
    }


# --- complementary suppression ---------------------------------------------------------------


def test_one_hidden_group_hides_the_smallest_other_group():
    cells = table([("1", 6, 2), ("2", 30, 14), ("3", 12, 6), ("4", 20, 9)])
    result = suppress(cells, RULES)
    assert status(result) == {
        "1": (True, SMALL_GROUP.format(n=10)),
        "3": (True, COMPLEMENTARY),  # n=12, the smallest of 30, 12, 20
        "2": (False, None),
        "4": (False, None),
    }
    total = result[result["group_code"] == "all"].iloc[0]
    assert not total["suppressed"]  # n=68, count 31


def test_complementary_partner_of_a_small_cell_hide():
    # group 2 hidden by min_cell (count 2); partner is the smallest shown group (n=15)
    cells = table([("1", 40, 20), ("2", 25, 2), ("3", 15, 7), ("4", 18, 9)])
    assert status(suppress(cells, RULES)) == {
        "1": (False, None),
        "2": (True, SMALL_CELL.format(n=5)),
        "3": (True, COMPLEMENTARY),
        "4": (False, None),
    }


def test_hidden_count_cannot_be_worked_out_from_the_total():
    cells = table([("1", 6, 2), ("2", 30, 14), ("3", 12, 6), ("4", 20, 9)])
    published = as_published(suppress(cells, RULES), "oh_region")
    candidates = feasible_counts(published, "1", RULES)
    assert 2 in candidates  # the true value is among them ...
    assert len(candidates) > 1  # ... but not the only one


def test_without_complementary_suppression_the_hidden_count_is_recoverable():
    # the same table with complementary suppression off: the brute force pins the value down,
    # which shows the check above can fail
    cells = table([("1", 6, 2), ("2", 30, 14), ("3", 12, 6), ("4", 20, 9)])
    rules = DisclosureRules(complementary=False)
    published = as_published(suppress(cells, rules), "oh_region")
    assert feasible_counts(published, "1", rules) == {2}  # 31 - 14 - 6 - 9


def test_no_complementary_suppression_when_two_groups_are_already_hidden():
    cells = table([("1", 6, 2), ("2", 30, 14), ("3", 12, 6), ("4", 8, 4)])
    result = suppress(cells, RULES)
    assert status(result) == {
        "1": (True, SMALL_GROUP.format(n=10)),
        "4": (True, SMALL_GROUP.format(n=10)),
        "2": (False, None),
        "3": (False, None),
    }
    published = as_published(result, "oh_region")
    assert len(feasible_counts(published, "1", RULES)) > 1
    assert len(feasible_counts(published, "4", RULES)) > 1


def test_nothing_hidden_means_no_complementary_suppression():
    cells = table([("1", 16, 8), ("2", 30, 14), ("3", 12, 6)])
    assert not suppress(cells, RULES)["suppressed"].any()


def test_complementary_suppression_stays_within_its_table():
    # same groups in two indicators, two waves and two breakdowns: only IND-01 / 2025 / oh_region
    # has a hidden cell, so only that table gets a partner hidden (the work_setting groups of
    # IND-01 / 2025 add up to the same total, 48 respondents of whom 22 said yes)
    parts = [
        table([("1", 6, 2), ("2", 30, 14), ("3", 12, 6)]),
        table([("1", 16, 8), ("2", 30, 14), ("3", 12, 6)], indicator_id="IND-02"),
        table([("1", 16, 8), ("2", 30, 14), ("3", 12, 6)], wave=2024),
        table([("1", 16, 7), ("2", 20, 9), ("3", 12, 6)], breakdown="work_setting").query("breakdown != 'all'"),
    ]
    result = suppress(pd.concat(parts, ignore_index=True), RULES)
    hidden = result[result["suppressed"]]
    assert sorted(zip(hidden["indicator_id"], hidden["wave"], hidden["breakdown"], hidden["group_code"])) == [
        ("IND-01", 2025, "oh_region", "1"),
        ("IND-01", 2025, "oh_region", "3"),
    ]


def test_complementary_suppression_applies_to_means_too():
    # a hidden group mean follows from the total mean and the published n: it needs a partner too
    cells = table([("1", 7, None), ("2", 30, None), ("3", 14, None), ("4", 22, None)], kind="mean")
    assert status(suppress(cells, RULES)) == {
        "1": (True, SMALL_GROUP.format(n=10)),
        "3": (True, COMPLEMENTARY),
        "2": (False, None),
        "4": (False, None),
    }


def test_hidden_means_that_together_are_a_small_group_get_a_partner():
    # Groups 1 (5 people) and 2 (4) are hidden. With the total published, total - shown gives their
    # combined n (9) and sum, so their combined mean: a group of 9, under min_group_n = 10. The
    # smallest shown group (3, 30 people) is hidden with them: together 39.
    cells = table([("1", 5, None), ("2", 4, None), ("3", 30, None), ("4", 40, None)], kind="mean")
    assert status(suppress(cells, RULES)) == {
        "1": (True, SMALL_GROUP.format(n=10)),
        "2": (True, SMALL_GROUP.format(n=10)),
        "3": (True, COMPLEMENTARY),
        "4": (False, None),
    }


def test_hidden_groups_that_together_reach_the_minimum_need_no_partner():
    cells = table([("1", 6, None), ("2", 5, None), ("3", 30, None), ("4", 40, None)], kind="mean")
    assert not status(suppress(cells, RULES))["3"][0]


def test_suppress_does_not_change_its_input_or_the_numbers():
    cells = table([("1", 6, 2), ("2", 30, 14), ("3", 12, 6)])
    before = cells.copy()
    result = suppress(cells, RULES)
    pd.testing.assert_frame_equal(cells, before)
    assert list(result["n"]) == [48, 6, 30, 12]
    assert list(result["count"]) == [22, 2, 14, 6]


# --- the published view ----------------------------------------------------------------------


def test_published_estimates_carry_no_numbers_for_suppressed_cells():
    con = duckdb.connect(":memory:")
    con.execute(schema_sql())
    rows = [
        ("IND-01", 2025, "all", "all", "All respondents", 48, 22, 45.8, 32.0, 60.0, False, None),
        ("IND-01", 2025, "oh_region", "1", "North West", 6, 2, 33.3, 9.7, 70.0, True, SMALL_GROUP.format(n=10)),
        ("IND-01", 2025, "oh_region", "3", "East", 12, 6, 50.0, 25.4, 74.6, True, COMPLEMENTARY),
        ("IND-01", 2025, "oh_region", "5", "Toronto", 30, 14, 46.7, 30.2, 63.9, False, None),
    ]
    con.executemany("INSERT INTO indicator_estimates VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    published = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT group_code, group_label, n, count, estimate, ci_low, ci_high, suppressed, suppression "
            "FROM published_estimates"
        ).fetchall()
    }
    assert published["1"] == ("North West", None, None, None, None, None, True, SMALL_GROUP.format(n=10))
    assert published["3"] == ("East", None, None, None, None, None, True, COMPLEMENTARY)
    assert published["5"] == ("Toronto", 30, 14, 46.7, 30.2, 63.9, False, None)
    assert published["all"] == ("All respondents", 48, 22, 45.8, 32.0, 60.0, False, None)


def test_hidden_groups_that_all_said_yes_together_get_a_partner() -> None:
    # Two small groups, everyone in both answered yes. With the total published, their combined
    # count is total - shown = their combined n: "all of them" would follow. A third group is
    # hidden so that the hidden groups together hold both answers at least min_cell times.
    rows = [
        ("all", 80, 62),
        ("1", 4, 4),
        ("2", 6, 6),
        ("3", 30, 20),
        ("4", 40, 32),
    ]
    cells = pd.DataFrame(
        [{"indicator_id": "X-01", "wave": 2025, "breakdown": "oh_region", "group_code": g, "n": n,
          "count": c, "kind": "proportion"} for g, n, c in rows]
    )
    out = suppress(cells, DisclosureRules(min_group_n=10, min_cell=5, complementary=True)).set_index("group_code")
    hidden = set(out.index[out["suppressed"]]) - {"all"}
    assert {"1", "2"} <= hidden and len(hidden) == 3
    together_n = sum(n for g, n, _ in rows if g in hidden)
    together_count = sum(c for g, _, c in rows if g in hidden)
    assert min(together_count, together_n - together_count) >= 5


# --- across the tables of one wave -----------------------------------------------------------
#
# Two indicators about the same people: ANY-01 "any incivility" (answers 2-5) and FREQ-01 "frequent
# incivility" (answers 4-5), so frequent implies any. Each group's people are of three kinds (atoms,
# worked out by hand): neither (u), any but not frequent (v), both (w); n = u + v + w, the ANY-01
# count is v + w and the FREQ-01 count is w.

LINKED_DEFINITIONS = """
default_breakdowns: [oh_region]
default_min_n: 10
breakdowns:
  oh_region: {title: Region, definition: Region., question: oh_region}
scores: {}
indicators:
  - {id: ANY-01, title: Any incivility, domain: disrespect, kind: proportion, definition: Any.,
     population: {question: eligible_role, in: [1, 2]}, population_text: All, questions: [incivility_ignored],
     condition: {question: incivility_ignored, in: [2, 3, 4, 5]}}
  - {id: FREQ-01, title: Frequent incivility, domain: disrespect, kind: proportion, definition: Frequent.,
     population: {question: eligible_role, in: [1, 2]}, population_text: All, questions: [incivility_ignored],
     condition: {question: incivility_ignored, in: [4, 5]}}
"""
# group: (u, v, w). By hand, with the rules applied table by table:
#   ANY-01 counts A 20/40, B 2/20, C 6/12, D 10/15: B is hidden (2 < 5), partner C (smallest n, 12).
#   FREQ-01 counts A 10/40, B 2/20, C 6/12, D 4/15: B and D are hidden (2 and 4 < 5); together 6 of
#   35 answered yes and 29 no, so no partner is needed within the table.
# Across the two tables: n_D = 15 is shown in ANY-01, so FREQ-01 gives n_B = 87 - 40 - 12 - 15 = 20;
# FREQ-01 counts c_B + c_D = 22 - 10 - 6 = 6 with c_D <= 4 (c_D >= 15 - 4 is impossible), so c_B >= 2;
# ANY-01 counts c_B + c_C = 38 - 20 - 10 = 8 with c_C >= 6 (FREQ-01 shows 6 of C, and frequent
# implies any), so ANY-01's c_B <= 2, and FREQ-01's c_B <= ANY-01's. B is 2 of 20 in both tables.
LINKED_GROUPS = {"A": (20, 10, 10), "B": (18, 0, 2), "C": (6, 0, 6), "D": (5, 6, 4)}
LINKED_FAMILY = {2025: [Family(("ANY-01", "FREQ-01"), ("proportion", "proportion"), ((1, 1), (2, 1), (2, 2)))]}


def linked_cells() -> pd.DataFrame:
    groups = {"all": tuple(sum(g[k] for g in LINKED_GROUPS.values()) for k in range(3)), **LINKED_GROUPS}
    rows = []
    for indicator, counted in (("ANY-01", lambda u, v, w: v + w), ("FREQ-01", lambda u, v, w: w)):
        for code, (u, v, w) in groups.items():
            rows.append(dict(indicator_id=indicator, wave=2025, breakdown="all" if code == "all" else "oh_region",
                             group_code=code, kind="proportion", n=u + v + w, count=counted(u, v, w)))
    return pd.DataFrame(rows)


def hidden_cells(result: pd.DataFrame) -> set[tuple[str, str]]:
    return {(r.indicator_id, r.group_code) for r in result.itertuples() if r.suppressed}


def test_table_by_table_suppression_leaves_a_cell_that_two_tables_give_away():
    # the worked example above, with no link between the indicators: what each table hides
    result = suppress(linked_cells(), RULES)
    assert hidden_cells(result) == {("ANY-01", "B"), ("ANY-01", "C"), ("FREQ-01", "B"), ("FREQ-01", "D")}


def test_linked_indicators_are_protected_together():
    result = suppress(linked_cells(), RULES, LINKED_FAMILY)
    hidden = hidden_cells(result)
    assert {("ANY-01", "B"), ("ANY-01", "C"), ("FREQ-01", "B"), ("FREQ-01", "D")} < hidden
    # one more cell is enough here; a partner of B is the least lost: the same group's other table,
    # or another group of a table (n of C 12 and D 15 are the smallest shown)
    extra = hidden - {("ANY-01", "B"), ("ANY-01", "C"), ("FREQ-01", "B"), ("FREQ-01", "D")}
    assert len(extra) == 1 and extra <= {("ANY-01", "D"), ("FREQ-01", "C")}
    assert set(result.loc[result["suppressed"], "suppression"]) <= {
        SMALL_CELL.format(n=5), COMPLEMENTARY}
    # brute force over every split of the 87 people into the three kinds per group that agrees with
    # what is published: B's (n, count) in FREQ-01 is no longer unique
    assert len(linked_solutions(result, "B")) > 1


def linked_solutions(result: pd.DataFrame, target: str) -> set[tuple[int, int, int]]:
    """Every (n, ANY-01 count, FREQ-01 count) of group `target` consistent with the published cells
    and reasons of both tables (groups' atoms u, v, w >= 0 adding up to the published total)."""
    shown = {(r.indicator_id, r.group_code): (int(r.n), int(r.count)) for r in result.itertuples() if not r.suppressed}
    reasons = {(r.indicator_id, r.group_code): r.suppression for r in result.itertuples() if r.suppressed}
    total = shown[("ANY-01", "all")][0], shown[("ANY-01", "all")][1], shown[("FREQ-01", "all")][1]
    codes = sorted(LINKED_GROUPS)

    def fits(code, u, v, w) -> bool:
        n = u + v + w
        for indicator, count in (("ANY-01", v + w), ("FREQ-01", w)):
            if (indicator, code) in shown and shown[indicator, code] != (n, count):
                return False
            reason = reasons.get((indicator, code))
            if reason is not None and not reason_allows(reason, n, count, RULES):
                return False
        return n >= 1

    options = {code: [(u, v, w) for u in range(41) for v in range(41) for w in range(41) if fits(code, u, v, w)]
               for code in codes}
    last = max(codes, key=lambda c: len(options[c]))  # takes what the others leave of the total
    others = [c for c in codes if c != last]
    found = set()
    for combo in itertools.product(*(options[c] for c in others)):
        n, any_count, frequent = (total[0] - sum(sum(x) for x in combo), total[1] - sum(x[1] + x[2] for x in combo),
                                  total[2] - sum(x[2] for x in combo))
        rest = (n - any_count, any_count - frequent, frequent)
        if min(rest) >= 0 and fits(last, *rest):
            u, v, w = dict(zip(others + [last], [*combo, rest]))[target]
            found.add((u + v + w, v + w, w))
    return found


def test_the_brute_force_recovers_the_cell_from_table_by_table_suppression():
    # the check above can fail: on the table-by-table result only one split is possible
    assert linked_solutions(suppress(linked_cells(), RULES), "B") == {(20, 2, 2)}


def linked_warehouse(result: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse holding the two tables as published, and the questions they use."""
    con = duckdb.connect(":memory:")
    con.execute(schema_sql())
    for concept, kind, codes in (("eligible_role", "single", ["1", "2", "3"]),
                                 ("incivility_ignored", "likert", ["1", "2", "3", "4", "5"])):
        con.execute("INSERT INTO concepts VALUES (2025, ?, 'work', ?, 'none', true, ?, ?, '', '')", [concept, kind, concept, concept])
        con.executemany("INSERT INTO choices VALUES (2025, ?, ?, ?, ?, NULL, false)",
                        [[concept, c, c, c] for c in codes])
    con.executemany(
        "INSERT INTO indicator_catalogue (indicator_id, title, domain, kind, unit, definition, population, questions, "
        "caveats, sort_order) VALUES (?, ?, 'disrespect', 'proportion', '%', '', '', '', '', ?)",
        [["ANY-01", "Any", 0], ["FREQ-01", "Frequent", 1]])
    for r in result.itertuples():
        con.execute("INSERT INTO indicator_estimates VALUES (?, 2025, ?, ?, ?, ?, ?, ?, 0, 100, ?, ?)",
                    [r.indicator_id, r.breakdown, r.group_code, r.group_code, int(r.n), int(r.count),
                     100.0 * r.count / r.n, bool(r.suppressed), None if pd.isna(r.suppression) else r.suppression])
    return con


def test_the_audit_catches_a_cell_given_away_across_two_tables(tmp_path):
    definitions = tmp_path / "indicators.yaml"
    definitions.write_text(LINKED_DEFINITIONS, encoding="utf-8")
    catalogue = load_catalogue(definitions)
    bypassed = check_derivability(linked_warehouse(suppress(linked_cells(), RULES)), catalogue)
    assert not bypassed.passed
    # B as worked out above, and with it each partner: ANY-01's C is 8 - 2 = 6 of 12 and FREQ-01's D
    # is 6 - 2 = 4 of 15
    assert {(d["indicator_id"], d["group_code"], d["disclosed"]) for d in bypassed.details} == {
        ("ANY-01", "B", "n = 20 and count = 2"), ("FREQ-01", "B", "n = 20 and count = 2"),
        ("ANY-01", "C", "n = 12 and count = 6"), ("FREQ-01", "D", "n = 15 and count = 4")}
    # table by table (no definitions given), the audit sees nothing wrong: the link is what matters
    assert check_derivability(linked_warehouse(suppress(linked_cells(), RULES))).passed
    protected = check_derivability(linked_warehouse(suppress(linked_cells(), RULES, LINKED_FAMILY)), catalogue)
    assert protected.passed, protected.details
    used = protected.equations[0]
    assert used["wave"] == 2025 and used["linked_indicators"] == ["ANY-01, FREQ-01"]


def test_links_between_indicators_come_from_their_definitions(tmp_path):
    definitions = tmp_path / "indicators.yaml"
    definitions.write_text(LINKED_DEFINITIONS, encoding="utf-8")
    con = linked_warehouse(linked_cells().assign(suppressed=False, suppression=None))
    kinds = {"eligible_role": "single", "incivility_ignored": "likert"}
    assert linked_families(con, load_catalogue(definitions), kinds, linked_cells()) == LINKED_FAMILY


def test_the_real_catalogue_links_what_its_definitions_share(tmp_path):
    # by hand from surveys/indicators.yaml: the four precarity bands cut one score and PREC-01
    # averages it (same people: one atom per band); no sick days / no benefits / neither use two
    # questions (atoms: every pattern of answering them); frequent incivility implies any.
    from pipeline.indicators import load_checked_catalogue, instrument_kinds

    catalogue = load_checked_catalogue(REPO / "surveys" / "indicators.yaml", REPO / "surveys")
    kinds = {**instrument_kinds(REPO / "surveys"), **{s: "numeric" for s in catalogue.scores}}
    con = duckdb.connect(":memory:")
    con.execute(schema_sql())
    for concept, codes in (("eligible_role", ["1", "2", "3"]), ("paid_sick_days", ["1", "2"]),
                           ("health_benefits", ["1", "2"])):
        con.executemany("INSERT INTO choices VALUES (2025, ?, ?, ?, ?, NULL, false)", [[concept, c, c, c] for c in codes])
    ids = ["PREC-01", "PREC-07", "PREC-08", "PREC-09", "PREC-02", "PREC-04", "PREC-10", "PREC-11", "DISR-01", "DISR-02",
           "DISR-03"]
    cells = pd.DataFrame({"indicator_id": ids, "wave": 2025})
    families = {f.indicators: f.atoms for f in linked_families(con, catalogue, kinds, cells)[2025]}
    assert set(families[("PREC-01", "PREC-07", "PREC-08", "PREC-09", "PREC-02")]) == {
        (1, 2, 1, 1, 1), (1, 1, 2, 1, 1), (1, 1, 1, 2, 1), (1, 1, 1, 1, 2)}
    # (PREC-04, PREC-10, PREC-11): sick days answered yes (1) or no (2), benefits the same, or unanswered
    assert set(families[("PREC-04", "PREC-10", "PREC-11")]) == {
        (1, 0, 0), (2, 0, 0), (0, 1, 0), (0, 2, 0),  # one question answered
        (1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 2, 2)}  # both: counted in PREC-11 only when both say no
    assert set(families[("DISR-01", "DISR-02")]) == {(1, 1), (2, 1), (2, 2)}
    assert families[("DISR-03",)] == ((1,), (2,))


def test_people_in_no_group_are_protected_like_a_hidden_group():
    # 100 people in the population, 40 of them yes; groups A and B hold 90 of them, 37 yes. The 10
    # others (who did not answer the breakdown's question) include 3 yes: fewer than 5 answering one
    # way, which the overall figure minus the groups would tell.
    cells = table([("A", 30, 12), ("B", 60, 25)])
    cells.loc[cells["group_code"] == "all", ["n", "count"]] = [100, 40]
    result = suppress(cells, RULES)
    # the largest group is hidden with them: the overall figure already tells most about it
    assert status(result) == {"A": (False, None), "B": (True, COMPLEMENTARY)}
    # a reader who even knows there are 10 of them (so B has 60) knows B passes the primary rules
    # (the reason says so): 5 <= B's count <= 55, and the 10 have 40 - 12 - B's count yes
    assert {40 - 12 - b for b in range(5, 56) if 0 <= 40 - 12 - b <= 10} == set(range(0, 11))
    assert set(result["no_group"].dropna()) == {SMALL_CELL.format(n=5)}


def test_people_in_no_group_who_pass_the_rules_hide_nothing():
    cells = table([("A", 30, 12), ("B", 60, 25)])
    cells.loc[cells["group_code"] == "all", ["n", "count"]] = [110, 45]  # 20 others, 8 of them yes
    result = suppress(cells, RULES)
    assert not result["suppressed"].any() and result["no_group"].isna().all()


def test_a_few_people_in_no_group_of_a_mean_table_hide_the_largest_group():
    cells = table([("A", 30, None), ("B", 12, None), ("C", 60, None)], kind="mean")
    cells.loc[cells["group_code"] == "all", "n"] = 106  # 4 in no group: fewer than 10
    assert status(suppress(cells, RULES)) == {"A": (False, None), "B": (False, None), "C": (True, COMPLEMENTARY)}


def test_people_in_no_group_of_linked_indicators_are_protected_together():
    # The worked example above, with 16 more people in no region: 7 neither, 7 any but not frequent,
    # 2 frequent. FREQ-01's 16 (2 yes) fail the rules; ANY-01's (9 yes of 16) pass, but they are the
    # same people, so ANY-01's gaps would tell FREQ-01's as well: neither table's gaps are published.
    cells = linked_cells()
    overall = cells["group_code"] == "all"
    cells.loc[overall, "n"] += 16
    cells.loc[overall, "count"] += [9 if i == "ANY-01" else 2 for i in cells.loc[overall, "indicator_id"]]
    result = suppress(cells, RULES, LINKED_FAMILY)
    regions = result[result["breakdown"] == "oh_region"]
    assert regions["gaps_withheld"].all()
    assert set(regions.loc[regions["indicator_id"] == "FREQ-01", "no_group"]) == {SMALL_CELL.format(n=5)}
    assert suppress(cells, RULES).query("breakdown == 'oh_region'").groupby("indicator_id")["gaps_withheld"].all().to_dict() \
        == {"ANY-01": False, "FREQ-01": True}
    # With their number unknown, ANY-01's B needs no partner: B and the 16 together are 36 people,
    # 11 yes, and that is all that follows.
    assert hidden_cells(result) == {("ANY-01", "B"), ("FREQ-01", "B"), ("FREQ-01", "D")}
    # By hand, from what is published: ANY-01 gives B + the 16 as 36 people, 11 yes (103 - 67, 47 - 36);
    # FREQ-01 gives B + D + the 16 as 8 yes (24 - 16), with D's 15 people from ANY-01, and D at most 4
    # (its reason; 15 - 4 is more than the 10 ANY-01 counts). Frequent implies any. The reasons: in B,
    # and among the people in no group for FREQ-01, fewer than 5 answered one way.
    found = set()
    for n_b in range(1, 36):
        n_r = 36 - n_b
        for any_b in range(0, min(n_b, 11) + 1):
            any_r = 11 - any_b
            if any_r > n_r or min(any_b, n_b - any_b) > 4:
                continue
            for freq_d in range(0, 5):
                for freq_b in range(0, min(any_b, 8 - freq_d) + 1):
                    freq_r = 8 - freq_d - freq_b
                    if freq_r <= any_r and min(freq_b, n_b - freq_b) <= 4 and min(freq_r, n_r - freq_r) <= 4:
                        found.add((n_r, freq_r))
    assert (16, 2) in found and len(found) > 1
