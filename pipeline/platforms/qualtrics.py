"""Qualtrics: Data & Analysis → Export data → CSV or Excel.

- Current layout: three header rows (export tags, question texts, `{"ImportId": ...}` JSON).
  The ImportIds name Qualtrics' own columns whatever the language of the question-text row.
- Legacy layout ("Use legacy exporter"): `V1..V10` then question ids in row 1, names and question
  texts in row 2.
- A file whose ImportId row, or both extra rows, were removed: ids in row 1.
- Values are numeric recodes ("Use numeric values") or choice text; multiple answers are one
  column of codes joined by commas, or one column per choice ("Split multi-value fields").
  `-99` means "seen but unanswered". `Q5_4_TEXT` holds the text typed for a choice, `Q5_DO`
  the display order, `Q7#1_1` a side-by-side column, and Text iQ adds `Topics` columns.
"""

from __future__ import annotations

import json
import re

from pipeline.platforms.common import (
    IDENTIFIER,
    METADATA,
    QUESTION,
    Detection,
    Layout,
    SourceColumn,
    compact,
    data_records,
    each_distinct,
    header_width,
    identifier_role,
    row,
)
from pipeline.platforms.reading import RawFile, Table

# Qualtrics' own columns by ImportId, and by export tag (compared without case or punctuation).
BY_IMPORT_ID = {
    "startdate": (IDENTIFIER, "started_at"),
    "enddate": (IDENTIFIER, "ended_at"),
    "recordeddate": (IDENTIFIER, "recorded_at"),
    "ipaddress": (IDENTIFIER, "ip_address"),
    "recordid": (IDENTIFIER, "response_id"),
    "responseid": (IDENTIFIER, "response_id"),
    "recipientlastname": (IDENTIFIER, "last_name"),
    "recipientfirstname": (IDENTIFIER, "first_name"),
    "recipientemail": (IDENTIFIER, "email"),
    "externaldatareference": (IDENTIFIER, "external_reference"),
    "externalreference": (IDENTIFIER, "external_reference"),
    "locationlatitude": (IDENTIFIER, "latitude"),
    "locationlongitude": (IDENTIFIER, "longitude"),
    "qurl": (IDENTIFIER, "url"),
    "status": (METADATA, "status"),
    "progress": (METADATA, "progress"),
    "duration": (METADATA, "duration_s"),
    "durationinseconds": (METADATA, "duration_s"),
    "finished": (METADATA, "finished"),
    "distributionchannel": (METADATA, "distribution_channel"),
    "userlanguage": (METADATA, "language"),
    "locationaccuracy": (METADATA, "location_accuracy"),
    "responseset": (METADATA, "response_set"),
    "qtotalduration": (METADATA, "total_duration"),
    "qrecaptchascore": (METADATA, "recaptcha_score"),
}
LEGACY_NAMES = {**BY_IMPORT_ID, "name": (IDENTIFIER, "name"), "emailaddress": (IDENTIFIER, "email")}
RESPONSE_ID = re.compile(r"^R_[A-Za-z0-9]{15,17}$")
SEEN_BUT_UNANSWERED = "-99"


class Qualtrics:
    name = "qualtrics"
    title = "Qualtrics"

    def detect(self, raw: RawFile) -> Detection | None:
        variant = _variant(raw.main)
        if variant is None:
            return None
        score = {"3-header-row": 1.0, "legacy 2-header-row": 0.95}.get(variant, 0.85)
        return Detection(self.name, score, _named(raw, variant))

    def layout(self, raw: RawFile) -> Layout:
        table = raw.main
        variant = _variant(table) or "1-header-row"
        header_rows = {"3-header-row": 3, "legacy 2-header-row": 2, "2-header-row": 2}.get(variant, 1)
        width = header_width(table, header_rows)
        ids, texts = row(table, 0, width), row(table, 1, width) if header_rows > 1 else [""] * width
        imports = row(table, 2, width) if header_rows == 3 else [""] * width
        columns = [
            _column(i, ids[i], texts[i], imports[i], legacy=variant.startswith("legacy")) for i in range(width)
        ]
        cells, numbers = data_records(table, header_rows, width)
        layout = Layout(self.name, _named(raw, variant), header_rows, columns, cells, numbers,
                        missing=frozenset({SEEN_BUT_UNANSWERED}))
        finished = [i for i, c in enumerate(columns) if c.role == "finished"]
        if finished:
            layout.derived["finished"] = each_distinct(cells[finished[0]], _flag)
        return layout


def _variant(table: Table) -> str | None:
    records = table.head
    if not records:
        return None
    header = [compact(h) for h in records[0]]
    third = records[2] if len(records) > 2 else []
    if any(cell.startswith('{"ImportId"') for cell in third):
        return "3-header-row"
    second = [compact(h) for h in records[1]] if len(records) > 1 else []
    if "v1" in header and "responseid" in second:
        return "legacy 2-header-row"
    if "responseid" not in header or not ({"startdate", "enddate", "finished", "recordeddate"} & set(header)):
        return None
    position = header.index("responseid")
    below = records[1][position] if len(records) > 1 and position < len(records[1]) else ""
    return "1-header-row" if RESPONSE_ID.match(below.strip()) or table.size == 1 else "2-header-row"


def _named(raw: RawFile, variant: str) -> str:
    return f"{variant}, Excel" if raw.file_format == "xlsx" else f"{variant} CSV"


def _column(index: int, tag: str, text: str, import_cell: str, legacy: bool) -> SourceColumn:
    if legacy and re.fullmatch(r"V\d+", tag.strip()):
        tag, text = text, ""  # V1..V10: the name is in the second row
    import_id = _import_id(import_cell)
    # The ImportId names Qualtrics' own columns in any language; without it, the export tag does.
    known = BY_IMPORT_ID.get(compact(import_id)) if import_id else (LEGACY_NAMES if legacy else BY_IMPORT_ID).get(compact(tag))
    if known:
        return SourceColumn(index, tag, known[0], known[1], (tag,), text or None)
    qid = import_id or ""
    if tag.endswith("_DO") or qid.endswith("_DO"):
        return SourceColumn(index, tag, METADATA, "display_order", (tag,), text or None)
    if "Topics" in qid or "Sentiment" in qid or re.search(r" - (Topics|Sentiment.*|Topic Sentiment.*)$", tag):
        return SourceColumn(index, tag, METADATA, "text_analysis", (tag,), text or None)
    if import_id and not import_id.startswith("QID"):
        # Embedded data: set by the survey's author, may hold anything (a panel id, an email).
        role = identifier_role(tag)
        return SourceColumn(index, tag, IDENTIFIER if role else METADATA, role or "embedded_data", (tag,))
    open_text = tag.endswith("_TEXT") or qid.endswith("_TEXT")
    return SourceColumn(index, tag, QUESTION, None, (tag,), _question_text(text), open_text=open_text)


def _import_id(cell: str) -> str | None:
    try:
        value = json.loads(cell)
    except ValueError:
        return None
    return str(value.get("ImportId")) if isinstance(value, dict) and value.get("ImportId") else None


def _question_text(text: str) -> str | None:
    return text.strip() or None


def _flag(value: str) -> str | None:
    value = value.strip().casefold()
    if value in ("1", "true"):
        return "1"
    if value in ("0", "false"):
        return "0"
    return None
