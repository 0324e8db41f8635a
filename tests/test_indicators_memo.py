"""Disclosure control is worked out again only for the waves whose figures changed: a new year's load
must not solve every earlier wave's suppression again, and the published figures must be exactly
those of a full recomputation."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

import pipeline.indicators as indicators
from pipeline.config import Paths
from pipeline.run import rebuild_indicators

TABLES = ("indicator_estimates", "indicator_gaps", "indicator_changes")


def published(paths: Paths) -> list[list[tuple]]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return [con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in TABLES]


def recomputed_from_scratch(paths: Paths) -> list[list[tuple]]:
    """The figures with nothing reused: the memo emptied, then everything computed again."""
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("DELETE FROM suppression_memo")
    rebuild_indicators(paths)
    return published(paths)


@pytest.fixture
def suppressed_waves(monkeypatch) -> list[set[int]]:
    """The waves of every call to suppress() made while computing the indicators."""
    calls: list[set[int]] = []
    real = indicators.suppress

    def spy(cells, *args, **kwargs):
        calls.append({int(w) for w in cells["wave"].unique()})
        return real(cells, *args, **kwargs)

    monkeypatch.setattr(indicators, "suppress", spy)
    return calls


def drop_respondents(paths: Paths, wave: int, how_many: int) -> None:
    """A change to one wave's stored answers (as a new export of it would bring)."""
    with duckdb.connect(str(paths.warehouse)) as con:
        keys = [k for (k,) in con.execute("SELECT respondent_key FROM respondents WHERE wave = ? ORDER BY "
                                          "respondent_key LIMIT ?", [wave, how_many]).fetchall()]
        marks = ", ".join("?" for _ in keys)
        for table in ("answers", "open_text", "quality_flags", "respondents"):
            con.execute(f"DELETE FROM {table} WHERE respondent_key IN ({marks})", keys)


def test_only_the_changed_wave_is_suppressed_again_and_the_figures_match_a_full_recomputation(loaded, suppressed_waves):
    rebuild_indicators(loaded)  # nothing changed since the load: nothing is solved again
    assert suppressed_waves == []
    drop_respondents(loaded, 2024, 40)
    rebuild_indicators(loaded)
    assert suppressed_waves == [{2024}]
    incremental = published(loaded)
    suppressed_waves.clear()
    assert recomputed_from_scratch(loaded) == incremental
    assert suppressed_waves == [{2023}, {2024}, {2025}]


def test_changed_disclosure_rules_are_applied_to_every_wave(loaded, suppressed_waves):
    before = published(loaded)
    text = loaded.disclosure_file.read_text(encoding="utf-8")
    loaded.disclosure_file.write_text(text.replace("min_group_n: 11", "min_group_n: 30"), encoding="utf-8")
    suppressed_waves.clear()
    rebuild_indicators(loaded)
    assert set().union(*suppressed_waves) == {2023, 2024, 2025}
    stricter = published(loaded)
    assert stricter != before
    assert recomputed_from_scratch(loaded) == stricter


def as_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells' values alone: a text column may come back as str or object, a blank as NaN or None."""
    values = frame.astype(object)
    return values.where(values.notna(), None)


def test_suppressing_wave_by_wave_gives_what_one_pass_over_every_wave_gives(loaded, monkeypatch):
    """Why suppress_by_wave may work a wave at a time: no hidden cell of one wave can be worked out from
    another wave's figures. Checked against disclosure.suppress() given every wave's cells at once (and the
    linked families of all of them), both when each wave is solved afresh and when the memo answers."""
    from pipeline import derivation, disclosure

    compared: list[str] = []
    real = indicators.suppress_by_wave

    def compare(con, cells, catalogue, kinds, rules):
        remembered = con.execute("SELECT count(*) FROM suppression_memo").fetchone()[0]
        by_wave = real(con, cells, catalogue, kinds, rules)
        at_once = disclosure.suppress(cells, rules, derivation.linked_families(con, catalogue, kinds, cells))
        assert len(cells["wave"].unique()) == 3
        assert (by_wave["suppression"] == disclosure.COMPLEMENTARY).any()  # the case that could cross waves
        pd.testing.assert_frame_equal(as_values(by_wave), as_values(at_once))
        compared.append("memo" if remembered else "fresh")
        return by_wave

    monkeypatch.setattr(indicators, "suppress_by_wave", compare)
    with duckdb.connect(str(loaded.warehouse)) as con:
        con.execute("DELETE FROM suppression_memo")
    rebuild_indicators(loaded)  # every wave solved afresh
    rebuild_indicators(loaded)  # every wave's outcome from the memo
    assert compared == ["fresh", "memo"]
