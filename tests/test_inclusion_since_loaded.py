"""A loaded wave's own `inclusion:` rules changed after its exports were loaded: the responses they
excluded were not kept, so the warehouse cannot follow the new rules by itself. The run stops
before reading anything (and `consult status` says it would), naming the change and the two ways
out: the old rules back, or the wave's exports loaded again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builders import warehouse_rows as query
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.instrument import instrument_path, load_instrument
from pipeline.load import connect, record_known_inclusion
from pipeline.run import RunError, run_load

VOLUNTEERS_ADMITTED = "ineligible: {question: eligible_role, in: [1, 2]}"
PAID_ONLY = "ineligible: {question: eligible_role, in: [1]}"


def edit_instrument(paths: Paths, wave: int, old: str, new: str) -> None:
    path = instrument_path(paths.surveys, wave)
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path} no longer says {old!r}: update this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def ledger_and_outcomes(paths: Paths) -> list:
    return [query(paths, f"SELECT * FROM {table} ORDER BY ALL") for table in
            ("load_ledger", "row_outcomes", "respondents", "wave_inclusion", "indicator_estimates")]


def volunteers_loaded(paths: Paths, wave: int) -> int:
    """Loaded 2025 respondents who said they are volunteers (eligible_role 2), counted from the answers."""
    return query(paths, f"SELECT count(*) FROM answers WHERE wave = {wave} AND concept = 'eligible_role' "
                        "AND value = '2'")[0][0]


def test_every_loaded_wave_keeps_the_rules_it_was_loaded_under(loaded: Paths) -> None:
    kept = dict(query(loaded, "SELECT wave, rules FROM wave_inclusion"))
    assert sorted(kept) == [2023, 2024, 2025]
    for wave, rules in kept.items():
        for name, condition in load_instrument(instrument_path(loaded.surveys, wave)).inclusion.items():
            assert f'"rule": "{name}"' in rules and f'"question": "{condition.question}"' in rules


def test_a_loaded_waves_changed_rules_stop_the_run_and_change_nothing(loaded: Paths) -> None:
    before = ledger_and_outcomes(loaded)
    edit_instrument(loaded, 2025, VOLUNTEERS_ADMITTED, PAID_ONLY)
    with pytest.raises(RunError) as stopped:
        run_load(loaded)
    said = str(stopped.value)
    assert "surveys/2025/instrument.yaml: the `inclusion:` rules changed since wave 2025's exports were loaded" in said
    assert 'eligible_role: no longer admits answer 2 "Yes, as a volunteer' in said
    assert f"    {VOLUNTEERS_ADMITTED}" in said  # the old rules, to paste back
    assert "`consult run --reload 2025` (reads qualtrics-2025.csv again from data/synthetic/2025/" in said
    assert said.endswith("Nothing was loaded.")
    assert ledger_and_outcomes(loaded) == before


def test_status_says_the_run_would_stop_and_what_to_do(loaded: Paths, capsys: pytest.CaptureFixture) -> None:
    edit_instrument(loaded, 2025, VOLUNTEERS_ADMITTED, PAID_ONLY)
    main(["--root", str(loaded.root), "status", "2025"])
    out = capsys.readouterr().out
    assert "`consult run` would stop: " in out and "the `inclusion:` rules changed since wave 2025's exports" in out
    assert re.search(r"^Next: `consult run --reload 2025`", out, re.M)
    main(["--root", str(loaded.root), "status", "2024"])  # another wave's status says nothing of it
    assert "rules changed since wave" not in capsys.readouterr().out


@pytest.mark.parametrize("old, new", [
    ("ineligible:", "not_in_a_peer_role:"),  # a rule renamed: the ledger's reason, not who is in
    ("in: [1, 2]}", "in: [2, 1]}"),  # the same codes in another order
])
def test_the_same_people_written_otherwise_is_no_change(loaded: Paths, old: str, new: str) -> None:
    edit_instrument(loaded, 2025, old, new)
    run_load(loaded)  # does not stop


def test_loading_the_wave_again_applies_the_new_rules(loaded: Paths) -> None:
    """The way out the message gives, followed to the letter: the wave is read again under the new rules
    in one step (a middle wave too: taking it out alone would leave 2023 and 2025 side by side)."""
    volunteers = volunteers_loaded(loaded, 2024)
    assert volunteers > 0  # the synthetic consultation has volunteers in 2024
    counts = "SELECT rows_read, rows_loaded, rows_quarantined + rows_excluded + rows_duplicate FROM load_ledger " \
             "WHERE wave = 2024"
    read, loaded_before, _ = query(loaded, counts)[0]
    others_before = query(loaded, "SELECT * FROM row_outcomes JOIN load_ledger USING (file_sha256) "
                                  "WHERE wave <> 2024 ORDER BY ALL")
    edit_instrument(loaded, 2024, VOLUNTEERS_ADMITTED, PAID_ONLY)
    with pytest.raises(RunError, match="rules changed since wave 2024"):
        run_load(loaded)
    with pytest.raises(Exception, match="Who is in scope changed between 2023 and 2024"):
        run_load(loaded, reload=[2024])  # the change from the wave before (and to the next) needs its statement
    assert volunteers_loaded(loaded, 2024) == volunteers  # and that stop changed nothing
    for wave in (2024, 2025):
        with (loaded.surveys / str(wave) / "rules.yaml").open("a", encoding="utf-8") as rules:
            rules.write(f'population_change: {{since: {wave - 1}, status: not_comparable, note: "Volunteers are '
                        f'out of scope from 2024."}}\n')
    run_load(loaded, reload=[2024])
    assert volunteers_loaded(loaded, 2024) == 0
    assert query(loaded, counts)[0] == (read, loaded_before - volunteers, read - loaded_before + volunteers)
    assert '"in": ["1"]' in query(loaded, "SELECT rules FROM wave_inclusion WHERE wave = 2024")[0][0]
    assert query(loaded, "SELECT * FROM row_outcomes JOIN load_ledger USING (file_sha256) "
                         "WHERE wave <> 2024 ORDER BY ALL") == others_before  # the other waves as they were
    assert run_load(loaded).files[0].status == "already loaded"  # and the next run goes on


def test_a_reload_needs_the_very_exports_it_loaded(loaded: Paths, tmp_path: Path) -> None:
    export = loaded.synthetic / "2024" / "qualtrics-2024.csv"
    export.rename(tmp_path / export.name)
    before = ledger_and_outcomes(loaded)
    with pytest.raises(RunError, match=r"--reload 2024: qualtrics-2024.csv \(sha256 [0-9a-f]{12}\.\.\.\) is not in "
                                       r"data/synthetic/2024/ as it was loaded"):
        run_load(loaded, reload=[2024])
    with pytest.raises(RunError, match="--reload 2019: wave 2019 has no loaded export to load again"):
        run_load(loaded, reload=[2019])
    assert ledger_and_outcomes(loaded) == before


def test_a_reload_that_fails_midway_leaves_the_warehouse_as_it_was(loaded: Paths, monkeypatch) -> None:
    import pipeline.run as run

    before = ledger_and_outcomes(loaded)

    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(run, "protect_microdata", broken)  # after the removal and the new rows are written
    with pytest.raises(RuntimeError, match="disk gone"):
        run_load(loaded, reload=[2025])
    assert ledger_and_outcomes(loaded) == before


def test_a_purged_wave_can_only_get_its_old_rules_back(loaded: Paths) -> None:
    with connect(loaded.warehouse) as con:
        con.execute("INSERT INTO purges SELECT file_sha256, file_name, wave, 1, DATE '2026-01-31', '2025.1' "
                    "FROM load_ledger WHERE wave = 2025")
    edit_instrument(loaded, 2025, VOLUNTEERS_ADMITTED, PAID_ONLY)
    with pytest.raises(RunError) as stopped:
        run_load(loaded)
    said = str(stopped.value)
    assert "loading the wave again is not possible: the raw export(s) qualtrics-2025.csv were deleted" in said
    assert "--reload" not in said
    with pytest.raises(RunError, match="--reload 2025: qualtrics-2025.csv was deleted with `consult purge-raw`"):
        run_load(loaded, reload=[2025])


def test_a_warehouse_made_before_records_only_rules_it_surely_loaded_under(loaded: Paths) -> None:
    """Without a record the rules cannot be compared; one is written when the wave's instrument file is
    the very one its exports were loaded with (the load ledger's checksum), never a guess."""
    edit_instrument(loaded, 2025, VOLUNTEERS_ADMITTED, PAID_ONLY)
    instruments = {w: load_instrument(instrument_path(loaded.surveys, w)) for w in (2023, 2024, 2025)}
    with connect(loaded.warehouse) as con:
        con.execute("DELETE FROM wave_inclusion")
        record_known_inclusion(con, instruments)
        kept = dict(con.execute("SELECT wave, rules FROM wave_inclusion").fetchall())
    assert sorted(kept) == [2023, 2024]  # 2025's file changed since its export was loaded: unknown
    run_load(loaded)  # nothing to compare 2025 with: the run goes on as it did before the record existed
