"""An attacker that reads only published outputs (tests/attacker.py, written apart from the
pipeline) combines tables across indicators and tries to recover every suppressed cell: on a case
built so that table-by-table suppression gives a cell away, and on the synthetic consultation."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

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
