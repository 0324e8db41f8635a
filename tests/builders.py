"""Hand-built survey exports for tests: each row says exactly what it contains."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pipeline.config import Paths
from pipeline.instrument import Instrument
from pipeline.synth import qualtrics_csv

BASE_ANSWERS: dict[str, Any] = {
    "consent": "1",
    "eligible_role": "1",
    "oh_region": "5",
    "lw_region": "1",
    "hourly_wage": 24.5,
    "paid_sick_days": "1",
    "discrimination_any": "2",
    "tasks_clinical": ["6"],
}


def response(number: int, answers: dict[str, Any] | None = None, **metadata: str) -> dict[str, Any]:
    """One Qualtrics response row: valid and complete unless `answers` or `metadata` say otherwise."""
    row = {
        "StartDate": f"2025-03-{10 + number % 15:02d} 10:00:00",
        "EndDate": f"2025-03-{10 + number % 15:02d} 10:20:00",
        "Status": "0",
        "IPAddress": f"203.0.113.{number % 250}",
        "Progress": "100",
        "Duration (in seconds)": "1200",
        "Finished": "1",
        "RecordedDate": f"2025-03-{10 + number % 15:02d} 10:20:00",
        "ResponseId": f"R_test{number:011d}",
        "RecipientLastName": "",
        "RecipientFirstName": "",
        "RecipientEmail": "",
        "ExternalReference": "",
        "LocationLatitude": "43.6500",
        "LocationLongitude": "-79.3800",
        "DistributionChannel": "anonymous",
        "UserLanguage": "EN",
    }
    row.update(metadata)
    row["answers"] = {**BASE_ANSWERS, **(answers or {})}
    return row


def write_export(path: Path, instrument: Instrument, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(qualtrics_csv(instrument, rows))
    return path


def write_google_form(path: Path, instrument: Instrument, stamps: list[str], timestamp: str = "Timestamp") -> Path:
    """A Google Forms responses CSV, one valid response per stamp, the timestamp column named and
    written exactly as given (a French sheet: "Horodateur"; a sheet's locale: 3/6/2025 or 06/03/2025)."""
    from pipeline.synth import googleforms_csv

    data = googleforms_csv(instrument, [response(i) for i in range(1, len(stamps) + 1)]).decode("utf-8")
    records = list(csv.reader(io.StringIO(data, newline="")))
    records[0][0] = timestamp
    for record, stamp in zip(records[1:], stamps):
        record[0] = stamp
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(records)
    return path


def complete_answers(instrument: Instrument, **overrides: Any) -> dict[str, Any]:
    """BASE_ANSWERS plus an answer to every other question a paid peer supporter is shown (no free
    text), each grid item's code different from the previous item's, so no grid is straight-lined."""
    import pandas as pd

    from pipeline.instrument import QuestionType
    from pipeline.validate import AnswerView

    answers: dict[str, Any] = {**BASE_ANSWERS, "contract_type": "1", "hours_per_week": 30}
    for position, question in enumerate(instrument.questions):
        if question.id in answers or question.type is QuestionType.text:
            continue
        if not AnswerView(pd.DataFrame([answers]), instrument).holds(question.show_if).iloc[0]:
            continue  # skip logic hides it
        codes = [c.code for c in instrument.choices_of(question) if not c.missing]
        if question.type is QuestionType.numeric:
            answers[question.id] = question.range.min + 1 if question.range else 1
        else:
            code = codes[position % len(codes)]
            answers[question.id] = [code] if question.type is QuestionType.multiple else code
    return {**answers, **overrides}


def warehouse_rows(paths: Paths, sql: str) -> list[tuple]:
    """A read-only query of a project's warehouse, closed again (a later run may write it)."""
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- a corrected re-export (the runbook's way to release a quarantined row) ------------------------


def export_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A Qualtrics export's three header lines and its data rows (the csv module, not the pipeline)."""
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines(keepends=True)
    header, body = lines[:3], "".join(lines[3:])
    return header, list(csv.reader(io.StringIO(body)))


def distinct_responses(paths: Paths, wave: int = 2025) -> tuple[int, int]:
    """A wave's synthetic export: its data rows and its distinct response ids, from the file."""
    header, rows = export_rows(paths.synthetic / str(wave) / f"qualtrics-{wave}.csv")
    response_id = next(csv.reader(io.StringIO(header[0].lstrip("\ufeff")))).index("ResponseId")
    return len(rows), len({row[response_id] for row in rows})


def export_again(paths: Paths) -> None:
    """The same responses exported again: another order, so another file."""
    first = paths.synthetic / "2025" / "qualtrics-2025.csv"
    header, rows = export_rows(first)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([rows[-1], *rows[:-1]])
    (first.parent / "qualtrics-2025-again.csv").write_text("\ufeff" + "".join(header) + out.getvalue(),
                                                           encoding="utf-8")


# --- answers merged for privacy (surveys/privacy.yaml), read as plain YAML -------------------------


def merged_codes_named(surveys: Path) -> dict[tuple[str, str], str]:
    """(question, code) -> English label of each code privacy.yaml merges answers into (or gives to
    "more than one") that a rule of indicators.yaml names, e.g. ("indigenous", "indigenous")."""
    privacy = yaml.safe_load((surveys / "privacy.yaml").read_text(encoding="utf-8"))
    labels = {}
    for question, rule in privacy["microdata"]["key_quasi_identifiers"].items():
        for level in rule["levels"]:
            groups = level.get("groups", []) + ([level["more_than_one"]] if "more_than_one" in level else [])
            labels.update({(question, str(group["code"])): group["label"]["en"] for group in groups})
    indicators = yaml.safe_load((surveys / "indicators.yaml").read_text(encoding="utf-8"))
    named = {(test["question"], str(code)) for test in _rule_tests(indicators)
             for key in ("in", "not_in", "only") for code in test.get(key) or []}
    return {key: label for key, label in labels.items() if key in named}


def _rule_tests(node: Any) -> list[dict]:
    """Every test of one question (a mapping with `question`) anywhere in a definitions file."""
    if isinstance(node, list):
        return [test for item in node for test in _rule_tests(item)]
    if not isinstance(node, dict):
        return []
    own = [node] if isinstance(node.get("question"), str) else []
    return own + [test for value in node.values() for test in _rule_tests(value)]


def dated_a_year_later(source: Path, target: Path) -> Path:
    """A copy of a Qualtrics export with every timestamp a year later: the next wave's export when
    its questions did not change (an export copied as it is would be recognised as last year's)."""
    text = source.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    stamps = [i for i, name in enumerate(rows[0]) if name in ("StartDate", "EndDate", "RecordedDate")]
    for row in rows[3:]:  # after Qualtrics' three header rows
        for i in stamps:
            if row[i][:4].isdigit():
                row[i] = f"{int(row[i][:4]) + 1}{row[i][4:]}"
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n" if "\r\n" in text else "\n").writerows(rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    return target
