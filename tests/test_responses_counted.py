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
