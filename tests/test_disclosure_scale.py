"""Disclosure control on exports other than the built-in synthetic consultation.

bench/large_export.py draws a 2025 export of any size from the questionnaire. At 200 rows most
cells of the precarity bands are hidden, including some overall figures; a group's gap against
everyone else used to stay published beside them, and everyone else's figure plus the group's and
the people in no group of the breakdown adds back up to the hidden overall figure.
"""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from conftest import REPO, make_project
from pipeline.audit import check_derivability
from pipeline.disclosure import HIDDEN_OVERALL, DisclosureRules, load_rules, suppress_gaps
from pipeline.indicators import load_catalogue
from pipeline.load import connect
from pipeline.run import run_load

sys.path.insert(0, str(REPO / "bench"))
import large_export  # noqa: E402  (bench/ is not a package)

RULES = DisclosureRules(min_group_n=10, min_cell=5, complementary=True)


def test_a_gap_is_hidden_with_the_overall_figure():
    # Region 1: 40 people, 20 said yes (published). Everyone else who answered: 30, 14 yes. Five
    # people answered in no region, 2 of them yes. The overall figure, 75 with 36 yes, is hidden
    # (say as a complementary cell): 40 + 30 + 5 = 75 and 20 + 14 + 2 = 36 would give it back.
    row = {"group_suppressed": False, "rest_n": 30, "rest_count": 14, "kind": "proportion", "min_n": 10}
    gaps = pd.DataFrame([{**row, "overall_suppressed": True}, {**row, "overall_suppressed": False}])
    out = suppress_gaps(gaps, RULES)
    assert out["suppressed"].tolist() == [True, False]
    assert out.loc[0, "suppression"] == HIDDEN_OVERALL


@pytest.mark.parametrize("rows", [200, 500])
def test_no_hidden_cell_of_a_generated_export_can_be_worked_out(tmp_path, rows):
    paths = make_project(tmp_path / "project")
    large_export.generate(paths.raw / "2025" / "export.csv", rows)
    run_load(paths)
    with connect(paths.warehouse, read_only=True) as con:
        check = check_derivability(con, load_catalogue(paths.indicators_file), load_rules(paths.disclosure_file))
        hidden_overall = con.execute(
            "SELECT count(*) FROM indicator_estimates WHERE group_code = 'all' AND suppressed").fetchall()[0][0]
        gaps_beside_hidden_overall = con.execute(
            "SELECT count(*) FROM published_gaps g JOIN indicator_estimates e ON e.indicator_id = g.indicator_id "
            "AND e.wave = g.wave AND e.group_code = 'all' WHERE NOT g.suppressed AND e.suppressed").fetchall()[0][0]
    assert hidden_overall > 0  # the case that gave cells away: an overall figure hidden, groups shown
    assert check.passed, check.details[:5]
    assert gaps_beside_hidden_overall == 0
