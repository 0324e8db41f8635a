"""The shortcuts pipeline/derivation.py takes before solving a whole-number programme.

Each expected answer is worked out by hand from the few equations written in the test.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.derivation import (
    Contradiction, System, _checks, _learned, alone, disclosures, family_system, still_fixed,
)
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


def linked_cells(kind: str, breakdowns: tuple[str, ...], hidden: tuple[str, ...]) -> pd.DataFrame:
    """One indicator by region (a 3 people, b 20, c 30) and by age (y 23, o 30); overall 53. A
    proportion's yes: a 1, b 10, c 15, y 11, o 15, overall 26; a mean is 10 in every group (sum = 10 n)."""
    rows = [("all", "all", 53, 26), ("region", "a", 3, 1), ("region", "b", 20, 10), ("region", "c", 30, 15),
            ("age", "y", 23, 11), ("age", "o", 30, 15)]
    rows = [r for r in rows if r[0] in breakdowns or r[0] == "all"]
    cells = pd.DataFrame([
        dict(indicator_id="IND-01", wave=2025, breakdown=b, group_code=g, kind=kind, n=n,
             count=c if kind == "proportion" else 0, sum=10.0 * n, suppressed=g in hidden)
        for b, g, n, c in rows
    ])
    reasons = [SMALL_GROUP.format(n=10) if g == "a" else "hidden for a" if g in hidden else None for _, g, _, _ in rows]
    return cells.assign(suppression=pd.Series(reasons, dtype=object))


def verdicts(kind: str, breakdowns: tuple[str, ...]) -> dict[str, bool]:
    """still_fixed's verdict on region a, hidden, for hiding each published cell on its own."""
    cells = linked_cells(kind, breakdowns, ("a",))
    system, targets, _ = family_system(alone("IND-01", kind), cells)
    shown = cells[~cells["suppressed"]]
    trials = [system.hiding[("IND-01", r.breakdown, r.group_code)] for r in shown.itertuples()]
    return dict(zip(shown["group_code"], still_fixed(system, targets[0], trials, set())))


def test_the_rank_test_without_a_partner_knows_which_partners_cannot_protect():
    # Region a = overall - b - c - (nobody outside the regions: the gaps beside b and c tell it), in
    # n and in yes (or in sum). Hiding b or c leaves only a + b (or a + c): a is protected by the
    # equations. The ages add up to the overall figure too (y + o + nobody outside the ages), but
    # hiding the overall figure hides every gap beside it, so how many people are in no region (and
    # in no age group) is no longer known: a is protected. Hiding an age group changes nothing.
    for kind in ("proportion", "mean"):
        assert verdicts(kind, ("region", "age")) == {"all": False, "b": False, "c": False, "y": True, "o": True}
        assert verdicts(kind, ("region",)) == {"all": False, "b": False, "c": False}


def test_the_rank_test_without_a_partner_agrees_with_the_trial_system_built_with_it_hidden():
    # The shortcut takes the partner's equations out of the system already built; the trial
    # system is built again from the cells with the partner hidden, as before the shortcut.
    for kind in ("proportion", "mean"):
        for breakdowns in (("region", "age"), ("region",)):
            for partner, verdict in verdicts(kind, breakdowns).items():
                trial, targets, _ = family_system(alone("IND-01", kind), linked_cells(kind, breakdowns, ("a", partner)))
                target = next(t for t in targets if t.key[3] == "a")
                fixed = [trial.fixes(check[2]) for check in _checks(target)]
                assert verdict == (_learned(target, lambda j: fixed[j]) is not None), (kind, breakdowns, partner)
                if verdict:  # what the equations alone give away, the full solve finds too
                    assert [t.key for t, _ in disclosures(trial, [target])] == [target.key]


def test_figures_that_contradict_their_stated_bounds_are_reported_even_when_the_equations_fix_everything():
    # Region a has 12 people (overall 62 = 12 + 20 + 30) yet its reason says fewer than 10: the
    # equations alone fix a's figures at 12 and 1, and no solution can have them.
    table = cells({"a": SMALL_GROUP.format(n=10)})
    table.loc[table["group_code"] == "a", "n"] = 12
    table.loc[table["group_code"] == "all", "n"] = 62
    system, targets, _ = family_system(alone("IND-01", "proportion"), table)
    assert all(system.fixes(check[2]) for check in _checks(targets[0]))
    with pytest.raises(Contradiction):
        disclosures(system, targets)
