"""A value failing a check is shown to staff to help them fix the export, but never as typed when
it could identify someone: words where a number or a code is expected are replaced by "(text of N
characters, not shown: ...)", a phone number is scrubbed as open answers are. A name, a phone
number or an email typed into a numeric or coded question reaches neither the printed output, the
warehouse, the QA report nor the run records, while a number out of range, an unknown code or a
plain token stays visible to fix the row."""

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

    # Still named: the row, the question and its column; the value, holding words, is not shown.
    issues = {(i["row"], i["question"], i["column"], i["rule"], i["value"]) for i in json.loads(as_json)["issues"]}
    assert issues == {
        (WAGE_ROW, "hourly_wage", "Q13", "not_a_number", not_shown(WAGE)),
        (HOURS_ROW, "hours_per_week", "Q14", "not_a_number", not_shown(EMAIL)),
        (CODE_ROW, "paid_sick_days", "Q15", "invalid_code", not_shown("Maria Gonzalez")),
    }
    assert f"row {WAGE_ROW}, question hourly_wage: not_a_number (value {not_shown(WAGE)})" in printed
    assert f"row {WAGE_ROW}: hourly_wage (column Q13, value {not_shown(WAGE)}): " in listed
    assert f"row {HOURS_ROW}: hours_per_week (column Q14, value {not_shown(EMAIL)}): " in listed
    assert f"row {CODE_ROW}: paid_sick_days (column Q15, value {not_shown('Maria Gonzalez')}): " in listed


def not_shown(value: str) -> str:
    return f"(text of {len(value)} characters, not shown: it may identify someone)"


# Names no list knows and that are not the respondent's own (the export's recipient names are empty).
STRANGERS = ["Nutmeg Nutmouse", "Trudy", "Rivka Okonkwo-Bélanger"]


def test_names_no_list_knows_are_not_shown_but_values_that_fix_the_row_are(empty_project: Paths) -> None:
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    rows = [response(i) for i in range(3)] + [response(3 + i, {"hourly_wage": name}) for i, name in enumerate(STRANGERS)]
    rows += [
        response(6, {"hourly_wage": "4000"}),  # out of range: the number helps fix the row
        response(7, {"paid_sick_days": "7"}),  # a code the question does not have
        response(8, {"hours_per_week": "yes"}),  # a plain token, no one's name
        response(9, {"hours_per_week": "$22/hour"}),  # a number with its unit
    ]
    export = write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)

    printed = consult(empty_project, "validate", str(export))
    as_json = consult(empty_project, "validate", str(export), "--json")
    printed += as_json + consult(empty_project, "load")
    printed += consult(empty_project, "quarantine") + consult(empty_project, "quarantine", "--file", export.name)
    printed += consult(empty_project, "quarantine", "--json") + consult(empty_project, "qa", "--engine", "offline")
    records = "\n".join(p.read_text(encoding="utf-8") for p in sorted(empty_project.runs.glob("*/*.json")))
    qa_report = (empty_project.warehouse_dir / "qa" / "index.html").read_text(encoding="utf-8")

    for where in (printed, warehouse_text(empty_project), qa_report, records):
        found = [part for name in STRANGERS for part in name.replace("-", " ").split() if part.lower() in where.lower()]
        assert found == []

    values = {(i["row"], i["rule"], i["value"]) for i in json.loads(as_json)["issues"]}
    first = 4  # the first response is line 4 of a Qualtrics export
    assert {(first + 3 + i, "not_a_number", not_shown(name)) for i, name in enumerate(STRANGERS)} <= values
    assert (first + 6, "out_of_range", "4000") in values
    assert (first + 7, "invalid_code", "7") in values
    assert (first + 8, "not_a_number", "yes") in values
    assert (first + 9, "not_a_number", "$22/hour") in values
    assert f"(column Q13, value {not_shown('Rivka Okonkwo-Bélanger')})" in printed
    assert "(column Q13, value '4000')" in printed


def test_what_of_a_failing_value_is_shown() -> None:
    """One function decides: numbers, codes, dates, plain tokens and the question's own answer text
    stay visible; words that could be a name never do."""
    from pipeline.validate import shown_value

    known = frozenset({"1", "yes", "don't know", "je ne sais pas"})
    for visible in ["4000", "-3", "7", "31/31/2026", "2026-13-01T10:00:00", "FALSE", "yes", "n/a", "$22/hour",
                    "Don't know", "1,Je ne sais pas"]:
        assert shown_value(visible, known) == visible
    for hidden in [*STRANGERS, "ask Maria", "22 (ask Maria)", "1,Trudy", "trudy", "maria.g@gmail.com"]:
        assert shown_value(hidden, known) == not_shown(hidden)


def test_a_name_stored_as_typed_before_is_not_shown_after_the_next_run(empty_project: Paths) -> None:
    """A warehouse made before shown_value kept failing values as typed (its names scrubbed only when
    a list knew them): the next `consult run` judges them again, and the QA listing no longer shows them."""
    from pipeline.run import run_load

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    rows = [response(i) for i in range(3)] + [response(3, {"hourly_wage": "twenty"}), response(4, {"hourly_wage": "4000"})]
    write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)
    run_load(empty_project)
    con = duckdb.connect(str(empty_project.warehouse))  # as an older pipeline stored it
    con.execute("UPDATE quarantine_issues SET value = 'Rivka Okonkwo-Bélanger' WHERE value = 'twenty'")
    con.execute("DELETE FROM warehouse_meta WHERE key = 'shown_values'")
    con.close()

    run_load(empty_project)

    con = duckdb.connect(str(empty_project.warehouse), read_only=True)
    values = sorted(v for (v,) in con.execute("SELECT value FROM quarantine_issues WHERE concept = 'hourly_wage'").fetchall())
    con.close()
    assert values == [not_shown("Rivka Okonkwo-Bélanger"), "4000"]
    listed = consult(empty_project, "quarantine")
    assert "Rivka" not in listed and f"value {not_shown('Rivka Okonkwo-Bélanger')}" in listed
