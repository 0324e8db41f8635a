"""From a platform's layout to the canonical frames, driven by the instrument.

Columns are matched to concepts by the instrument's aliases (shared and per platform) or concept
ids, then by question wording (platforms that use the question text as the header), then as one
option of a multiple-choice question (Qualtrics `Q5_1`, LimeSurvey `Q5[SQ001]`, REDCap
`q5___1`, KoboToolbox `group/q5/a`, SurveyMonkey's option row). Cells become answer codes through
the codes, then the labels (English or French) of the question's choices.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import numpy as np
import pandas as pd

from pipeline.instrument import Choice, Disclosure, Instrument, Question, QuestionType
from pipeline.platforms.common import (
    IDENTIFIER,
    QUESTION,
    UNKNOWN,
    Layout,
    SourceColumn,
    each_distinct,
    filled,
    folded as folded_text,
    identifier_role,
    normalised,
)

# Cells of a one-column-per-option layout that mean "not selected".
NOT_SELECTED = {"", "0", "n", "no", "false", "non", "nein", "not selected", "unchecked", "n/a"}
# Ways a multiple-choice option column is named after its question: Qualtrics Q5_1, LimeSurvey and
# Google Forms "Q5 [option]", REDCap q5___1, KoboToolbox group/q5/option.
OPTION_PATTERNS = [
    re.compile(r"^(?P<base>.+?)___(?P<option>[A-Za-z0-9_]+)$"),
    re.compile(r"^(?P<base>.+?)\s*\[(?P<option>[^\[\]]+)\]$"),
    re.compile(r"^(?P<base>.+)/(?P<option>[^/]+)$"),
    re.compile(r"^(?P<base>.+)_(?P<option>[A-Za-z0-9]+)$"),
]


@dataclass
class Column:
    """How one column of the file is used: what `consult ingest` and `consult inspect` report."""

    name: str  # as written in the file
    kind: str  # question | identifier | metadata | unknown
    maps_to: str | None = None  # concept id, identifier or metadata name


@dataclass
class Mapping:
    direct: dict[str, int] = field(default_factory=dict)  # concept -> column index
    options: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # concept -> (column, option)
    concept_of: dict[int, str] = field(default_factory=dict)  # column index -> concept


def concept_index(instrument: Instrument, platform: str) -> tuple[dict[str, str], dict[str, str]]:
    """Names (aliases and ids) and wordings (en and fr labels), normalised, -> concept id."""
    names: dict[str, str] = {}
    wordings: dict[str, str | None] = {}
    for question in instrument.questions:
        for alias in question.aliases_for(platform):
            names.setdefault(normalised(alias), question.id)
        for label in (question.label.en, question.label.fr):
            key = normalised(label)
            wordings[key] = question.id if wordings.get(key, question.id) == question.id else None
    return names, {k: v for k, v in wordings.items() if v is not None}


def map_columns(layout: Layout, instrument: Instrument) -> Mapping:
    names, wordings = concept_index(instrument, layout.platform)
    questions = {q.id: q for q in instrument.questions}
    mapping = Mapping()
    candidates = [c for c in layout.columns if c.kind == QUESTION]

    def take(column: SourceColumn, concept: str | None) -> bool:
        if concept is None or concept in mapping.direct or concept in mapping.options:
            return False
        mapping.direct[concept] = column.index
        mapping.concept_of[column.index] = concept
        return True

    # 1. The column's own name; 2. its other names and its question text.
    for column in candidates:
        take(column, names.get(normalised(_keys(column)[0])))
    for column in candidates:
        if column.index in mapping.concept_of:
            continue
        for key in _keys(column)[1:]:
            if take(column, names.get(normalised(key))):
                break
        else:
            if column.text:
                take(column, wordings.get(normalised(column.text)))
    # 3. One option of a multiple-choice question.
    for column in candidates:
        if column.index in mapping.concept_of:
            continue
        for base, option in _option_readings(column):
            concept = names.get(normalised(base)) or wordings.get(normalised(base))
            if concept and questions[concept].type is QuestionType.multiple and concept not in mapping.direct:
                mapping.options.setdefault(concept, []).append((column.index, option))
                mapping.concept_of[column.index] = concept
                break
            if concept and concept in mapping.direct:  # Kobo writes both forms: the joined column wins
                mapping.concept_of[column.index] = concept
                break
    # 4. One row of a grid whose row text is the question's own wording: SurveyMonkey's matrix row
    # under its stem, Google Forms' and LimeSurvey's "Stem [Row]". The stem is the platform's own
    # heading, not in the instrument, so the row text is all there is to match.
    for column in candidates:
        if column.index in mapping.concept_of:
            continue
        for _, row_text in _option_readings(column):
            concept = wordings.get(normalised(row_text))
            if concept and questions[concept].type is not QuestionType.multiple and take(column, concept):
                break
    return mapping


def _keys(column: SourceColumn) -> list[str]:
    return list(column.keys) or [column.name]


def _option_readings(column: SourceColumn) -> list[tuple[str, str]]:
    if column.option is not None:
        return [(base, column.option) for base in column.option_of]
    readings = []
    for text in [*_keys(column), *([column.text] if column.text else [])]:
        for pattern in OPTION_PATTERNS:
            match = pattern.match(text.strip())
            if match:
                readings.append((match["base"], match["option"].strip()))
    return readings


def classify(layout: Layout, mapping: Mapping) -> list[Column]:
    columns = []
    for column in layout.columns:
        if column.kind == QUESTION:
            concept = mapping.concept_of.get(column.index)
            if concept is not None:
                columns.append(Column(column.name, QUESTION, concept))
            elif role := identifier_role(column.text or column.name):
                columns.append(Column(column.name, IDENTIFIER, role))
            else:
                columns.append(Column(column.name, UNKNOWN))
        else:
            columns.append(Column(column.name, column.kind, column.role))
    return columns


# --- frames ----------------------------------------------------------------------------------


def answers_frame(layout: Layout, instrument: Instrument, mapping: Mapping, index: pd.Index,
                  only: Collection[str] | None = None) -> pd.DataFrame:
    """`only`: the questions wanted (all when None): a reader needing a few does not build the rest."""
    # Questions without a column are left out: structural checks in validation decide whether that is allowed.
    questions = [q for q in instrument.questions if (q.id in mapping.direct or q.id in mapping.options)
                 and (only is None or q.id in only)]
    block = _block(len(questions), len(index))
    for cells, question in zip(block, questions):
        choices = ChoiceIndex(instrument.choices_of(question), layout.values == "labels")
        if question.id in mapping.direct:
            # Rows with the same cell share one value, a list of choices too: a list per row took a
            # gigabyte for a million responses, and no stage changes a cell in place.
            values = each_distinct(column_cells(layout, mapping.direct[question.id]),
                                   lambda cell: cell_value(cell, question, choices, layout))
        else:
            values = _objects(_selected(layout, mapping.options[question.id], choices))
        cells[:] = values
    return _frame(block, [q.id for q in questions], index)


def named_frame(layout: Layout, columns: list[Column], kind: str, index: pd.Index,
                extra: dict[str, list[str | None]] | None = None) -> pd.DataFrame:
    """Metadata or identifiers by name; the first column of a name wins, `extra` overrides."""
    positions = named_positions(columns, kind)
    extra = extra or {}
    names = list(dict.fromkeys([*positions, *extra]))
    block = _block(len(names), len(index))
    for cells, name in zip(block, names):
        cells[:] = _objects(extra[name]) if name in extra else _blank_as_none(column_cells(layout, positions[name]))
    return _frame(block, names, index)


def named_positions(columns: list[Column], kind: str) -> dict[str, int]:
    """Each metadata or identifier name the file has, with its first column."""
    positions: dict[str, int] = {}
    for position, column in enumerate(columns):
        if column.kind == kind and column.maps_to and column.maps_to not in positions:
            positions[column.maps_to] = position
    return positions


def _block(columns: int, rows: int) -> np.ndarray:
    """The frame's cells, one row of the block per column, filled column by column: built from a dict
    of columns, pandas would copy them all into such a block (twice the memory for a moment)."""
    return np.empty((columns, rows), dtype=object)


def _frame(block: np.ndarray, names: list[str], index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(block.T, index=index, columns=names, dtype=object, copy=False)


def _objects(values) -> np.ndarray:
    """Values as a one-dimensional object array (lists stay list cells, not a second dimension)."""
    return np.fromiter(values, dtype=object)


def identifier_questions(layout: Layout, instrument: Instrument, mapping: Mapping) -> dict[str, str]:
    """The `direct` questions that name, email or locate the respondent (the 2025 `contact_email`, a
    REDCap `email` field), by identifier role -> concept id (the first question of a role)."""
    found: dict[str, str] = {}
    for concept, position in mapping.direct.items():
        question = instrument.question(concept)
        column = layout.columns[position]
        role = identifier_role(column.text or column.name) or identifier_role(concept)
        if question.disclosure is Disclosure.direct and role and role not in found:
            found[role] = concept
    return found


def question_identifiers(layout: Layout, mapping: Mapping, questions: dict[str, str],
                         platform_roles: Collection[str]) -> dict[str, list[str | None]]:
    """The identifier questions' answers, as identifiers of the roles the platform's own columns do
    not fill: a platform column (Qualtrics RecipientEmail) is never replaced by a question's answers,
    which stay readable as answers (`Export.identifier_questions`)."""
    return {role: _blank_as_none(column_cells(layout, mapping.direct[concept])).tolist()
            for role, concept in questions.items() if role not in platform_roles}


def _blank_as_none(cells: np.ndarray) -> np.ndarray:
    return np.where(filled(cells), cells, None)


def column_cells(layout: Layout, position: int) -> np.ndarray:
    """One column of the data records."""
    return layout.cells[position]


# --- cells -----------------------------------------------------------------------------------


def cell_value(cell: str, question: Question, choices: "ChoiceIndex", layout: Layout) -> str | list[str] | None:
    if _blank_to_none(cell) is None or cell.strip() in layout.missing:
        return None
    if question.type is QuestionType.text:
        return cell
    if question.type is QuestionType.numeric:
        return number_text(cell)
    if question.type is QuestionType.date:
        return cell.strip()
    if question.type is QuestionType.multiple:
        return choices.split(cell.strip(), layout.multi_separator) or None
    return choices.code(cell.strip())


def _selected(layout: Layout, options: list[tuple[int, str]], choices: "ChoiceIndex") -> list[list[str] | None]:
    """The choices ticked in each row, one column per option: each distinct combination of ticks
    is turned into codes once."""
    ticked = np.column_stack([each_distinct(layout.cells[position], lambda cell: _ticked(cell.strip(), layout))
                              for position, _ in options]).astype(bool)
    codes = [choices.code(option) for _, option in options]
    combinations, combination_of = np.unique(ticked, axis=0, return_inverse=True)
    # Nothing selected is no answer (REDCap writes 0 for every unticked box); rows with the same
    # ticks share one list, as rows with the same cell do.
    picked = [[code for code, tick in zip(codes, ticks) if tick] or None for ticks in combinations]
    return [picked[c] for c in combination_of.reshape(-1).tolist()]


def _ticked(cell: str, layout: Layout) -> bool:
    return not (cell.casefold() in NOT_SELECTED or cell in layout.missing)


def number_text(cell: str) -> str:
    """A number as plain text, whatever the platform wrote or the person typed: `24,50`, `$24.50`,
    `24.50 $` and `24.5` are all `24.5`. Anything else is kept as typed (validation quarantines it)."""
    text = cell.strip().replace("\u00a0", "").replace(" ", "")
    if re.fullmatch(r"\$-?[\d.,]+|-?[\d.,]+\$", text):
        text = text.strip("$")  # a dollar sign before or after, as validation reads it
    if re.fullmatch(r"-?\d+,\d+", text):
        text = text.replace(",", ".")  # a decimal comma
    if "_" in text:
        return cell.strip()  # Decimal reads "2_1" as 21: nobody types a number that way
    try:
        number = Decimal(text)
    except InvalidOperation:
        return cell.strip()
    if not number.is_finite():
        return cell.strip()
    plain = format(number.normalize(), "f")
    return plain if plain != "-0" else "0"


def _blank_to_none(value: str | None) -> str | None:
    return value if isinstance(value, str) and value.strip() != "" else None


class ChoiceIndex:
    """A question's choices, found by code or by label (English or French)."""

    def __init__(self, choices: list[Choice], labels_first: bool):
        self.codes = {c.code: c.code for c in choices}
        self.folded_codes = {c.code.casefold(): c.code for c in choices}
        self.labels: dict[str, str] = {}
        for choice in choices:
            for label in (choice.label.en, choice.label.fr):
                self.labels.setdefault(normalised(label), choice.code)
        self.labels_first = labels_first

    def code(self, value: str) -> str:
        """The code a cell or option name stands for; the value itself when nothing matches."""
        value = value.strip()
        by_code = self.codes.get(value) or self.folded_codes.get(value.casefold()) or self._numeric(value)
        by_label = self.labels.get(normalised(value))
        found = (by_label or by_code) if self.labels_first else (by_code or by_label)
        return found or value

    def _numeric(self, value: str) -> str | None:
        """`1.0` for code 1 (a spreadsheet's number), `SQ001` for code 1 (LimeSurvey's default)."""
        match = re.fullmatch(r"(?:[A-Za-z]{1,3})?0*(\d+)(?:\.0+)?", value)
        if match:
            return self.codes.get(match.group(1))
        return None

    def split(self, cell: str, separator: str | None) -> list[str]:
        """Several choices in one cell. Codes split on the separator; labels are found whole,
        because a label may itself contain the separator (Google Forms joins labels with ", ")."""
        spaced = separator == " "
        pieces = cell.split() if spaced else [p.strip() for p in re.split(r"[,;]", cell) if p.strip()]
        if all(p in self.codes or self._numeric(p) for p in pieces) and not self.labels_first:
            return [self.code(p) for p in pieces]
        labels = tuple(sorted(self.labels.items(), key=lambda kv: -len(kv[0])))
        found = _split_labels(cell, labels, SPACED if spaced else COMMAS)
        if found is not None:
            return list(found)
        return [self.code(p) for p in pieces]


COMMAS = re.compile(r"\s*[,;]\s*")
SPACED = re.compile(r"\s*[,;]\s*|\s+")


def _split_labels(cell: str, labels: tuple[tuple[str, str], ...], separator: re.Pattern) -> tuple[str, ...] | None:
    """Read a cell as labels joined by commas, longest labels first; a piece that is no label
    (Google Forms' "Other" answer) is kept as typed, up to the next comma."""
    text = " ".join(cell.split())
    folded = folded_text(text)
    if len(folded) != len(text):
        return None

    @lru_cache(maxsize=None)
    def read_from(start: int) -> tuple[str, ...] | None:
        if start == len(folded):
            return ()
        for label, code in labels:
            if label and folded.startswith(label, start):
                rest = _after_separator(folded, start + len(label), separator)
                if rest is not None and (tail := read_from(rest)) is not None:
                    return (code, *tail)
        next_separator = separator.search(folded, start + 1)
        end = len(folded) if next_separator is None else next_separator.start()
        piece = text[start:end].strip()
        rest = _after_separator(folded, end, separator)
        if piece and rest is not None and (tail := read_from(rest)) is not None:
            return (piece, *tail)
        return None

    return read_from(0)


def _after_separator(text: str, position: int, separator: re.Pattern) -> int | None:
    if position == len(text):
        return position
    match = separator.match(text, position)
    return match.end() if match and match.end() > position else None
