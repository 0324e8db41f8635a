"""Disclosure control: the one place every published value passes through.

Primary suppression hides cells of small groups (and proportions where almost all or almost none
answered yes); complementary suppression then hides a second cell wherever a single hidden cell
could be recovered from its breakdown's total. Rules live in surveys/disclosure.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

SMALL_GROUP = "fewer than {n} respondents in the group"
SMALL_CELL = "fewer than {n} respondents answered one way"
BELOW_MIN_N = "fewer than {n} respondents, the indicator's minimum reportable n"
COMPLEMENTARY = "hidden so that another hidden value cannot be worked out from the total"


@dataclass(frozen=True)
class DisclosureRules:
    min_group_n: int = 10
    min_cell: int = 5
    complementary: bool = True


def load_rules(path: Path) -> DisclosureRules:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return DisclosureRules(
        min_group_n=int(data.get("min_group_n", 10)),
        min_cell=int(data.get("min_cell", 5)),
        complementary=bool(data.get("complementary", True)),
    )


def suppress(cells: pd.DataFrame, rules: DisclosureRules) -> pd.DataFrame:
    """Add `suppressed` and `suppression` to cells (columns n, count, kind, and a table key).

    Cells of one table share indicator_id, wave and breakdown; the row with group_code 'all' is
    the table's total. An optional `min_n` column holds an indicator's own minimum reportable n,
    applied with the primary rules so that complementary suppression sees it.
    """
    cells = cells.copy()
    reasons = pd.Series([_primary(row, rules) for row in cells.itertuples()], index=cells.index, dtype=object)
    cells["suppression"] = reasons
    cells["suppressed"] = reasons.notna()
    if rules.complementary:
        for _, table in cells.groupby(["indicator_id", "wave", "breakdown"], sort=False):
            _complement(cells, table)
    return cells


def _primary(row, rules: DisclosureRules) -> str | None:
    if row.n < rules.min_group_n:
        return SMALL_GROUP.format(n=rules.min_group_n)
    own_min = getattr(row, "min_n", None)
    if own_min is not None and own_min == own_min and row.n < own_min:
        return BELOW_MIN_N.format(n=int(own_min))
    if row.kind == "proportion" and min(row.count, row.n - row.count) < rules.min_cell:
        return SMALL_CELL.format(n=rules.min_cell)
    return None


def _complement(cells: pd.DataFrame, table: pd.DataFrame) -> None:
    groups = table[table["group_code"] != "all"]
    if groups.empty:
        return
    hidden = groups[cells.loc[groups.index, "suppressed"]]
    if len(hidden) != 1:
        return  # none hidden, or already two or more: no single value follows from the total
    shown = groups[~cells.loc[groups.index, "suppressed"]]
    if shown.empty:
        return
    partner = shown.sort_values(["n", "group_code"]).index[0]
    cells.loc[partner, "suppressed"] = True
    cells.loc[partner, "suppression"] = COMPLEMENTARY
