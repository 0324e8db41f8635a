"""A value failing a check is shown to staff to help them fix the export, but scrubbed as open
answers are: a name, a phone number or an email typed into a numeric or coded question reaches
neither the printed output, the warehouse, the QA report nor the run records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from builders import response, write_export
from conftest import REPO
from pipeline.config import Paths
from pipeline.instrument import load_instrument

WAGE = "22 (ask Maria Gonzalez 416-555-0199)"
EMAIL = "maria.g@gmail.com"
# Every piece of the identifiers above, in forms a leak could take.
NEEDLES = ["maria", "gonzalez", "416-555-0199", "555-0199", "4165550199", "gmail"]
# Where they were typed: the first response is line 4 of a Qualtrics export (3 header lines).
WAGE_ROW, HOURS_ROW, CODE_ROW = 9, 10, 11


def consult(paths: Paths, *args: str) -> str:
    command = [sys.executable, "-m", "pipeline.cli", "--root", str(paths.root), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def warehouse_text(paths: Paths) -> str:
    """Every text value of every table, and the database file's bytes read as text."""
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        columns = con.execute("SELECT table_name, column_name FROM information_schema.columns "
                              "WHERE data_type = 'VARCHAR'").fetchall()
        values = [str(v) for table, column in columns
                  for (v,) in con.execute(f'SELECT DISTINCT "{column}" FROM "{table}"').fetchall()]
    finally:
        con.close()
    return "\n".join(values) + paths.warehouse.read_bytes().decode("latin-1")


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text.lower()]


def test_identifiers_typed_in_failing_answers_reach_no_output(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    rows = [response(i) for i in range(5)] + [
        response(5, {"hourly_wage": WAGE}),  # a numeric question
        response(6, {"hours_per_week": EMAIL}),  # another numeric question
        response(7, {"paid_sick_days": "Maria Gonzalez"}),  # a coded question
    ]
    export = write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)

    printed = consult(empty_project, "validate", str(export))
    as_json = consult(empty_project, "validate", str(export), "--json")
    printed += as_json + consult(empty_project, "load")
    listed = consult(empty_project, "quarantine")
    printed += listed + consult(empty_project, "quarantine", "--json") + consult(empty_project, "qa", "--engine", "offline")
    records = "\n".join(p.read_text(encoding="utf-8") for p in sorted(empty_project.runs.glob("*/*.json")))
    qa_report = (empty_project.warehouse_dir / "qa" / "index.html").read_text(encoding="utf-8")

    assert leaks(printed) == []
    assert leaks(warehouse_text(empty_project)) == []
    assert leaks(qa_report) == []
    assert records and leaks(records) == []

    # Still named: the row, the question and its column, with what is left of the value to fix it.
    issues = {(i["row"], i["question"], i["column"], i["rule"], i["value"]) for i in json.loads(as_json)["issues"]}
    assert issues == {
        (WAGE_ROW, "hourly_wage", "Q13", "not_a_number", "22 (ask [NAME] [PHONE])"),
        (HOURS_ROW, "hours_per_week", "Q14", "not_a_number", "[EMAIL]"),
        (CODE_ROW, "paid_sick_days", "Q15", "invalid_code", "[NAME]"),
    }
    assert f"row {WAGE_ROW}, question hourly_wage: not_a_number (value '22 (ask [NAME] [PHONE])')" in printed
    assert f"row {WAGE_ROW}: hourly_wage (column Q13, value '22 (ask [NAME] [PHONE])'): " in listed
    assert f"row {HOURS_ROW}: hours_per_week (column Q14, value '[EMAIL]'): " in listed
    assert f"row {CODE_ROW}: paid_sick_days (column Q15, value '[NAME]'): " in listed
