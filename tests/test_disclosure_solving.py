"""The shortcuts pipeline/derivation.py takes before solving a whole-number programme.

Each expected answer is worked out by hand from the few equations written in the test.
"""

from __future__ import annotations

import pandas as pd

from pipeline.derivation import System, alone, disclosures, family_system
from pipeline.disclosure import SMALL_GROUP


def system_of(equations: list[tuple[dict[int, float], float]], variables: int) -> System:
    system = System()
    for k in range(variables):
        system.variable(f"x{k}", True, 0, 100)
    system.equations.extend(equations)
    return system


def test_an_expression_fixed_by_the_equations_alone_is_recognised():
    # x0 + x1 = 5 and x1 - x2 = 1: x0 + 2 x1 - x2 is their sum (always 6); x0 alone can move
    # (x0 = 5, x1 = 0 or x0 = 4, x1 = 1), and so can x1 + x2.
    system = system_of([({0: 1.0, 1: 1.0}, 5.0), ({1: 1.0, 2: -1.0}, 1.0)], 3)
    assert system.fixes({0: 1.0, 1: 2.0, 2: -1.0})
    assert system.fixes({0: -2.0, 1: -2.0})  # minus twice the first equation
    assert not system.fixes({0: 1.0})
    assert not system.fixes({1: 1.0, 2: 1.0})


def test_dependent_equations_do_not_fix_more_than_they_say():
    # The third equation is the first minus the second: the row space has two dimensions only.
    system = system_of([({0: 1.0, 1: 1.0}, 5.0), ({1: 1.0, 2: -1.0}, 1.0), ({0: 1.0, 2: 1.0}, 4.0)], 3)
    assert system.fixes({0: 1.0, 2: 1.0})
    assert not system.fixes({2: 1.0})


def test_the_linear_relaxation_bounds_the_whole_number_answers():
    # x0 + x1 = 3 with 0 <= x0, x1: x0 is at most 3 (a bound of 3 holds, one of 2.5 does not)
    # and at least 0.
    system = system_of([({0: 1.0, 1: 1.0}, 3.0)], 2)
    assert system.relaxed_within({0: 1.0}, 1, 3.0)
    assert not system.relaxed_within({0: 1.0}, 1, 2.5)
    assert system.relaxed_within({0: 1.0}, -1, 0.0)
    assert not system.relaxed_within({0: 1.0}, -1, 0.5)


def cells(hidden: dict[str, str]) -> pd.DataFrame:
    """One proportion by region: a 3 people (1 yes), b 20 (10 yes), c 30 (15 yes); overall 53 (26)."""
    rows = [("all", "all", 53, 26), ("region", "a", 3, 1), ("region", "b", 20, 10), ("region", "c", 30, 15)]
    return pd.DataFrame([
        dict(indicator_id="IND-01", wave=2025, breakdown=b, group_code=g, kind="proportion", n=n, count=c, sum=0.0,
             suppressed=g in hidden, suppression=hidden.get(g))
        for b, g, n, c in rows
    ])


def test_a_single_hidden_group_is_worked_out_from_the_total_with_or_without_shortcuts():
    # Hidden a alone: 53 - 20 - 30 = 3 people and 26 - 10 - 15 = 1 yes.
    family = alone("IND-01", "proportion")
    system, targets, _ = family_system(family, cells({"a": SMALL_GROUP.format(n=10)}))
    expected = [(("IND-01", 2025, "region", "a"), "n = 3 and count = 1")]
    assert [(t.key, what) for t, what in disclosures(system, targets)] == expected
    assert [(t.key, what) for t, what in disclosures(system, targets, moving=set(), first=True)] == expected


def test_two_hidden_groups_protect_each_other_and_what_moved_is_remembered():
    # Hidden a (fewer than 10 people) and b: together 23 people and 11 yes, split 1..9 / 22..14.
    family = alone("IND-01", "proportion")
    system, targets, _ = family_system(family, cells({"a": SMALL_GROUP.format(n=10), "b": "hidden for a"}))
    moving: set[tuple] = set()
    assert disclosures(system, targets, moving=moving) == []
    assert moving == {(("IND-01", 2025, "region", g), role) for g in "ab" for role in ("yes", "no")}
