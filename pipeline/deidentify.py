"""De-identify: the boundary between an export (identifiers and all) and the warehouse.

What crosses it: a random respondent key (new for every load, not derived from anything), the wave,
coded answers to questions whose disclosure class is not `direct`, and open answers after scrubbing.
What never crosses it: platform identifier columns (names, emails, IPs, coordinates, response ids,
exact timestamps), `direct` questions (e.g. a contact email), unknown columns.

Derived answers (surveys/derived.yaml, e.g. whether the hourly wage is below the living wage of the
respondent's area) are worked out here, from the answers as given, before numbers are rounded and
before k-anonymity generalises anything; only their result is stored.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Iterable, Iterator, Literal, Mapping

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.ingest import Export
from pipeline.instrument import (CONCEPT_ID, Choice, Disclosure, Instrument, Labels, Question, QuestionType, read_yaml,
                                 read_yaml_model)
from pipeline.validate import LOADED, Validation, numbers

if TYPE_CHECKING:
    import duckdb
    from pipeline.anonymity import NumericCoarsening

# The respondent's own names and email: scrubbed from their free text even when no pattern knows them.
OWN_IDENTIFIERS = ("first_name", "last_name", "email")


@dataclass
class Deidentified:
    respondents: pd.DataFrame  # respondent_key, wave
    answers: pd.DataFrame  # respondent_key, wave, concept, value (one row per code for multiple)
    open_text: pd.DataFrame  # respondent_key, wave, concept, text, placeholders
    # respondent_key, wave, flag, detail: data-quality flags of the loaded rows (no identifier)
    quality_flags: pd.DataFrame = field(default_factory=lambda: _empty("wave", "flag", "detail"))
    # the derived answers among `answers`: how the warehouse describes them (surveys/derived.yaml)
    derived: list["DerivedConcept"] = field(default_factory=list)
    # like `answers`, the answers to the concepts `held` (deidentify's argument): written apart, see load
    held_answers: pd.DataFrame = field(default_factory=lambda: _empty("wave", "concept", "value"))


def deidentify(export: Export, validation: Validation, instrument: Instrument, scrubber: "Scrubber",
               coarsening: Mapping[str, "NumericCoarsening"] | None = None,
               derivations: "Derivations | None" = None, held: Collection[str] = ()) -> Deidentified:
    """`coarsening`: numeric quasi-identifiers rounded and top-coded before storage (surveys/privacy.yaml);
    `derivations`: answers worked out from the raw answers before that (surveys/derived.yaml); `held`:
    concepts whose answers go to `held_answers`, not `answers` (the key quasi-identifiers, which
    k-anonymity replaces: see load.write_run)."""
    kept = validation.outcome[validation.outcome == LOADED].index
    keys = pd.Series(new_keys(len(kept)), index=kept)
    respondents = pd.DataFrame({"respondent_key": keys.values, "wave": instrument.wave})
    rows = export.answers.index.get_indexer(kept)  # where the kept rows are: one lookup, not one per column
    stored = [q for q in instrument.questions if q.disclosure is not Disclosure.direct and q.id in export.answers]
    texts = _OpenText(scrubber, _own_identifiers(export, rows, scrubber.own_answers))
    for question in stored:
        if question.type is QuestionType.text:
            texts.add(question.id, _kept(export.answers[question.id], rows))
    derived = derive(_read_by(export.answers, derivations, rows), instrument, derivations) if derivations else []

    def coded(holding: bool) -> Iterator[tuple[str, pd.Series]]:  # one question at a time, as the long frame is built
        for question in stored:
            if question.type is not QuestionType.text and (question.id in held) is holding:
                yield question.id, _coarsened(_kept(export.answers[question.id], rows), (coarsening or {}).get(question.id))
        for concept, values in derived:
            if (concept.question.id in held) is holding:
                yield concept.question.id, values.reset_index(drop=True)

    answers = _long(coded(False), keys.to_numpy(), instrument.wave)
    held_answers = _long(coded(True), keys.to_numpy(), instrument.wave)
    open_text = texts.frame(keys.to_numpy(), instrument.wave)
    flags = validation.loaded_flags(keys)
    flags.insert(1, "wave", instrument.wave)
    return Deidentified(respondents, answers, open_text, flags, [concept for concept, _ in derived], held_answers)


def new_keys(count: int) -> np.ndarray:
    """`count` distinct random respondent keys, derived from nothing: positive 63-bit integers (a
    whole number is hashed, compared and compressed many times faster than text, in every table
    that holds the key; tens of millions of answer rows do)."""
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < count:  # again only in the unlikely case of two equal draws
        drawn = np.frombuffer(secrets.token_bytes(8 * (count - len(keys))), dtype=np.uint64) >> np.uint64(1)
        keys = pd.unique(np.concatenate([keys, drawn.astype(np.int64)]))
        keys = keys[keys > 0]
    return keys


def _empty(*columns: str) -> pd.DataFrame:
    return pd.DataFrame({"respondent_key": pd.Series(dtype=np.int64), **{c: pd.Series(dtype=object) for c in columns}})


def _kept(column: pd.Series, rows: np.ndarray) -> pd.Series:
    """A column's kept rows, indexed by their position among them."""
    return column.iloc[rows].reset_index(drop=True)


def _coarsened(values: pd.Series, rule: "NumericCoarsening | None") -> pd.Series:
    if rule is None:
        return values
    if infer_dtype(values, skipna=True) != "string":
        return values.map(rule.apply, na_action="ignore")
    # answers as typed: each distinct one is coarsened once (text has one exact form per value)
    codes, distinct = pd.factorize(values)
    coarse = np.array([rule.apply(value) for value in distinct] + [None], dtype=object)
    return pd.Series(coarse[codes], index=values.index)  # code -1 (no answer): None


def _long(coded: Iterable[tuple[str, pd.Series]], keys: np.ndarray, wave: int) -> pd.DataFrame:
    """One row per answer given (per code of a multiple-choice answer): respondent_key, wave, concept,
    value. `coded`: each concept's answers by kept position. Built as whole columns, each once (no
    concatenation of frames). Every column but the wave is a categorical: a row holds small integer
    codes into the respondent keys, the concepts and the distinct values (a large export has tens of
    millions of rows, and pointers to shared strings alone would take 24 bytes a row)."""
    positions, value_codes, concept_codes, counts = [], [], [], []
    distinct: dict[str, int] = {}  # every value given -> its code
    concepts: dict[str, int] = {}  # every concept -> its code
    for concept, answers in coded:
        given = answers.dropna()
        if infer_dtype(given) != "string":  # several codes per answer (a multiple choice)
            given = given.explode().dropna()
        positions.append(given.index.to_numpy(dtype=np.int32))
        codes, uniques = pd.factorize(given.astype(str).to_numpy(dtype=object))
        code_of = np.array([distinct.setdefault(value, len(distinct)) for value in uniques.tolist()], dtype=np.int32)
        value_codes.append(code_of[codes])
        concept_codes.append(concepts.setdefault(concept, len(concepts)))
        counts.append(len(given))
    if not concepts:
        frame = _empty("concept", "value")
        frame.insert(1, "wave", wave)
        return frame
    # codes into the keys too: 4 bytes a row, not 8 (DuckDB reads the column as the keys themselves)
    respondent_keys = pd.Categorical.from_codes(np.concatenate(positions), categories=pd.Index(keys), validate=False)
    del positions  # each piece is let go once its column is whole
    given_values = _categories(np.concatenate(value_codes), np.array(list(distinct), dtype=object))
    del value_codes
    return pd.DataFrame({"respondent_key": respondent_keys, "wave": np.full(sum(counts), wave, dtype=np.int32),
                         "concept": _categories(np.repeat(np.array(concept_codes, dtype=np.int32), counts),
                                                np.array(list(concepts), dtype=object)),
                         "value": given_values}, copy=False)


def _categories(codes: np.ndarray, texts: np.ndarray) -> pd.Categorical:
    """A text column as codes into its distinct texts (unordered, as given)."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(_strings(texts)), validate=False)


def _strings(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """The text column pandas would make of `values` (Python strings), without copying them."""
    return pd.array(values, dtype="str", copy=False)


def _read_by(answers: pd.DataFrame, derivations: "Derivations | None", rows: np.ndarray) -> pd.DataFrame:
    """The kept rows of the columns derived answers read (not a copy of every answer)."""
    read = {name for d in (derivations.definitions if derivations else []) for name in (d.compare.value, d.compare.key)}
    return answers[[c for c in answers.columns if c in read]].iloc[rows]


class _OpenText:
    """Open answers, scrubbed. A text that holds none of its respondent's own identifiers is scrubbed
    the same way wherever it appears, so each distinct such text is scrubbed once."""

    def __init__(self, scrubber: "Scrubber", own: list[tuple[str | None, list[Any]]]):
        self.scrubber = scrubber
        self.own = own  # per identifier column: each kept row's value
        self.once: dict[str, tuple[str, int]] = {}
        self.positions: list[int] = []
        self.concepts: list[str] = []
        self.texts: list[str] = []
        self.found: list[int] = []

    def add(self, concept: str, values: pd.Series) -> None:
        for position, text in values.dropna().items():
            clean, found = _scrub_once(self.scrubber, str(text), self.own, position, self.once)
            self.positions.append(position)
            self.concepts.append(concept)
            self.texts.append(clean)
            self.found.append(found)

    def frame(self, keys: np.ndarray, wave: int) -> pd.DataFrame:
        if not self.positions:
            frame = _empty("concept", "text", "placeholders")
        else:
            frame = pd.DataFrame({"respondent_key": keys[self.positions].tolist(), "concept": self.concepts,
                                  "text": self.texts, "placeholders": self.found})
        frame.insert(1, "wave", wave)
        return frame


def _scrub_once(scrubber: "Scrubber", text: str, own: list[tuple[str | None, list[Any]]], position: int,
                once: dict[str, tuple[str, int]]) -> tuple[str, int]:
    """`text` scrubbed, with its respondent's own identifiers (`own`, at `position`) when it holds
    them; otherwise the same text is scrubbed once (`once` keeps the results)."""
    mine = {str(column[position]): label or _own_label(str(column[position]))
            for label, column in own if column[position]}
    if any(_mentions(text, value) for value in mine if len(value) > 2):
        return scrubber.scrub(text, extra=mine)
    if text not in once:
        once[text] = scrubber.scrub(text)
    return once[text]


def scrub_texts(texts: list[str | None], export: Export, rows: np.ndarray, scrubber: "Scrubber") -> list[str | None]:
    """Text typed where it is not an open answer (a value failing validation, at the positions
    `rows` of the export), scrubbed as open answers are, its row's own names and email included."""
    own = _own_identifiers(export, rows, scrubber.own_answers)
    once: dict[str, tuple[str, int]] = {}
    return [None if text is None else _scrub_once(scrubber, text, own, position, once)[0]
            for position, text in enumerate(texts)]


def only_what_deidentify_reads(export: Export) -> Export:
    """The export without its metadata and the identifiers de-identification does not read (response
    ids, addresses, timestamps, coordinates: validation's), so that they are let go before the
    de-identified frames are built."""
    own = [c for c in OWN_IDENTIFIERS if c in export.identifiers]
    return replace(export, metadata=export.metadata.iloc[:, :0], identifiers=export.identifiers[own])


def _own_identifiers(export: Export, rows: np.ndarray,
                     own_answers: Mapping[str, str] | None = None) -> list[tuple[str | None, list[Any]]]:
    """The kept rows' own names and emails (a list per column, None where missing), each with its
    placeholder (None: [EMAIL] or [NAME], as the value reads): scrubbed from their free text even when
    no pattern knows them. With them the answers to the `direct` questions of `own_answers` (question
    -> placeholder, surveys/deidentification.yaml): an employer named where the questionnaire asks
    for it, never stored, is often named again in a comment."""
    columns: list[tuple[str | None, pd.Series]] = [(None, export.identifiers[c]) for c in OWN_IDENTIFIERS
                                                   if c in export.identifiers]
    # the questions asking for them too (contact_email): a platform column of the same role is not them
    columns += [(None, export.answers[concept]) for role, concept in export.identifier_questions.items()
                if role in OWN_IDENTIFIERS and concept in export.answers]
    columns += [(label, export.answers[concept]) for concept, label in (own_answers or {}).items()
                if concept in export.answers]
    own = []
    for label, column in columns:
        values = column.iloc[rows]
        own.append((label, [None if missing else value for value, missing in zip(values.tolist(), values.isna().tolist())]))
    return own


def _own_label(value: str) -> str:
    """The placeholder of a row's own name or email."""
    return "EMAIL" if "@" in value else "NAME"


def _mentions(text: str, value: str) -> bool:
    """Whether `text` holds `value` as the scrubber matches it (ignoring case and accents)."""
    if text.isascii() and value.isascii():  # ASCII only: what own_value_pattern matches is exactly this
        return value.lower() in text.lower()
    return own_value_pattern(value).search(text) is not None


@lru_cache(maxsize=1)
def _accented_forms() -> dict[str, str]:
    """Each ASCII letter with its accented forms (Latin-1 and Latin Extended-A: French, Spanish,
    Portuguese, Polish, Turkish, ... names): "e" -> "eèéêëēĕėęě"."""
    forms: dict[str, str] = {}
    for code in range(0xC0, 0x180):
        char = chr(code)
        base = unicodedata.normalize("NFKD", char)[0].lower()
        if base.isascii() and base.isalpha() and char.lower() != base:
            forms[base] = forms.get(base, base) + char.lower()
    return forms


@lru_cache(maxsize=1)
def accent_folding() -> dict[int, str | None]:
    """A str.translate table taking lower-case text to the letters own_value_pattern matches
    alike: each accented form of _accented_forms to its ASCII letter, and a combining accent (as
    in a decomposed "é") dropped, as own_value_pattern drops it from the value. For a search that
    cannot use a pattern per value (the release audit's millions of identifier values)."""
    table: dict[int, str | None] = {ord(form): base for base, forms in _accented_forms().items() for form in forms[1:]}
    table.update(dict.fromkeys(COMBINING_ACCENTS))
    return table


COMBINING_ACCENTS = range(0x300, 0x370)  # Unicode's block of combining diacritical marks


def fold_accents(text: str) -> str:
    """Lower-case `text` without its accents ("bélanger" -> "belanger"): see accent_folding."""
    return text if text.isascii() else text.translate(accent_folding())


@lru_cache(maxsize=4096)
def own_value_pattern(value: str) -> re.Pattern:
    """A row's own name or email as found in its free text: any case, with or without its accents.
    The platform's name field and the answer are typed apart: "Belanger" there, "Bélanger" here
    (or the other way round) is the same person."""
    forms = _accented_forms()
    pieces = []
    for char in unicodedata.normalize("NFKD", value):
        if unicodedata.combining(char):
            continue  # the accent of the letter before, which its class below already allows
        base = char.lower()
        pieces.append(f"[{forms[base]}]" if base in forms else re.escape(char))
    return re.compile("".join(pieces), re.IGNORECASE)


# --- derived answers (surveys/derived.yaml) ----------------------------------------------------

DERIVED_FILE = "derived.yaml"
NO_ANSWER = "no_answer"


class DerivationError(ValueError):
    """Derived-answer definitions or their reference data that cannot be used; names the file and field."""


def derived_path(surveys_dir: Path) -> Path:
    return Path(surveys_dir) / DERIVED_FILE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateYear(_Strict):
    year: int
    caveat: str = ""


class ReferenceTable(_Strict):
    """Rates by year and by answer code (e.g. living wages by living-wage area), with their source."""

    source: str
    source_url: str = ""
    regions: dict[str, str] = Field(default_factory=dict)  # what each code stands for
    rates: dict[int, dict[str, float]]
    rate_year_for_wave: dict[int, RateYear] = Field(default_factory=dict)
    path: str = ""

    @field_validator("regions", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("rates", mode="before")
    @classmethod
    def _rate_codes_as_text(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {year: cls._codes_as_text(rates) for year, rates in value.items()}

    @model_validator(mode="after")
    def _years_exist(self) -> "ReferenceTable":
        for wave, chosen in self.rate_year_for_wave.items():
            if chosen.year not in self.rates:
                raise ValueError(f"rate_year_for_wave {wave} names year {chosen.year}, which has no rates")
        return self

    def year_for(self, wave: int) -> RateYear:
        """The rates a wave is compared with: the year the table names for it. A person says it for
        every new wave (`consult wave new` asks): falling back to the latest rates would silently
        compare a wave with stale rates when newer ones were published."""
        if wave in self.rate_year_for_wave:
            return self.rate_year_for_wave[wave]
        raise DerivationError(
            f"{self.path}: no rate year is set for wave {wave}. Add the newest published rates under `rates:` "
            f"if they are missing (latest there: {max(self.rates) if self.rates else 'none'}), then "
            f"`{wave}: {{year: YEAR}}` under `rate_year_for_wave:` (the rates in force while the wave was collected)")

    def cited(self) -> str:
        return self.source + (f" ({self.source_url})" if self.source_url else "")


class Comparison(_Strict):
    value: str = Field(pattern=CONCEPT_ID)  # a numeric question, as answered
    key: str = Field(pattern=CONCEPT_ID)  # a choice question: its code picks the rate
    reference: str  # the reference table, relative to surveys/


class Derivation(_Strict):
    id: str = Field(pattern=CONCEPT_ID)
    label: Labels
    disclosure: Literal["sensitive", "none"]  # never direct or quasi: not a key for k-anonymity
    compare: Comparison
    below: Choice
    at_least: Choice
    unknown: Literal["no_answer"] | Choice

    @model_validator(mode="after")
    def _distinct_answers(self) -> "Derivation":
        codes = [c.code for c in self.choices]
        if len(codes) != len(set(codes)):
            raise ValueError("below, at_least and unknown need different codes")
        if isinstance(self.unknown, Choice) and not self.unknown.missing:
            raise ValueError("an `unknown` answer means no answer: give it `missing: true`")
        if self.below.missing or self.at_least.missing:
            raise ValueError("below and at_least are answers: they cannot be `missing`")
        return self

    @property
    def choices(self) -> list[Choice]:
        return [self.below, self.at_least] + ([self.unknown] if isinstance(self.unknown, Choice) else [])

    def as_question(self) -> Question:
        """The derived answer as the warehouse describes it: a single-choice concept."""
        return Question(id=self.id, type=QuestionType.single, label=self.label, choices=self.choices,
                        disclosure=Disclosure(self.disclosure))


class DerivedDefinitions(_Strict):
    derived: list[Derivation]


@dataclass(frozen=True)
class DerivedConcept:
    """One derived answer of one wave: its description, what it reads, and the reference used."""

    question: Question
    reads: tuple[str, ...]
    reference: str  # the source, cited
    reference_year: int | None  # the year of rates used for this wave (None: not set yet, see derived_concepts)
    note: str = ""  # why that year, when the reference table says


@dataclass(frozen=True)
class Derivations:
    definitions: list[Derivation]
    references: dict[str, ReferenceTable]  # by the `reference` path as written
    source: str = ""


def load_derivations(path: Path) -> Derivations:
    """surveys/derived.yaml and the reference tables it names; errors name the file and the field."""
    path = Path(path)
    model, _ = read_yaml_model(path, DerivedDefinitions, DerivationError, "derived answers", "derived: [...]")
    ids = [d.id for d in model.derived]
    if len(ids) != len(set(ids)):
        raise DerivationError(f"{path}: a derived answer id is used twice")
    names = dict.fromkeys(d.compare.reference for d in model.derived)
    references = {name: load_reference_table(path.parent / name) for name in names}
    return Derivations(model.derived, references, str(path))


def load_reference_table(path: Path) -> ReferenceTable:
    table, _ = read_yaml_model(path, ReferenceTable, DerivationError, "reference table", "source and rates")
    return table.model_copy(update={"path": str(path)})


@dataclass(frozen=True)
class Applicable:
    """A derivation a wave's questionnaire allows, with the rate of each answer of its key question."""

    definition: Derivation
    concept: DerivedConcept
    rates: dict[str, float]


def derived_concepts(instrument: Instrument, derivations: Derivations, need_rates: bool = True) -> list[Applicable]:
    """The derived answers a wave's questionnaire allows (it asks what they read), checked against it.
    Without `need_rates` (checking definitions, not deriving), a wave whose rate year is not set yet
    (a wave just started) gets its derived answers described, with no rates."""
    asked = {q.id for q in instrument.questions}
    found = []
    for definition in derivations.definitions:
        comparison = definition.compare
        if definition.id in asked:
            raise DerivationError(f"{derivations.source}: derived answer {definition.id!r} is also a question of "
                                  f"{instrument.source}; choose another id")
        if {comparison.value, comparison.key} <= asked:
            table = derivations.references[comparison.reference]
            if not need_rates and instrument.wave not in table.rate_year_for_wave:
                concept = DerivedConcept(definition.as_question(), (comparison.value, comparison.key), table.cited(), None)
                found.append(Applicable(definition, concept, {}))
                continue
            chosen = table.year_for(instrument.wave)
            rates = _rates_for(definition, instrument, table, chosen.year, derivations.source)
            concept = DerivedConcept(definition.as_question(), (comparison.value, comparison.key), table.cited(),
                                     chosen.year, chosen.caveat.strip())
            found.append(Applicable(definition, concept, rates))
    return found


def derive(answers: pd.DataFrame, instrument: Instrument, derivations: Derivations) -> list[tuple[DerivedConcept, pd.Series]]:
    """Each derived answer of the wave, one code (or None) per row of `answers`, worked out from the
    answers as given (before rounding and generalisation)."""
    results = []
    for applicable in derived_concepts(instrument, derivations):
        definition, concept = applicable.definition, applicable.concept
        value = numbers(_column(answers, definition.compare.value))
        key = _column(answers, definition.compare.key)
        rate = pd.Series([applicable.rates.get(code) if isinstance(code, str) else None for code in key],
                         index=answers.index, dtype=float)
        unknown = None if definition.unknown == NO_ANSWER else definition.unknown.code
        codes = [(definition.below.code if v < r else definition.at_least.code) if known else unknown
                 for v, r, known in zip(value, rate, value.notna() & rate.notna())]
        results.append((concept, pd.Series(codes, index=answers.index, dtype=object)))
    return results


def _column(answers: pd.DataFrame, concept: str) -> pd.Series:
    """An export's answers to a question, or no answers when the export has no column for it."""
    if concept in answers:
        return answers[concept]
    return pd.Series([None] * len(answers), index=answers.index, dtype=object)


def _rates_for(definition: Derivation, instrument: Instrument, table: ReferenceTable, year: int,
               source: str) -> dict[str, float]:
    """The rate of every answer of the key question ("no answer" codes have none)."""
    comparison = definition.compare
    where = f"{source}: derived answer {definition.id}"
    value, key = instrument.question(comparison.value), instrument.question(comparison.key)
    if value.type is not QuestionType.numeric:
        raise DerivationError(f"{where}: compare.value {comparison.value!r} is not a numeric question in {instrument.source}")
    if key.type not in (QuestionType.single, QuestionType.likert):
        raise DerivationError(f"{where}: compare.key {comparison.key!r} is not a single-choice question in {instrument.source}")
    answerable = [c.code for c in instrument.choices_of(key) if not c.missing]
    if gaps := [c for c in instrument.choices_of(key) if not c.missing and c.code not in table.rates[year]]:
        # each code with its answer as respondents saw it: the rates are published by area name
        named = ", ".join(f"{c.code} ({c.label.en})" for c in gaps)
        raise DerivationError(f"{table.path}: the {year} rates (used for wave {instrument.wave}) have no rate for "
                              f"{comparison.key} answer(s) {named}; add them, or {definition.id} would "
                              "leave those respondents out")
    return {code: table.rates[year][code] for code in answerable}


# --- free-text scrubbing ----------------------------------------------------------------------

# Emails spelled out to get past filters ("maria dot lee at gmail dot com", "maria(at)gmail(dot)com"):
# "at" and "dot" in brackets or as words. A bare " at " also opens ordinary phrases ("I applied at
# indeed.com"), so after one the address needs a dot before it or a spelled-out dot after it, a
# common top-level domain, and no article ("I worked at a dot com").
_AT_SIGN = r"(?:@|\s*[(\[{<]\s*at\s*[)\]}>]\s*)"
_SPELLED_DOT = r"(?:\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)"
_DOT = rf"(?:\.|{_SPELLED_DOT})"
# (possessive ++: a word is never given back to a separator, which starts with no word character;
# tried at every word of every answer, this halves the time)
_LOCAL, _DOTTED_LOCAL = rf"\b[\w+-]++(?:{_DOT}[\w+-]++)*", rf"\b[\w+-]++(?:{_DOT}[\w+-]++)+"
_DOMAIN = rf"[\w-]++(?:{_DOT}[\w-]++)*"
_WORD_AT = r"\s+at\s+(?!(?:a|an|the|my|our|your|his|her|their|this|that)\s)"
_TOP_LEVEL = r"(?:com|ca|org|net|edu|gov|info|biz|io|co|me|us|uk|fr|in|pk|ng)\b"
SPELLED_EMAIL = (rf"{_LOCAL}{_AT_SIGN}{_DOMAIN}{_DOT}[a-z]{{2,24}}\b"
                 rf"|{_DOTTED_LOCAL}{_WORD_AT}{_DOMAIN}{_DOT}{_TOP_LEVEL}"
                 rf"|{_LOCAL}{_WORD_AT}{_DOMAIN}{_SPELLED_DOT}{_TOP_LEVEL}")
# IP addresses: four numbers up to 255 joined by dots, not inside a longer dotted number (v1.2.3.4);
# IPv6 in full (8 groups) or shortened with "::", with a digit (times such as 10:30:45 have no "::").
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?!\w)"
_HEX = r"[0-9a-f]{1,4}"
IPV6 = (rf"(?<!\w)(?<![0-9a-f]:)(?=[\w:]*\d)"
        rf"(?:{_HEX}(?::{_HEX}){{7}}|{_HEX}(?::{_HEX}){{0,6}}::(?:{_HEX}(?::{_HEX}){{0,6}})?)(?!:?\w)")
# GPS coordinates: a latitude (up to 90) and a longitude (up to 180), each with at least 3 decimals
# (a decimal comma: 4, since "1,500, 2,300" is two thousands), side by side; optional degree signs
# and N/S, E/W. One number alone, or a pair with fewer decimals (21.50, 37.5), is left alone.
_DECIMALS = r"(?:\.\d{3,}|,\d{4,})"
COORDINATES = (rf"(?<![\d.,])[-+−]?(?:90|[1-8]?\d){_DECIMALS}(?:\s?°)?(?:\s?[NS]\b)?(?:\s*[,;]\s*|\s+)"
               rf"[-+−]?(?:180|1[0-7]\d|[1-9]?\d){_DECIMALS}(?:\s?°)?(?:\s?[EW]\b)?(?!\.?\d)")
EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
# A URL with its scheme or www, or a bare web address ("mypeerstory.wordpress.com", "linkedin.com/in/
# jane-doe"): people leave the scheme out, and a personal page names its owner. A bare one needs a
# top-level domain people use for their own pages, right after a dot, so that a word stuck to the
# next sentence ("the agency.Then") or a file name ("notes.txt") is no address.
_WEB_TOP_LEVEL = r"(?:com|ca|org|net|info|biz|io|me|ly|app|blog|site|online|social|tv|gg)"
_BARE_URL = rf"(?<![\w@./-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+{_WEB_TOP_LEVEL}\b(?![@-])(?:/\S*)?"
URL = rf"\b(?:https?://|www\.)\S+|{_BARE_URL}"
# A social media handle (@mariag_peer): an @ not inside a word (emails are gone by now), then
# letters, digits, _ and inner dots, at least one letter ("@ 5pm" and "@5" are not handles).
HANDLE = r"(?<![\w@])@(?=[\w.]*[^\W\d_])\w(?:[\w.]*\w)?"
# Patterns up to HANDLE are found in any text; the others need a digit (`Scrubber.scrub` skips them
# for text without one). Those up to COORDINATES come before phone numbers: libphonenumber would
# take an IP address (10.100.200.250) or part of a coordinate for one.
PATTERNS: list[tuple[str, str]] = [
    ("EMAIL", EMAIL),
    ("EMAIL", SPELLED_EMAIL),  # before HANDLE: "maria@gmail dot com" is no handle
    ("URL", URL),
    ("HANDLE", HANDLE),
    ("IP_ADDRESS", IPV4),
    ("IP_ADDRESS", IPV6),
    ("COORDINATES", COORDINATES),
    # Phone numbers are first found with Google's libphonenumber (`phonenumbers`, region CA); this
    # lenient pattern then catches what it does not accept: an optional +1, an area code with or
    # without brackets, any separators, an optional extension, or a 7-digit local number.
    # (Lenient on purpose: a mistyped number identifies as well as a valid one.)
    ("PHONE", r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)|\b\d{3})[\s.-]?\d{3}[\s.-]?\d{4}\b"
              r"(?:\s*(?:x|ext\.?|poste)\s*\d{1,5})?|\b\d{3}[.-]\d{4}\b"),
    ("SIN", r"\b\d{3}[\s-]\d{3}[\s-]\d{3}\b"),
    ("POSTAL_CODE", r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ -]?\d[ABCEGHJ-NPRSTV-Z]\d\b"),
    # A street address: a civic number, one to three capitalised words ending in a street type,
    # then an optional unit. Street types come from `street_suffixes` below.
    ("ADDRESS", r"\b\d{1,6}\s+(?:[A-Z][\w'-]*\s+){0,2}[A-Z][\w'-]*\s+(?:{suffixes})\b\.?"
                r"(?:\s+(?:Suite|Unit|Apt\.?)\s*\w+)?"),
]
UNNUMBERED = 4  # the emails, URL, HANDLE: found without a digit
BEFORE_PHONES = 7  # those and IP addresses, coordinates: found before phone numbers
# Named organizations and places that no list knows: capitalised words ending in a word that names
# an organization ("Maple Grove Hospital", "Northside Peer Collective"), or a place pattern
# ("Town of Cobalt", "Attawapiskat First Nation"). Case matters here: capitals mark a name.
ORGANIZATION_WORDS = (
    "Hospital", "Hospitals", "Health Centre", "Health Center", "Health Sciences", "Healthcare", "Health Care",
    "Medical Centre", "Clinic", "Centre", "Center", "Services", "Association", "Network", "Society",
    "Collective", "Agency", "Foundation", "Shelter", "Mission", "Alliance", "Coalition", "Institute",
    "Partners", "Council", "Corporation", "Inc", "Ltd", "Hôpital", "Clinique",
)
CAPITALISED = r"[A-ZÀ-Ý][\w'’.&-]*"
ORGANIZATION_PATTERN = (
    rf"\b(?:{CAPITALISED}\s+(?:(?:of|for|de|du|des|and|&)\s+)?){{1,4}}(?:{'|'.join(ORGANIZATION_WORDS)})\b"
)
PLACE_PATTERNS = (
    rf"\b(?:Town|City|Township|Municipality|County|District|Village|Ville|Canton) (?:of |de )?{CAPITALISED}(?:\s{CAPITALISED})?",
    rf"\b{CAPITALISED}(?:\s{CAPITALISED})? (?:First Nation|Reserve|Nation)\b",
)
# People's names: capitalised words are names when a title or a role comes first ("Dr. Patel",
# "my supervisor Kwame"), when a known given name starts them ("Sarah Thompson"), or when a known
# given name stands mid-sentence ("I told Sarah") or opens a sentence ("Aisha told me"). Given names
# and surnames come from the name lists of the `faker` package for the languages most spoken in
# Ontario, plus surveys/deidentification.yaml; words that are also ordinary words (Faker's English
# and French word lists, months, days, identity terms) need a title or a surname to count, and so do
# the given names listed there as `sentence_openers` ("Grant", "Harm") at the start of a sentence.
# A capitalised word right after a name is its surname, whatever else it means ("Tony Brown",
# "Katie Young"), unless listed as `not_surnames` ("I", "She"): see Scrubber._continues.
TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sister", "father", "pastor", "rev", "m", "mme", "mlle"}
ROLES = {
    "manager", "boss", "supervisor", "director", "coordinator", "colleague", "coworker", "co-worker",
    "worker", "nurse", "doctor", "psychiatrist", "counsellor", "counselor", "lead", "ceo", "ed", "named",
    "called", "gestionnaire", "patron", "patronne", "superviseur", "superviseure", "directeur", "directrice",
    "coordonnateur", "coordonnatrice", "collègue", "infirmière", "infirmier", "médecin", "nommé", "nommée",
    "appelé", "appelée",
}
# Phrases introducing the writer's own name ("My name is Priyanka Leakfour"): the capitalised word
# after one is a name even when no list knows it, unless it can be no surname either (I, The, May).
INTRODUCTIONS = ("my name is", "my name's", "i am called", "i'm called", "people call me", "je m'appelle",
                 "mon nom est", "je me nomme", "signed,", "signé,")
# Weaker ones, also said of other things ("call me Anytime", "I'm Canadian and proud"): the word must
# not be an ordinary word or written in capitals (ASAP), and after "I'm" a name comes before "and" or a comma.
LOOSE_INTRODUCTIONS = ("call me", "i'm", "i am")
SELF_DESCRIPTIONS = ("i'm", "i am")
NAME_LOCALES = ("en_US", "en_GB", "en_IE", "fr_CA", "fr_FR", "es_MX", "es_ES", "pt_BR", "it_IT", "en_IN",
                "en_PK", "en_NG", "yo_NG", "tw_GH", "en_KE", "sw", "pl_PL", "nl_NL", "tr_TR", "ro_RO", "hr_HR",
                "de_DE")
# Months and days: a date after a name ("I saw Tony Monday") is not a surname.
CALENDAR_WORDS = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
    "novembre", "décembre", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
}
ORDINARY_WORDS = CALENDAR_WORDS | {
    "will", "hope", "faith", "grace", "joy", "page", "black", "white", "brown", "indigenous", "christian",
    "justice", "peer", "peers", "ontario", "canada", "god", "mercy", "trinity", "charity", "patience",
    "harmony", "destiny", "honor", "honour", "precious", "unique", "king", "sunny", "summer", "winter",
    "autumn", "spring", "dawn", "rose", "iris", "ivy", "lily", "violet", "jasmine", "amber", "crystal",
    "pearl", "ruby", "star", "sky", "rain", "storm", "river", "forest", "north", "south", "east", "west",
    "hospital", "clinic", "centre", "center", "housing", "mental", "health", "support", "staff", "team",
    "canadian", "ontarian", "muslim", "jewish", "catholic", "queer", "trans", "métis", "inuit", "deaf",
    "autistic", "francophone", "anglophone",
}
WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ]+(?:['’-][A-Za-zÀ-ÖØ-öø-ÿ]+)*")
DIGIT = re.compile(r"\d")  # any decimal digit, as the patterns' \d and libphonenumber read them
SENTENCE_END = re.compile(r"[.!?:;\n\"“”«»()]")


def _phrases_before(phrases: Iterable[str]) -> re.Pattern:
    """Text ending in one of `phrases` (and spaces): any spaces between their words, either apostrophe."""
    def written(phrase: str) -> str:
        words = (re.escape(w).replace("'", "['’]") for w in phrase.rstrip(",").split())
        return r"\s+".join(words) + (r"\s*," if phrase.endswith(",") else "")
    return re.compile(r"\b(?:" + "|".join(map(written, phrases)) + r")\s*$", re.IGNORECASE)


INTRODUCED = _phrases_before(INTRODUCTIONS)
LOOSELY_INTRODUCED = _phrases_before(LOOSE_INTRODUCTIONS)
SELF_DESCRIBED = _phrases_before(SELF_DESCRIPTIONS)
# After "I'm <Name>": up to two more capitalised words (a surname), then "and" or a comma.
THEN_AND = re.compile(rf"(?:\s+{CAPITALISED}){{0,2}}(?:\s*,|\s+and\b)")


class Scrubber:
    """Replaces identifying content of free text with typed placeholders ([EMAIL], [NAME], ...)."""

    def __init__(self, organizations: Iterable[str], places: Iterable[str], first_names: Iterable[str],
                 last_names: Iterable[str] = (), ordinary_words: Iterable[str] = (),
                 sentence_openers: Iterable[str] = (), not_surnames: Iterable[str] = (),
                 surname_particles: Iterable[str] = (), own_answers: Mapping[str, str] | None = None):
        self.patterns = compiled_patterns()
        self.own_answers = dict(own_answers or {})  # direct question -> placeholder (see _own_identifiers)
        self.lists = [("ORGANIZATION", _names_regex(organizations)), ("PLACE", _names_regex(places))]
        self.generic = [("ORGANIZATION", re.compile(ORGANIZATION_PATTERN)),
                        *[("PLACE", re.compile(rx)) for rx in PLACE_PATTERNS]]
        self.first_names = {n.lower() for n in first_names}
        self.last_names = {n.lower() for n in last_names}
        self.ordinary = {w.lower() for w in ordinary_words} | ORDINARY_WORDS
        self.openers = {w.lower() for w in sentence_openers}
        self.not_surnames = {w.lower() for w in not_surnames} | CALENDAR_WORDS
        self.particles = {w.lower() for w in surname_particles}

    def scrub(self, text: str, extra: Iterable[str] | Mapping[str, str] = ()) -> tuple[str, int]:
        """`extra`: the row's own values (names, email, answers of own_answers), with their placeholder
        when a mapping."""
        labels = dict(extra) if isinstance(extra, Mapping) else {value: _own_label(value) for value in extra}
        count = 0
        for value in sorted({e for e in labels if len(e) > 2}, key=len, reverse=True):
            text, n = own_value_pattern(value).subn(f"[{labels[value]}]", text)
            count += n
        # these hold digits a phone search would take
        early = self.patterns[:BEFORE_PHONES] if DIGIT.search(text) else self.patterns[:UNNUMBERED]
        for label, pattern in early:
            text, n = pattern.subn(f"[{label}]", text)
            count += n
        text, n = _phones(text)
        count += n
        listed = [item for item in self.lists if item[1] is not None]
        numbered = self.patterns[BEFORE_PHONES:] if DIGIT.search(text) else []  # each needs a digit
        for label, pattern in numbered + listed + self.generic:
            text, n = pattern.subn(f"[{label}]", text)
            count += n
        text, n = self._names(text)
        # "[PLACE] [PLACE]" (a listed town inside a longer place name) reads as one finding
        return re.sub(r"(\[([A-Z_]+)\])(?:\s+\[\2\])+", r"\1", text), count + n

    def _names(self, text: str) -> tuple[str, int]:
        tokens = list(WORD.finditer(text))
        named = [self._is_name(text, tokens, i) for i in range(len(tokens))]
        for i in range(1, len(tokens)):  # a surname right after a name, with its particles (de la Cruz)
            if named[i - 1] and not named[i] and (end := self._continues(text, tokens, i)):
                named[i:end] = [True] * (end - i)
        pieces, last, count, i = [], 0, 0, 0
        while i < len(tokens):
            if not named[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(tokens) and named[j + 1] and text[tokens[j].end():tokens[j + 1].start()] in (" ", "-"):
                j += 1
            word = tokens[j].group()
            possessive = word[-2:] if word[-2:] in ("'s", "’s") else ""
            pieces.append(text[last:tokens[i].start()] + "[NAME]" + possessive)
            last, count, i = tokens[j].end(), count + 1, j + 1
        return "".join(pieces) + text[last:], count

    def _is_name(self, text: str, tokens: list[re.Match], i: int) -> bool:
        before = tokens[i - 1].group().lower() if i else ""
        capital = _capitalised(tokens[i].group())
        if not capital and before not in ROLES:
            # only a role ("my supervisor sarah") or the writer's own introduction ("my name is jane")
            # makes a lower-case word a name: many type their name in lower case
            return self._introduced_in_lower_case(text, tokens[i])
        if self._introduced(text, tokens[i]):
            return True
        word = self._plain(tokens[i].group())
        gap = text[tokens[i - 1].end():tokens[i].start()] if i else ""
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        given = self._given(word)
        known = given and word not in self.ordinary
        if known and capital and ("-" in word or re.search(r"['’]s$", tokens[i].group())):
            return True  # "Sarah's team", "Marie-Ève": names even at the start of a sentence
        if before in TITLES and gap.strip() in ("", ".") and capital:
            return True
        if before in ROLES and gap.strip() in ("", ",") and (known or (capital and word not in self.ordinary
                                                                         and (word in self.last_names or word in self.first_names))):
            return True
        if given and capital and nxt is not None and text[tokens[i].end():nxt.start()] == " " \
                and _capitalised(nxt.group()) and self._plain(nxt.group()) in self.last_names:
            return True
        # opening a sentence, a given name is a name unless it is also a word that often opens one
        sentence_start = i == 0 or bool(SENTENCE_END.search(gap))
        return known and capital and not (sentence_start and word in self.openers)

    def _introduced(self, text: str, token: re.Match) -> bool:
        """Whether a capitalised word is a name because a phrase introduces it ("My name is ...")."""
        word, plain = token.group(), self._plain(token.group())
        if not _capitalised(word) or plain in self.not_surnames:
            return False
        before = text[max(0, token.start() - 24):token.start()]  # the longest phrase, and some spaces
        if INTRODUCED.search(before):
            return True
        if not LOOSELY_INTRODUCED.search(before) or plain in self.ordinary or word.isupper():
            return False
        return not SELF_DESCRIBED.search(before) or THEN_AND.match(text, token.end()) is not None

    def _introduced_in_lower_case(self, text: str, token: re.Match) -> bool:
        """Whether a lower-case word follows one of the INTRODUCTIONS ("my name is jane", "signed,
        tess"): a name unless it is an ordinary word ("my name is not", "my name is withheld" is one
        word too many to matter)."""
        plain = self._plain(token.group())
        if plain in self.not_surnames or plain in self.ordinary:
            return False
        return INTRODUCED.search(text[max(0, token.start() - 24):token.start()]) is not None

    def _continues(self, text: str, tokens: list[re.Match], i: int) -> int:
        """Where the surname that token `i` starts after a name ends (0 if it starts none): a capitalised
        word after a single space, even an ordinary word ("Tony Brown", "Katie Young"), since one
        right after a name almost always is its surname; with lower-case particles before it ("Maria
        de la Cruz"). Never a word listed as not a surname: the pronoun I, a sentence left without
        its full stop ("I asked Sarah She said no"), a day or a month ("I saw Tony Monday")."""
        j = i
        while j < len(tokens) and text[tokens[j - 1].end():tokens[j].start()] == " ":
            word = tokens[j].group()
            if _capitalised(word):
                return j + 1 if self._plain(word) not in self.not_surnames else 0
            if not _capitalised(tokens[i - 1].group()) and self._plain(word) in self.last_names:
                return j + 1  # a name typed in lower case, and its known surname ("sarah thompson")
            if word.lower() not in self.particles:
                return 0
            j += 1
        return 0

    def _given(self, word: str) -> bool:
        """A known given name, or a compound of them (Jean-François, Marie-Ève)."""
        return word in self.first_names or ("-" in word and word.split("-")[0] in self.first_names)

    @staticmethod
    def _plain(word: str) -> str:
        return re.sub(r"['’]s$", "", word).lower()


@lru_cache(maxsize=1)
def compiled_patterns() -> list[tuple[str, re.Pattern]]:
    """PATTERNS compiled, as the scrubber and the disclosure audit (precise_findings) use them."""
    # Street addresses need their capitals (to tell "12 Main Street" from "12 more days").
    suffixes = "|".join(re.escape(s) for s in street_suffixes())
    return [(label, re.compile(rx.replace("{suffixes}", suffixes), 0 if label == "ADDRESS" else re.IGNORECASE))
            for label, rx in PATTERNS]


# --- the precise detectors: what the disclosure audit looks for in every output -------------------

# The scrubber's detectors precise enough to run over any text the pipeline writes (report prose,
# data files, HTML, run records), not only over open answers, with the kind of identifier each
# finds. Left out: names and named places and organizations (lists of words: ordinary words of any
# report), coordinates (any two numbers with three decimals: every data file has thousands), and
# libphonenumber's lenient search and 7-digit local numbers (any run of digits: hashes, decimals).
PRECISE = {"EMAIL": "email", "URL": "url", "HANDLE": "handle", "IP_ADDRESS": "ip_address", "PHONE": "phone",
           "SIN": "social_insurance_number", "POSTAL_CODE": "postal_code", "ADDRESS": "street_address"}
# Of those, the ones made of digits (and a few letters) that occur inside other numbers and codes:
# a finding must stand alone, not be part of a longer token (a hash, a hex colour #b8b8b8, an id
# Q-1546955326) or of a number (0.4720982125, 1,234,567,890, a time 10:30:45).
NUMBERED = {"IP_ADDRESS", "PHONE", "SIN", "POSTAL_CODE"}
_JOINS = ".,-/:"  # characters that join a number to what touches it (then a digit or a letter)
# What a text must hold for some patterns to find anything in it: tested first, a quick search of
# the whole text spares the pattern's slower one (the audit reads megabytes of data files).
_SIGNS = {
    EMAIL: re.compile("@"),
    SPELLED_EMAIL: re.compile(r"@|[(\[{<]\s*at\s*[)\]}>]|\sat\s", re.IGNORECASE),
    URL: re.compile(rf"https?://|www\.|\w\.{_WEB_TOP_LEVEL}\b", re.IGNORECASE),
    HANDLE: re.compile("@"),
    IPV6: re.compile(r"::|[0-9a-f]:[0-9a-f]{1,4}:[0-9a-f]", re.IGNORECASE),
}


def precise_findings(text: str) -> Iterator[tuple[str, str]]:
    """The kind (PRECISE) and text of everything the precise detectors find in `text`, with the
    same compiled patterns the scrubber replaces, in the same order: what one finds, the next ones
    do not look at again (an email is no handle as well). Placeholders ([EMAIL], [PHONE]) are no
    finding. A phone number must also be a valid number (libphonenumber, Canadian rules): a lenient
    search catches mistyped numbers in open answers, but in data files the same shape is any 10 digits."""
    import phonenumbers

    taken: list[tuple[int, int]] = []  # the spans the patterns before found, in order, none overlapping
    digits = DIGIT.search(text) is not None
    for (label, pattern), (_, source) in zip(compiled_patterns(), PATTERNS):
        if label not in PRECISE or (label in NUMBERED and not digits):
            continue
        if source in _SIGNS and not _SIGNS[source].search(text):
            continue
        found = []  # this pattern's (its matches overlap no other)
        for match in pattern.finditer(text):
            if label in NUMBERED and not _standalone(text, match.start(), match.end()):
                continue
            if label == "PHONE" and not _valid_phone(match.group(), phonenumbers):
                continue
            at = bisect.bisect(taken, (match.start(), match.end()))
            if (at and taken[at - 1][1] > match.start()) or (at < len(taken) and taken[at][0] < match.end()):
                continue  # in what an earlier pattern found
            found.append((match.start(), match.end()))
            yield PRECISE[label], match.group()
        taken = sorted(taken + found)  # two sorted runs: merged in linear time


def _standalone(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] touches no token: no letter, digit, _ or # right before or after it,
    nor a joining character (_JOINS) with one before it, or with a digit after it."""
    before, after = text[start - 1:start], text[end:end + 1]
    if before and (before.isalnum() or before in "_#" or
                   (before in _JOINS and start > 1 and text[start - 2].isalnum())):
        return False
    return not (after and (after.isalnum() or after == "_" or
                           (after in _JOINS and text[end + 1:end + 2].isdigit())))


def _valid_phone(found: str, phonenumbers) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(found, "CA"))
    except phonenumbers.NumberParseException:
        return False


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


def _phones(text: str) -> tuple[str, int]:
    """Every phone number libphonenumber finds (Canadian rules, or international with a +)."""
    import phonenumbers

    if not DIGIT.search(text):  # libphonenumber finds no number without a digit
        return text, 0
    spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, "CA", leniency=phonenumbers.Leniency.POSSIBLE)]
    for start, end in reversed(spans):
        text = text[:start] + "[PHONE]" + text[end:]
    # an extension libphonenumber leaves behind (French "poste", or "x" after a space)
    text = re.sub(r"\[PHONE\]\s*(?:x|ext\.?|extension|poste|p\.)\s*\d{1,6}\b", "[PHONE]", text, flags=re.IGNORECASE)
    return text, len(spans)


def _names_regex(names: Iterable[str]) -> re.Pattern | None:
    names = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)


def scrub_lists_sha256(config_path: Path) -> str:
    """What the scrubber reads from surveys/deidentification.yaml (its lists, not its comments), as one hash."""
    try:
        stat = Path(config_path).stat()
    except OSError:
        stat = None  # read_yaml says it cannot read the file
    return _scrub_lists_sha256(Path(config_path), stat and (stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=4)
def _scrub_lists_sha256(config_path: Path, version: tuple[int, int] | None) -> str:
    # cached by the file's modification time and size: an edit between two runs of one process counts
    config = read_yaml(config_path) or {}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode("utf-8")).hexdigest()


# The stored texts that were scrubbed at load: (table, text column, column counting its placeholders).
SCRUBBED_TEXTS = (("open_text", "text", "placeholders"), ("quarantine_issues", "value", None))


def rescrub_stored(con: "duckdb.DuckDBPyConnection", scrubber: Scrubber) -> int:
    """Scrub the stored open answers (and failing values) again, with lists that changed since they
    were stored: each distinct text once. Scrubbing a scrubbed text changes only what the new lists
    find. Returns how many stored texts changed."""
    changed = 0
    for table, column, placeholders in SCRUBBED_TEXTS:
        texts = [t for (t,) in con.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()]
        rows = [(text, *scrubbed) for text in texts if (scrubbed := scrubber.scrub(text))[0] != text]
        if not rows:
            continue
        con.register("rescrubbed", pd.DataFrame(rows, columns=["old", "new", "found"]))
        counted = f", {placeholders} = {table}.{placeholders} + r.found" if placeholders else ""
        changed += con.execute(f"UPDATE {table} SET {column} = r.new{counted} FROM rescrubbed r "
                               f"WHERE {table}.{column} = r.old").fetchall()[0][0]
        con.unregister("rescrubbed")
    return changed


def load_scrubber(config_path: Path | None) -> Scrubber:
    """The scrubber of surveys/deidentification.yaml; None: the built-in patterns and name lists only."""
    config = {}
    if config_path is not None:
        config = read_yaml(config_path) or {}
    first, last = _faker_names()
    return Scrubber(
        [*config.get("organizations", []), *config.get("hospitals", [])],
        config.get("places", []),
        [*first, *(config.get("extra_first_names") or [])],
        [*last, *(config.get("extra_last_names") or [])],
        _faker_ordinary_words(),
        sentence_openers=config.get("sentence_openers") or [],
        not_surnames=config.get("not_surnames") or [],
        surname_particles=config.get("surname_particles") or [],
        own_answers=config.get("own_answers") or {},
    )


def scrubber_beside(instrument: Instrument) -> Scrubber:
    """The scrubber of the deidentification.yaml in the instrument's surveys folder (surveys/<wave>/
    instrument.yaml), or the built-in one when there is none (an instrument built in memory)."""
    config = Path(instrument.source).parent.parent / "deidentification.yaml" if instrument.source else None
    return load_scrubber(config if config is not None and config.exists() else None)


@lru_cache(maxsize=1)
def street_suffixes() -> list[str]:
    """Street types, English and French, longest first (Faker's curated list plus Canadian ones)."""
    from faker.providers.address.en_US import Provider as English

    canadian = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Drive", "Dr",
                "Crescent", "Cres", "Court", "Crt", "Line", "Concession", "Sideroad", "Highway", "Hwy",
                "Rue", "Chemin", "Montée", "Rang"]
    suffixes = {s.title() for s in getattr(English, "street_suffixes", ())} | set(canadian)
    return sorted(suffixes, key=len, reverse=True)


@lru_cache(maxsize=1)
def _faker_names() -> tuple[frozenset[str], frozenset[str]]:
    """Given names and surnames in the Latin alphabet from Faker's curated person lists."""
    import importlib

    latin = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿ'’-]{2,}$")
    first: set[str] = set()
    last: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        first |= {n for n in getattr(provider, "first_names", ()) if latin.match(n)}
        last |= {n for n in getattr(provider, "last_names", ()) if latin.match(n)}
    return frozenset(first), frozenset(last)


@lru_cache(maxsize=1)
def _faker_ordinary_words() -> frozenset[str]:
    from faker.providers.lorem.en_US import Provider as English
    from faker.providers.lorem.fr_FR import Provider as French

    return frozenset(w.lower() for w in (*English.word_list, *French.word_list))
