"""Ingest: read a survey-platform export into the canonical response frame.

The canonical frame has one row per response in the file and one column per concept id of the
instrument. Platform metadata (completion as `finished` "1"/"0", progress, duration, language)
and identifier columns (names, emails, IPs, response ids, exact timestamps, coordinates) are kept
apart: identifiers are used in memory for duplicate detection and free-text scrubbing, and never
go past the de-identification stage.

Each platform's own formats are read by its adapter in `pipeline.platforms` (Qualtrics,
SurveyMonkey, LimeSurvey, Google Forms, KoboToolbox / ODK, REDCap, or any CSV / .xlsx table);
the platform is detected from the file unless named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.instrument import Instrument
from pipeline.platforms import ADAPTERS
from pipeline.platforms.answers import (
    Column,
    answers_frame,
    classify,
    identifier_questions,
    map_columns,
    named_frame,
    named_positions,
    question_identifiers,
)
from pipeline.platforms.common import IDENTIFIER, METADATA, QUESTION, UNKNOWN, Layout, identifier_role
from pipeline.platforms.detect import DEFINITIONS, definition_kind, read_layout
from pipeline.platforms.reading import RawFile, ReadError, read_raw

__all__ = ["Column", "Export", "ExportError", "Inspection", "describe_columns", "file_sha256", "inspect_file",
           "read_export"]


class ExportError(ValueError):
    """A file that cannot be read as an export; the message names the file and what is wrong."""


@dataclass
class Export:
    path: Path
    sha256: str
    platform: str
    header_rows: int
    answers: pd.DataFrame  # concept id columns; missing answers are None
    metadata: pd.DataFrame  # finished ("1"/"0"), progress, duration_s, language, ...
    identifiers: pd.DataFrame  # never stored: used for duplicates and scrubbing only
    # role -> concept: `direct` questions asking for an identifier (contact_email). Their answers are
    # identifiers too: under the role in `identifiers` when no platform column has it, else only as answers.
    identifier_questions: dict[str, str] = field(default_factory=dict)
    columns: list[Column] = field(default_factory=list)
    variant: str = ""
    source_rows: np.ndarray | None = None  # each response's row number in the file
    notes: list[str] = field(default_factory=list)
    day_first: bool = False  # the platform writes dates day first (Layout.day_first)

    @property
    def rows(self) -> int:
        return len(self.answers)

    def source_row(self, index: int) -> int:
        """Row number as a spreadsheet shows it (header rows count, the first is row 1)."""
        return int(self.source_rows_of(np.array([index]))[0])

    def source_rows_of(self, positions: np.ndarray) -> np.ndarray:
        """source_row for many rows at once (their positions in the frames)."""
        if self.source_rows is not None:
            return np.asarray(self.source_rows)[positions]
        return positions + self.header_rows + 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export(path: Path, instrument: Instrument, platform: str | None = None,
                answers_of: Collection[str] | None = None) -> Export:
    """Read one export file; raise ExportError naming the file when it cannot be used.
    `answers_of`: the only questions whose answers are wanted (all when None; the disclosure audit
    reads the direct identifiers only)."""
    path = Path(path)
    raw = _raw(path)
    layout = _layout(path, raw, platform)
    index = pd.RangeIndex(layout.size)
    mapping = map_columns(layout, instrument)
    columns = classify(layout, mapping)
    questions = identifier_questions(layout, instrument, mapping)
    platform_roles = {*named_positions(columns, IDENTIFIER), *layout.derived_identifiers}
    identifiers = {**question_identifiers(layout, mapping, questions, platform_roles), **layout.derived_identifiers}
    return Export(
        path=path,
        sha256=file_sha256(path),
        platform=layout.platform,
        header_rows=layout.header_rows,
        answers=answers_frame(layout, instrument, mapping, index, answers_of),
        metadata=named_frame(layout, columns, METADATA, index, layout.derived),
        identifiers=named_frame(layout, columns, IDENTIFIER, index, identifiers),
        identifier_questions=questions,
        columns=columns,
        variant=layout.variant,
        source_rows=layout.source_rows,
        notes=layout.notes,
        day_first=layout.day_first,
    )


@dataclass
class Inspection:
    """What `consult inspect` says about a file, without an instrument."""

    path: Path
    platform: str
    title: str
    variant: str
    file_format: str
    encoding: str | None
    delimiter: str | None
    line_ends: str | None
    header_rows: int
    rows: int
    columns: list[Column]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "file": str(self.path), "platform": self.platform, "platform_name": self.title,
            "variant": self.variant, "format": self.file_format, "encoding": self.encoding,
            "delimiter": self.delimiter, "line_ends": self.line_ends, "header_rows": self.header_rows,
            "rows": self.rows, "columns": [{"column": c.name, "class": c.kind, "role": c.maps_to} for c in self.columns],
            "notes": self.notes,
        }


def inspect_file(path: Path, platform: str | None = None) -> Inspection:
    """Name the platform and variant of a file and classify every column; changes nothing."""
    path = Path(path)
    raw = _raw(path)
    kind = definition_kind(raw) if platform is None else None
    if kind is not None:
        return Inspection(path, kind.replace(" ", "_"), DEFINITIONS[kind], "questionnaire definition",
                          raw.file_format, raw.encoding, raw.delimiter, raw.line_ends, 1,
                          max(0, raw.main.size - 1), [],
                          ["not survey responses: start an instrument from it with `consult instrument draft`"])
    layout = _layout(path, raw, platform)
    return Inspection(path, layout.platform, ADAPTERS[layout.platform].title, layout.variant, raw.file_format,
                      raw.encoding, raw.delimiter, raw.line_ends, layout.header_rows, layout.size,
                      _classes(layout), layout.notes)


def _classes(layout: Layout) -> list[Column]:
    """Column classes without an instrument: platform columns as the platform defines them; any
    other column is a question, or a direct identifier when its name or wording asks for one."""
    columns = []
    for column in layout.columns:
        if column.kind != QUESTION:
            columns.append(Column(column.name, column.kind, column.role))
        elif not column.name.strip():
            columns.append(Column(column.name, UNKNOWN))
        elif role := identifier_role(column.text or column.name):
            columns.append(Column(column.name, IDENTIFIER, role))
        else:
            columns.append(Column(column.name, QUESTION))
    return columns


def _raw(path: Path) -> RawFile:
    try:
        return read_raw(path)
    except ReadError as exc:
        raise ExportError(f"{path}: {exc}") from None


def _layout(path: Path, raw: RawFile, platform: str | None) -> Layout:
    try:
        return read_layout(raw, platform)
    except ReadError as exc:
        raise ExportError(f"{path}: {exc}") from None


def describe_columns(export: Export) -> list[dict]:
    """Column classes for `consult ingest`: what each column is and what it maps to."""
    return [{"column": c.name, "class": c.kind, "maps_to": c.maps_to} for c in export.columns]
