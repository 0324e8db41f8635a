"""The public report counts responses, not rows read: a corrected re-export (the runbook's way to
release a quarantined row) repeats every response of the first export, and each still counts once."""

from __future__ import annotations

import json

import pytest

from builders import distinct_responses, export_again
from pipeline import charts
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.run import run_load


def test_a_re_export_counts_each_response_once(loaded: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(loaded.warehouse))
    rows, received = distinct_responses(loaded)
    assert received < rows  # the synthetic export repeats some rows, as platforms do
    before = charts.load_summary().set_index("wave").loc[2025]
    assert before["read"] == received
    assert before[["loaded", "excluded", "duplicates", "quarantined"]].sum() == received

    export_again(loaded)  # nothing new to count
    summary = run_load(loaded)
    again = next(f for f in summary.files if f.file == "qualtrics-2025-again.csv")
    assert again.read == rows and again.loaded == 0  # read again, row by row, loaded nothing
    after = charts.load_summary().set_index("wave").loc[2025]
    assert after.to_dict() == before.to_dict()


def test_status_counts_rows_per_file_and_each_response_once(loaded: Paths, capsys) -> None:
    rows, received = distinct_responses(loaded)
    export_again(loaded)
    run_load(loaded)
    capsys.readouterr()
    assert main(["--root", str(loaded.root), "status", "--json"]) == 0
    wave = next(w for w in json.loads(capsys.readouterr().out)["waves"] if w["wave"] == 2025)
    assert wave["rows"]["read"] == 2 * rows  # every row of both files
    assert wave["responses"]["read"] == received  # every response once
    assert sum(wave["responses"][k] for k in ("loaded", "quarantined", "excluded", "duplicates")) == received
    assert main(["--root", str(loaded.root), "status", "2025"]) == 0
    assert f"Responses:    {received} received, each counted once" in capsys.readouterr().out


def test_the_run_summary_prints_each_wave_s_responses_as_the_methods_page_counts_them(
        loaded: Paths, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary's rows count a response once per file; an analyst setting it beside the methods
    page sees other numbers. The summary also prints the page's own figures, in the page's words."""
    import re

    import duckdb

    export_again(loaded)  # a corrected re-export: every response of 2025 read twice
    capsys.readouterr()
    assert main(["--root", str(loaded.root), "run", "--no-report"]) == 0
    out = capsys.readouterr().out
    printed = re.search(r"^    2025: responses received (\d+) = loaded (\d+) \+ excluded (\d+) \+ duplicates (\d+) "
                        r"\+ set aside \(failed checks\) (\d+)$", out, re.M)
    assert printed, out
    printed = tuple(map(int, printed.groups()))

    # each response once, with the best of what became of it, from the warehouse's own rows
    best = {}
    order = ["loaded", "quarantined", "excluded", "duplicate"]
    with duckdb.connect(str(loaded.warehouse), read_only=True) as con:
        for key, outcome in con.execute("SELECT o.response_key, o.outcome FROM row_outcomes o JOIN load_ledger l "
                                        "USING (file_sha256) WHERE l.wave = 2025").fetchall():
            assert key is not None  # Qualtrics exports carry response ids
            best[key] = min(best.get(key, outcome), outcome, key=order.index)
    outcomes = list(best.values())
    expected = (len(best), outcomes.count("loaded"), outcomes.count("excluded"), outcomes.count("duplicate"),
                outcomes.count("quarantined"))
    assert printed == expected
    rows = sum(int(n) for n in re.findall(r"^  qualtrics-2025\S*\s+2025\s+(\d+)", out, re.M))
    assert printed[0] < rows  # the rows above count the re-exported responses twice
    assert re.findall(r"^    (\d{4}): responses received", out, re.M) == ["2025"]  # only the wave read: short

    # and the methods page's table shows the same figures for 2025
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(loaded.warehouse))
    row = re.search(r'<tr><th scope="row">2025</th><td>[^<]*</td>(.*?)</tr>', charts.load_table()).group(1)
    assert tuple(int(n.replace(",", "")) for n in re.findall(r">([\d,]+)</td>", row)) == printed
