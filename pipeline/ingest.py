"""Ingest: read a survey-platform export into the canonical response frame.

The canonical frame has one row per data record of the file and one column per concept id of the
instrument. Platform metadata (completion, duration) and identifier columns (names, emails, IPs,
response ids, exact timestamps, coordinates) are kept apart: identifiers are used in memory for
duplicate detection and free-text scrubbing, and never go past the de-identification stage.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.instrument import Instrument, QuestionType

# Qualtrics' own columns, lower-cased: what each one is.
QUALTRICS_IDENTIFIERS = {
    "ipaddress": "ip_address",
    "recipientlastname": "last_name",
    "recipientfirstname": "first_name",
    "recipientemail": "email",
    "externalreference": "external_reference",
    "externaldatareference": "external_reference",
    "locationlatitude": "latitude",
    "locationlongitude": "longitude",
    "responseid": "response_id",
    "startdate": "started_at",
    "enddate": "ended_at",
    "recordeddate": "recorded_at",
}
QUALTRICS_METADATA = {
    "status": "status",
    "progress": "progress",
    "duration (in seconds)": "duration_s",
    "finished": "finished",
    "distributionchannel": "distribution_channel",
    "userlanguage": "language",
}
SEEN_BUT_UNANSWERED = "-99"  # Qualtrics' code for a question shown and skipped


class ExportError(ValueError):
    """A file that cannot be read as an export; the message names the file and what is wrong."""


@dataclass
class Column:
    name: str  # as written in the file
    kind: str  # question | identifier | metadata | unknown
    maps_to: str | None = None  # concept id, identifier or metadata name


@dataclass
class Export:
    path: Path
    sha256: str
    platform: str
    header_rows: int
    answers: pd.DataFrame  # concept id columns; missing answers are None
    metadata: pd.DataFrame  # finished, progress, duration_s, ...
    identifiers: pd.DataFrame  # never stored: used for duplicates and scrubbing only
    columns: list[Column] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.answers)

    def source_row(self, index: int) -> int:
        """Row number as a spreadsheet shows it (header rows count, the first is row 1)."""
        return index + self.header_rows + 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export(path: Path, instrument: Instrument) -> Export:
    """Read one export file; raise ExportError naming the file when it cannot be used."""
    path = Path(path)
    text = _decode(path)
    records = _parse_csv(path, text)
    if not records:
        raise ExportError(f"{path}: the file is empty (no header row, no responses)")
    platform, header_rows = _detect(records)
    header = records[0]
    body = [r for r in records[header_rows:] if any(cell.strip() for cell in r)]
    width = len(header)
    for number, record in enumerate(body, start=header_rows + 1):
        if len(record) > width and any(cell.strip() for cell in record[width:]):
            raise ExportError(
                f"{path}: row {number} has {len(record)} fields but the header has {width}; "
                "the file may be truncated or have an unquoted delimiter"
            )
    body = [(r + [""] * width)[:width] for r in body]
    raw = pd.DataFrame(body, columns=_unique(header), dtype=object)
    columns = _classify(header, instrument, platform)
    answers = _answers(raw, columns, instrument)
    metadata = _named(raw, columns, "metadata")
    identifiers = _named(raw, columns, "identifier")
    return Export(
        path=path,
        sha256=file_sha256(path),
        platform=platform,
        header_rows=header_rows,
        answers=answers,
        metadata=metadata,
        identifiers=identifiers,
        columns=columns,
    )


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"{path}: cannot read the file ({exc.strerror})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Excel on Windows saves CSV as cp1252; it decodes any byte except five unused ones.
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise ExportError(
                f"{path}: the text encoding is neither UTF-8 nor Windows-1252 "
                f"(byte {exc.start}); save the export as UTF-8 CSV and try again"
            ) from None


def _parse_csv(path: Path, text: str) -> list[list[str]]:
    try:
        dialect = csv.Sniffer().sniff(text[:20000], delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise ExportError(f"{path}: not a readable CSV file ({exc})") from None


def _detect(records: list[list[str]]) -> tuple[str, int]:
    """Name the platform and how many header rows precede the responses."""
    header = [h.strip().lower() for h in records[0]]
    third = records[2] if len(records) > 2 else []
    if any(cell.startswith('{"ImportId"') for cell in third):
        return "qualtrics", 3
    if "responseid" in header and "startdate" in header:
        # A Qualtrics export whose ImportId row was removed still has the question-text row.
        return "qualtrics", 2 if len(records) > 1 and records[1][:1] == ["Start Date"] else 1
    return "csv", 1


def _unique(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for name in header:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}.{count}")
    return names


def _classify(header: list[str], instrument: Instrument, platform: str) -> list[Column]:
    aliases = instrument.alias_map()
    columns = []
    for name in _unique(header):
        key = name.strip().lower()
        if key in aliases:
            columns.append(Column(name, "question", aliases[key]))
        elif key in QUALTRICS_IDENTIFIERS:
            columns.append(Column(name, "identifier", QUALTRICS_IDENTIFIERS[key]))
        elif key in QUALTRICS_METADATA:
            columns.append(Column(name, "metadata", QUALTRICS_METADATA[key]))
        else:
            columns.append(Column(name, "unknown"))
    return columns


def _answers(raw: pd.DataFrame, columns: list[Column], instrument: Instrument) -> pd.DataFrame:
    mapped = {c.maps_to: c.name for c in columns if c.kind == "question"}
    frame = {}
    for question in instrument.questions:
        if question.id not in mapped:
            continue  # structural checks in validation decide whether that is allowed
        cells = raw[mapped[question.id]].tolist()
        if question.type is QuestionType.multiple:
            values = [_split_codes(v) for v in cells]
        elif question.type is QuestionType.text:
            values = [_blank_to_none(v) for v in cells]
        else:
            values = [_code(v) for v in cells]
        frame[question.id] = pd.Series(values, index=raw.index, dtype=object)
    return pd.DataFrame(frame, index=raw.index)


def _named(raw: pd.DataFrame, columns: list[Column], kind: str) -> pd.DataFrame:
    picked = {
        c.maps_to: pd.Series([_blank_to_none(v) for v in raw[c.name].tolist()], index=raw.index, dtype=object)
        for c in columns
        if c.kind == kind
    }
    return pd.DataFrame(picked, index=raw.index)


# Pandas would turn None into NaN in inferred columns: cells are cleaned as plain Python values.
def _blank_to_none(value: str | None) -> str | None:
    return value if isinstance(value, str) and value.strip() != "" else None


def _code(value: str | None) -> str | None:
    value = _blank_to_none(value)
    return None if value is None or value.strip() == SEEN_BUT_UNANSWERED else value.strip()


def _split_codes(value: str | None) -> list[str] | None:
    value = _code(value)
    if value is None:
        return None
    return [code.strip() for code in value.split(",") if code.strip()]


def describe_columns(export: Export) -> list[dict]:
    """Column classes for `consult ingest`: what each column is and what it maps to."""
    return [{"column": c.name, "class": c.kind, "maps_to": c.maps_to} for c in export.columns]
