"""The public report counts responses, not rows read: a corrected re-export (the runbook's way to
release a quarantined row) repeats every response of the first export, and each still counts once."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline import charts
from pipeline.config import Paths
from pipeline.run import run_load


def export_rows(path) -> tuple[list[str], list[list[str]]]:
    """A Qualtrics export's three header lines and its data rows (the csv module, not the pipeline)."""
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines(keepends=True)
    header, body = lines[:3], "".join(lines[3:])
    return header, list(csv.reader(io.StringIO(body)))


def test_a_re_export_counts_each_response_once(loaded: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(loaded.warehouse))
    first = loaded.synthetic / "2025" / "qualtrics-2025.csv"
    header, rows = export_rows(first)
    ids = csv.reader(io.StringIO(header[0].lstrip("\ufeff")))
    response_id = next(ids).index("ResponseId")
    received = len({row[response_id] for row in rows})  # distinct responses, worked out from the file
    assert received < len(rows)  # the synthetic export repeats some rows, as platforms do
    before = charts.load_summary().set_index("wave").loc[2025]
    assert before["read"] == received
    assert before[["loaded", "excluded", "duplicates", "quarantined"]].sum() == received

    # the same responses exported again (another order, so another file): nothing new to count
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([rows[-1], *rows[:-1]])
    (first.parent / "qualtrics-2025-again.csv").write_text("\ufeff" + "".join(header) + out.getvalue(),
                                                           encoding="utf-8")
    summary = run_load(loaded)
    again = next(f for f in summary.files if f.file == "qualtrics-2025-again.csv")
    assert again.read == len(rows) and again.loaded == 0  # read again, row by row, loaded nothing
    after = charts.load_summary().set_index("wave").loc[2025]
    assert after.to_dict() == before.to_dict()
