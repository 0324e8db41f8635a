"""An attacker that reads only published outputs (tests/attacker.py, written apart from the
pipeline) combines tables across indicators and tries to recover every suppressed cell: on a case
built so that table-by-table suppression gives a cell away, and on the synthetic consultation."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import yaml

from attacker import recover
from conftest import REPO
from pipeline.config import Paths
from pipeline.disclosure import suppress
from test_disclosure import LINKED_DEFINITIONS, LINKED_FAMILY, RULES, linked_cells, linked_warehouse


def published(result: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    """The two linked tables as a warehouse publishes them, with each shown group's gap: everyone
    is in a group, so everyone else is the total minus the group."""
    con = linked_warehouse(result)
    totals = {r.indicator_id: (int(r.n), int(r.count)) for r in result.itertuples() if r.group_code == "all"}
    for r in result.itertuples():
        if r.group_code != "all" and not r.suppressed:
            n_all, c_all = totals[r.indicator_id]
            con.execute("INSERT INTO indicator_gaps (indicator_id, wave, breakdown, group_code, group_label, n, count, "
                        "rest_n, rest_count, suppressed) VALUES (?, 2025, ?, ?, ?, ?, ?, ?, ?, false)",
                        [r.indicator_id, r.breakdown, r.group_code, r.group_code, int(r.n), int(r.count),
                         n_all - int(r.n), c_all - int(r.count)])
    return con


def test_the_attacker_recovers_a_cell_from_table_by_table_suppression(tmp_path: Path) -> None:
    definitions = tmp_path / "indicators.yaml"
    definitions.write_text(LINKED_DEFINITIONS, encoding="utf-8")
    found = recover(published(suppress(linked_cells(), RULES)), definitions)
    # group B: 20 people, 2 of them uncivil (frequently), in both tables
    assert found[("ANY-01", 2025, "oh_region", "B")] == (20, 2)
    assert found[("FREQ-01", 2025, "oh_region", "B")] == (20, 2)


def test_the_attacker_recovers_nothing_once_linked_tables_are_protected_together(tmp_path: Path) -> None:
    definitions = tmp_path / "indicators.yaml"
    definitions.write_text(LINKED_DEFINITIONS, encoding="utf-8")
    assert recover(published(suppress(linked_cells(), RULES, LINKED_FAMILY)), definitions) == {}


def test_the_attacker_recovers_nothing_from_the_synthetic_consultation(loaded: Paths) -> None:
    with duckdb.connect(str(loaded.warehouse), read_only=True) as con:
        hidden = con.execute("SELECT count(*) FROM published_estimates WHERE suppressed").fetchall()[0][0]
        assert hidden > 100  # there is something to attack
        assert recover(con, REPO / "surveys" / "indicators.yaml") == {}


def test_nobody_in_no_group_of_a_breakdown_can_be_worked_out_as_a_small_group(loaded: Paths) -> None:
    # People in none of a breakdown's groups (they skipped the question, or their answer was removed
    # for k-anonymity) are the overall figure minus the groups when every group is shown, and the
    # overall figure minus (group + everyone else) when a gap is shown. Worked out here from the
    # published views alone, they must never be a group the rules would hide.
    rules = yaml.safe_load((REPO / "surveys" / "disclosure.yaml").read_text(encoding="utf-8"))
    with duckdb.connect(str(loaded.warehouse), read_only=True) as con:
        kinds = dict(con.execute("SELECT indicator_id, kind FROM indicator_catalogue").fetchall())
        cells = con.execute("SELECT indicator_id, wave, breakdown, group_code, n, count, suppressed "
                            "FROM published_estimates").df()
        gaps = con.execute("SELECT indicator_id, wave, breakdown, n, count, rest_n, rest_count "
                           "FROM published_gaps WHERE NOT suppressed").df()
    overall = {(r.indicator_id, r.wave): r for r in cells[cells["group_code"] == "all"].itertuples()
               if not r.suppressed}
    worked_out: dict[tuple, set[tuple]] = {}
    for (indicator, wave, breakdown), groups in cells[cells["breakdown"] != "all"].groupby(
            ["indicator_id", "wave", "breakdown"]):
        total = overall.get((indicator, wave))
        if total is not None and not groups["suppressed"].any():
            worked_out.setdefault((indicator, wave, breakdown), set()).add(
                (int(total.n - groups["n"].sum()),
                 int(total.count - groups["count"].sum()) if kinds[indicator] == "proportion" else None))
    for g in gaps.itertuples():
        total = overall.get((g.indicator_id, g.wave))
        if total is not None:
            worked_out.setdefault((g.indicator_id, g.wave, g.breakdown), set()).add(
                (int(total.n - g.n - g.rest_n),
                 int(total.count - g.count - g.rest_count) if kinds[g.indicator_id] == "proportion" else None))
    # many tables give them away, most of them people: their size is what matters
    assert sum(any(n > 0 for n, _ in found) for found in worked_out.values()) > 100
    small = {key: found for key, found in worked_out.items() for n, count in found
             if n > 0 and (n < rules["min_group_n"]
                           or (count is not None and min(count, n - count) < rules["min_cell"]))}
    assert small == {}
