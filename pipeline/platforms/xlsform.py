"""XLSForm: the questionnaire of a KoboToolbox / ODK form (survey, choices and settings sheets),
as an .xlsx workbook or pyxform's one-file CSV (a sheet name alone on a row, then its rows)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.platforms.common import normalised
from pipeline.platforms.reading import RawFile, ReadError

SHEETS = ("survey", "choices", "settings")


@dataclass
class XLSForm:
    survey: list[dict[str, str]]
    choices: list[dict[str, str]] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)


def is_xlsform(raw: RawFile) -> bool:
    names = {(t.sheet or "").strip().casefold() for t in raw.tables}
    if {"survey", "choices"} <= names:
        return True
    first = raw.main.head[0] if raw.main.head else []
    return bool(first) and first[0].strip().casefold() == "survey" and not any(c.strip() for c in first[1:])


def read_xlsform(raw: RawFile) -> XLSForm:
    sheets = _sheets(raw)
    if "survey" not in sheets:
        raise ReadError("an XLSForm needs a `survey` sheet (type, name, label columns)")
    settings = sheets.get("settings", [])
    return XLSForm(sheets["survey"], sheets.get("choices", []), settings[0] if settings else {})


def _sheets(raw: RawFile) -> dict[str, list[dict[str, str]]]:
    if any((t.sheet or "").strip().casefold() == "survey" for t in raw.tables):
        return {(t.sheet or "").strip().casefold(): _rows(t.records) for t in raw.tables if t.records}
    # One-file CSV: a row with only a sheet name in the first cell starts that sheet; its rows
    # leave the first cell empty.
    sheets: dict[str, list[list[str]]] = {}
    current = None
    for record in raw.main.records:
        first = record[0].strip().casefold() if record else ""
        if first in SHEETS and not any(c.strip() for c in record[1:]):
            current = first
            sheets[current] = []
        elif current is not None and any(c.strip() for c in record):
            sheets[current].append(record[1:])
    return {name: _rows(records) for name, records in sheets.items()}


def _rows(records: list[list[str]]) -> list[dict[str, str]]:
    records = [r for r in records if any(c.strip() for c in r)]
    if not records:
        return []
    header = [_column_name(h) for h in records[0]]
    return [{h: (r[i].strip() if i < len(r) else "") for i, h in enumerate(header) if h} for r in records[1:]]


def _column_name(header: str) -> str:
    """`list name` and `list_name` are the same column; `label::English (en)` keeps its language."""
    name = header.strip()
    if "::" in name or ":" in name:
        base, _, language = name.replace("::", ":").partition(":")
        return f"{normalised(base).replace(' ', '_')}::{language.strip()}"
    return normalised(name).replace(" ", "_")


def label_in(row: dict[str, str], language: str, column: str = "label") -> str:
    """The label in `language` (en/fr), the default label, or any label there is."""
    for key, value in row.items():
        base, _, tag = key.partition("::")
        if base == column and tag and value and _language_of(tag) == language:
            return value
    if row.get(column):
        return row[column]
    return next((v for k, v in row.items() if k.startswith(column + "::") and v), "")


def _language_of(tag: str) -> str:
    tag = tag.casefold()
    if "(fr" in tag or tag.startswith(("fr", "french", "français")):
        return "fr"
    if "(en" in tag or tag.startswith(("en", "english", "anglais")):
        return "en"
    return tag
