"""Indicators: compile `surveys/indicators.yaml` to DuckDB SQL and compute the estimates.

1. `respondent_wide`: one row per respondent, one column per concept (codes as text, numbers as
   DOUBLE, multiple choice as a list), answers that mean "no answer" set to NULL, plus each
   scored item's points and the scores. Derived answers (surveys/derived.yaml, e.g. below the
   living wage) were worked out at de-identification and are concepts like any question.
2. `respondent_groups`: one row per respondent and group of each breakdown, compiled from the
   catalogue's `breakdowns` (one group per answer, or groups defined by rules).
3. One aggregate query for all indicators (each indicator's population is a part of it): for every
   indicator and wave, overall and for every group, n (the population who answered) and the count
   who meet the condition, or exact sums of the value for a mean; and per breakdown the same over
   everyone in one of its groups (for the gaps).
4. In Python: Wilson / t intervals and disclosure control (`indicator_estimates`); each group
   against everyone else in its breakdown (`indicator_gaps`); each wave against the previous one,
   as far as the questions compare (`indicator_changes`); and the catalogue itself
   (`indicator_catalogue`, `indicator_breakdowns`) for the methods page.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Union

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.anonymity import PRIVACY_FILE, PrivacyRules, load_privacy_rules
from pipeline.deidentify import DerivedConcept, Derivations, derived_concepts, derived_path, load_derivations
from pipeline.derivation import linked_families
from pipeline.disclosure import DisclosureRules, rules_sha256, suppress, suppress_changes, suppress_gaps
from pipeline.instrument import (Instrument, available_waves, code_order, instrument_path, load_instrument, plain_text,
                                 read_yaml_model)
from pipeline.wave_rules import PopulationChange

Z_95 = 1.959963984540054
NOISE = "not distinguishable from noise"
NOT_COMPARABLE = "not comparable"
GAP_UP = "higher than everyone else by more than chance variation would explain"
GAP_DOWN = "lower than everyone else by more than chance variation would explain"
CHANGE_UP = "an increase that is larger than chance variation would explain"
CHANGE_DOWN = "a decrease that is larger than chance variation would explain"


class IndicatorError(ValueError):
    """A definition that cannot be compiled; the message names the indicator and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(Strict):
    question: str
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None
    only: list[str] | None = None
    below: float | str | None = None
    at_least: float | str | None = None

    @field_validator("in_", "not_in", "only", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value


class AnyRule(Strict):
    any: list["Expr"]


class AllRule(Strict):
    all: list["Expr"]


Expr = Union[Rule, AnyRule, AllRule]
AnyRule.model_rebuild()
AllRule.model_rebuild()


class Score(Strict):
    title: str
    definition: str
    items: list[str]
    item_max: float
    min_items: int
    # Points by answer code, for items whose answers carry no points in the questionnaire.
    points: dict[str, float] | None = None

    @field_validator("points", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class Group(Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    label: str
    rule: Expr

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> str:
        return str(value)


class Combined(Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    label: str


class Breakdown(Strict):
    title: str
    definition: str
    question: str | None = None  # one group per (stored) answer to this question ...
    labels: dict[str, str] | None = None  # ... labelled from the questionnaire unless given here
    # ... for a multiple-choice question: one group per answer for those who gave one answer, and
    # this group for those who gave two or more (or whose answers were stored combined as this code)
    more_than_one: Combined | None = None
    groups: list[Group] | None = None  # ... or groups defined by rules

    @field_validator("labels", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _one_way_of_grouping(self) -> "Breakdown":
        if (self.question is None) == (self.groups is None):
            raise ValueError("give either `question` (one group per answer) or `groups`, not both")
        if (self.labels is not None or self.more_than_one is not None) and self.question is None:
            raise ValueError("`labels` and `more_than_one` go with `question`; rule groups carry their own labels")
        codes = [g.code for g in self.groups or []]
        if len(codes) != len(set(codes)) or "all" in codes:
            raise ValueError("group codes must be distinct and not 'all'")
        return self


Comparable = Literal["comparable", "comparable_with_caveat", "not_comparable"]


class Comparability(Strict):
    waves: tuple[int, int]
    status: Comparable
    note: str = ""

    @model_validator(mode="after")
    def _explained(self) -> "Comparability":
        if self.waves[0] >= self.waves[1]:
            raise ValueError("waves: give the earlier wave first")
        if self.status != "comparable" and not self.note.strip():
            raise ValueError(f"a {self.status} statement needs a note saying why")
        return self


class Indicator(Strict):
    id: str = Field(pattern=r"^[A-Z]+-\d{2}$")
    title: str
    domain: Literal["precarity", "disrespect", "resources", "drift", "wellbeing"]
    kind: Literal["proportion", "mean"]
    definition: str
    population: Expr
    population_text: str
    questions: list[str]
    condition: Expr | None = None
    value: str | None = None
    unit: str = "%"
    breakdowns: list[str] | None = None
    min_n: int | None = None
    caveats: str = ""
    comparability: list[Comparability] = []
    partition: str | None = None


class Catalogue(Strict):
    default_breakdowns: list[str]
    default_min_n: int
    breakdowns: dict[str, Breakdown]
    scores: dict[str, Score]
    indicators: list[Indicator]
    sha256: str = ""
    path: str = ""
    # Filled in by load_checked_catalogue, not written in indicators.yaml: by wave, the analyst's word
    # on a change of who is in scope since the wave before (surveys/<wave>/rules.yaml, population_change).
    population_changes: dict[int, PopulationChange] = {}

    def breakdowns_of(self, indicator: Indicator) -> list[str]:
        return indicator.breakdowns if indicator.breakdowns is not None else self.default_breakdowns

    def min_n_of(self, indicator: Indicator) -> int:
        return indicator.min_n or self.default_min_n


def load_checked_catalogue(path: Path, surveys_dir: Path) -> Catalogue:
    """The catalogue, with every concept it names checked against the instruments."""
    catalogue = load_catalogue(path)
    try:
        check_definitions(catalogue, instrument_kinds(surveys_dir))
    except IndicatorError as exc:
        raise IndicatorError(f"{path}: {exc}") from None
    return with_population_changes(catalogue, surveys_dir)


def with_population_changes(catalogue: Catalogue, surveys_dir: Path) -> Catalogue:
    """The catalogue with every wave's `population_change:` statement (its rules.yaml)."""
    from pipeline.population import population_statements

    instruments = {w: load_instrument(instrument_path(surveys_dir, w)) for w in available_waves(surveys_dir)}
    return catalogue.model_copy(update={"population_changes": population_statements(instruments)})


def population_sha256(catalogue: Catalogue) -> str:
    """What the population statements say (kept with the figures: changing one recomputes them)."""
    # the French note changes no figure: leave it out, so translating one recomputes nothing
    said = {w: p.model_dump(exclude={"note_fr"}) for w, p in sorted(catalogue.population_changes.items())}
    return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


def load_catalogue(path: Path) -> Catalogue:
    """surveys/indicators.yaml, validated; errors name the file and the field (as for the instruments)."""
    catalogue, raw = read_yaml_model(path, Catalogue, IndicatorError, "indicator definitions",
                                     "default_breakdowns, default_min_n, breakdowns, scores and indicators")
    if catalogue.population_changes:
        raise IndicatorError(f"{path}: population_changes is not written here: a change of who is in scope is "
                             "stated in the wave's rules.yaml (population_change)")
    try:
        _check_structure(catalogue)
    except IndicatorError as exc:
        raise IndicatorError(f"{path}: {exc}") from None
    return catalogue.model_copy(update={"sha256": hashlib.sha256(raw).hexdigest(), "path": str(path)})


def _check_score(name: str, score: Score) -> None:
    """A question listed twice would count twice in the average; a minimum above the number of
    questions would leave everyone without a score; points over a zero maximum cannot be scaled."""
    if twice := sorted({item for item in score.items if score.items.count(item) > 1}):
        raise IndicatorError(f"scores.{name}.items: {twice[0]!r} is listed twice (each question counts once)")
    if not 1 <= score.min_items <= len(score.items):
        raise IndicatorError(f"scores.{name}.min_items: {score.min_items} is not between 1 and the number of "
                             f"items ({len(score.items)})")
    if score.item_max <= 0:
        raise IndicatorError(f"scores.{name}.item_max: {score.item_max:g} must be above 0 (the most points an "
                             "item gives)")


def _check_structure(catalogue: Catalogue) -> None:
    """What the schema cannot say: references between definitions."""
    ids = [i.id for i in catalogue.indicators]
    if len(ids) != len(set(ids)):
        raise IndicatorError("an indicator id is used twice")
    if unknown := [b for b in catalogue.default_breakdowns if b not in catalogue.breakdowns]:
        raise IndicatorError(f"default_breakdowns: {unknown[0]!r} is not defined under breakdowns")
    for name, score in catalogue.scores.items():
        _check_score(name, score)
    for indicator in catalogue.indicators:
        if indicator.kind == "proportion" and indicator.condition is None:
            raise IndicatorError(f"{indicator.id} is a proportion but has no condition")
        if indicator.kind == "mean" and indicator.value is None:
            raise IndicatorError(f"{indicator.id} is a mean but names no value")
        if unknown := [b for b in catalogue.breakdowns_of(indicator) if b not in catalogue.breakdowns]:
            raise IndicatorError(f"{indicator.id}: breakdown {unknown[0]!r} is not defined under breakdowns")
        pairs = [c.waves for c in indicator.comparability]
        if len(pairs) != len(set(pairs)):
            raise IndicatorError(f"{indicator.id}: comparability states a pair of waves twice")
    partitions: dict[str, list[Indicator]] = {}
    for indicator in catalogue.indicators:
        if indicator.partition:
            partitions.setdefault(indicator.partition, []).append(indicator)
    for name, members in partitions.items():
        first = members[0]
        same = all(
            (m.kind, m.population, m.questions, catalogue.breakdowns_of(m)) ==
            (first.kind, first.population, first.questions, catalogue.breakdowns_of(first))
            for m in members
        )
        if len(members) < 2 or first.kind != "proportion" or not same:
            raise IndicatorError(
                f"partition {name!r}: its indicators ({', '.join(m.id for m in members)}) must be two or more "
                "proportions with the same population, questions and breakdowns"
            )


# --- the wide respondent table and the groups ------------------------------------------------


def concept_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(
        "SELECT concept, any_value(type) FROM concepts WHERE stored AND type <> 'text' GROUP BY concept ORDER BY concept"
    ).fetchall()
    return dict(rows)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    """A text as an SQL string literal (quotes doubled), for values written into a statement."""
    return "'" + value.replace("'", "''") + "'"


def build_wide(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> dict[str, str]:
    """(Re)build respondent_wide; return the type of each of its columns (for compiling rules).

    Answers become columns a few concepts of one kind at a time: one aggregate per respondent with
    one filtered aggregate per concept of the batch, over the answers to those concepts only (the
    answers are stored concept by concept, so the scan skips the rest). Over every answer at once
    this was far dearer, and as a PIVOT (one value per respondent and concept first, then the
    columns) it took half as much CPU again: two hash tables, the larger with a row per answer.
    Each batch is its own statement, stored with one row per respondent in the order of
    `wide_keys` (respondent keys are unique, so the order is total), and the batches are then put
    side by side by position: no query holds more than one batch's hash table, and the wide rows
    are never sorted. As one query joining every batch to the respondents, it needed 60% more
    memory and could not finish within 400 MB at 200,000 responses."""
    types = concept_types(con)
    scored = {c for (c,) in con.execute("SELECT DISTINCT concept FROM choices WHERE score IS NOT NULL").fetchall()}
    by_value: dict[str, list[str]] = {}  # the value of one answer (of each kind) -> its concepts
    for concept, kind in types.items():
        by_value.setdefault(_ANSWER_VALUE.get(kind, _CHOSEN), []).append(concept)
    if scored_here := [c for c in types if c in scored]:
        by_value[_SCORE] = scored_here
    batches = [(value, concepts[start:start + _WIDE_BATCH]) for value, concepts in by_value.items()
               for start in range(0, len(concepts), _WIDE_BATCH)]
    con.execute("CREATE OR REPLACE TEMP TABLE wide_keys AS SELECT respondent_key, wave FROM respondents "
                "ORDER BY wave, respondent_key")
    source = {}
    for k, (value, concepts) in enumerate(batches):
        listed = ", ".join(sql_literal(c) for c in concepts)
        values = ", ".join(f"{value.format(concept=sql_literal(c))} AS {_q(c)}" for c in concepts)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE wide_part{k} AS "
            f"SELECT {', '.join('p.' + _q(c) for c in concepts)} FROM wide_keys k LEFT JOIN ("
            f"SELECT respondent_key, {values} FROM ({_ANSWERED}) WHERE concept IN ({listed}) GROUP BY respondent_key"
            f") p USING (respondent_key) ORDER BY k.wave, k.respondent_key")
        suffix = "__score" if value == _SCORE else ""
        source.update({concept + suffix: f"p{k}.{_q(concept)}" for concept in concepts})
    columns = [f"{source[c]} AS {_q(c)}" for concept in types
               for c in ([concept, concept + "__score"] if concept in scored else [concept])]
    score_columns = [_score_sql(name, score, types, scored) for name, score in catalogue.scores.items()]
    con.execute(f"""
        CREATE OR REPLACE TABLE respondent_wide AS
        WITH base AS (
            SELECT k.respondent_key, k.wave{''.join(', ' + c for c in columns)}
            FROM wide_keys k{''.join(f' POSITIONAL JOIN wide_part{k} p{k}' for k in range(len(batches)))}
        )
        SELECT base.*{''.join(', ' + s for s in score_columns)}
        FROM base
    """)
    for table in ["wide_keys"] + [f"wide_part{k}" for k in range(len(batches))]:
        con.execute(f"DROP TABLE {table}")
    kinds = dict(types)
    kinds.update({name: "numeric" for name in catalogue.scores})
    return kinds


# Every answer with what its code means (no answer, points).
_ANSWERED = """SELECT a.respondent_key, a.concept, a.value, ch.missing, ch.score FROM answers a
    LEFT JOIN choices ch ON ch.wave = a.wave AND ch.concept = a.concept AND ch.code = a.value"""
# Concepts per statement: at 200,000 responses within 400 MB, 6 never spill, 12 a little, 24 a lot.
_WIDE_BATCH = 6
# One respondent's value for a {concept}, from its answer rows: answers that mean "no answer" (and
# codes the questionnaire does not know) are left out of choices, not of numbers and dates.
_CHOSEN = "max(value) FILTER (WHERE concept = {concept} AND NOT missing)"
_ANSWER_VALUE = {
    "numeric": "max(TRY_CAST(value AS DOUBLE)) FILTER (WHERE concept = {concept})",
    "date": "max(TRY_CAST(value AS DATE)) FILTER (WHERE concept = {concept})",
    "multiple": "list(value ORDER BY value) FILTER (WHERE concept = {concept} AND NOT missing)",
}
_SCORE = "max(score) FILTER (WHERE concept = {concept})"  # the points of a scored item's answer


def _score_sql(name: str, score: Score, types: dict[str, str], scored: set[str]) -> str:
    items = [points for item in score.items if (points := _item_points(item, score, types, scored))]
    if not items:
        return f"NULL::DOUBLE AS {_q(name)}"
    answered = f"list_filter([{', '.join(items)}], lambda x: x IS NOT NULL)"
    return (
        f"CASE WHEN len({answered}) >= {score.min_items} "
        f"THEN 100.0 * list_avg({answered}) / {score.item_max} END AS {_q(name)}"
    )


def _item_points(item: str, score: Score, types: dict[str, str], scored: set[str]) -> str | None:
    """SQL for one item's points: the questionnaire's, or the score's own `points` by code."""
    if score.points is None:
        return _q(item + "__score") if item in scored else None
    if item not in types:
        return None
    cases = " ".join(f"WHEN {sql_literal(code)} THEN {float(p)!r}" for code, p in score.points.items())
    return f"(CASE {_q(item)} {cases} END)::DOUBLE"


def build_groups(con: duckdb.DuckDBPyConnection, catalogue: Catalogue, kinds: dict[str, str]) -> None:
    """(Re)build respondent_groups: who is in which group of each breakdown. A breakdown whose
    question no loaded wave asked has no groups (the instruments were checked before the run)."""
    parts = []
    for name, breakdown in catalogue.breakdowns.items():
        if breakdown.question is not None:
            if kinds.get(breakdown.question) in _question_kinds(breakdown):
                parts.append(_answer_groups_sql(name, breakdown))
        elif all(c in kinds for g in breakdown.groups for c in _rule_concepts(g.rule)):
            parts += [
                f"SELECT respondent_key, {sql_literal(name)}, {sql_literal(g.code)}, {sql_literal(g.label)} FROM respondent_wide "
                f"WHERE {compile_rule(g.rule, kinds)}"
                for g in breakdown.groups
            ]
    # the columns' types when no breakdown has groups (the key's as respondents has it)
    parts.append("SELECT respondent_key, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR FROM respondents WHERE false")
    con.execute(
        "CREATE OR REPLACE TABLE respondent_groups AS "
        "SELECT * FROM (" + " UNION ALL ".join(parts) + ") AS g(respondent_key, breakdown, group_code, group_label) "
        "ORDER BY breakdown, group_code, respondent_key"
    )
    _check_exclusive_groups(con, catalogue)


def _check_exclusive_groups(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> None:
    """A respondent is in one group of a breakdown at most: each group is compared with everyone else
    in the breakdown, and the suppressed figures are protected as parts of one whole (derivation).
    Groups defined by rules (not by one answer each) can overlap: that is a catalogue error."""
    ruled = [name for name, breakdown in catalogue.breakdowns.items() if breakdown.question is None]
    if not ruled:
        return
    found = con.execute(
        f"""SELECT breakdown, codes, count(*) FROM (
                SELECT breakdown, list(group_code ORDER BY group_code) AS codes FROM respondent_groups
                WHERE breakdown IN ({', '.join('?' for _ in ruled)}) GROUP BY breakdown, respondent_key
                HAVING count(*) > 1)
            GROUP BY breakdown, codes ORDER BY breakdown, codes LIMIT 1""", ruled).fetchall()
    if found:
        name, codes, count = found[0]
        raise IndicatorError(
            f"{catalogue.path}: breakdown {name!r}: {count} respondent(s) are in its groups {', '.join(codes)} at "
            "once; a respondent may be in one group of a breakdown only: make the groups' rules exclude each other")


def _question_kinds(breakdown: Breakdown) -> tuple[str, ...]:
    return ("multiple",) if breakdown.more_than_one is not None else ("single", "likert")


def _answer_groups_sql(name: str, breakdown: Breakdown) -> str:
    column = f"w.{_q(breakdown.question)}"
    code = column
    where = f"{column} IS NOT NULL"
    labels = dict(breakdown.labels or {})
    if breakdown.more_than_one is not None:  # a list of the answers given (no-answer codes left out)
        combined = breakdown.more_than_one
        code = f"CASE WHEN len({column}) > 1 THEN {sql_literal(combined.code)} ELSE {column}[1] END"
        where = f"len({column}) > 0"
        labels[combined.code] = combined.label
    label = "coalesce(ch.label_en, g.code)"
    if labels:
        cases = " ".join(f"WHEN {sql_literal(c)} THEN {sql_literal(text)}" for c, text in labels.items())
        label = f"CASE g.code {cases} ELSE {label} END"
    return (
        f"SELECT g.respondent_key, {sql_literal(name)}, g.code, {label} "
        f"FROM (SELECT w.respondent_key, w.wave, {code} AS code FROM respondent_wide w WHERE {where}) g "
        f"LEFT JOIN choices ch ON ch.wave = g.wave AND ch.concept = {sql_literal(breakdown.question)} AND ch.code = g.code"
    )


# --- compiling rules -------------------------------------------------------------------------


def compile_rule(expr: Expr, kinds: dict[str, str]) -> str:
    """A rule as a SQL boolean over respondent_wide. Unknown concepts are an IndicatorError."""
    if isinstance(expr, AnyRule):
        return "(" + " OR ".join(compile_rule(e, kinds) for e in expr.any) + ")"
    if isinstance(expr, AllRule):
        return "(" + " AND ".join(compile_rule(e, kinds) for e in expr.all) + ")"
    if expr.question not in kinds:
        raise IndicatorError(f"rule on {expr.question!r}: no such concept in any loaded wave")
    column, kind = _q(expr.question), kinds[expr.question]
    parts = []
    if expr.in_ is not None:
        parts.append(_membership(column, kind, expr.in_))
    if expr.not_in is not None:
        parts.append(f"NOT {_membership(column, kind, expr.not_in)}")
    if expr.only is not None:
        listed = ", ".join(sql_literal(c) for c in expr.only)
        parts.append(f"(len({column}) > 0 AND list_has_all([{listed}], {column}))" if kind == "multiple"
                     else f"{column} IN ({listed})")
    if expr.below is not None:
        parts.append(f"{column} < {_operand(expr.below, kinds)}")
    if expr.at_least is not None:
        parts.append(f"{column} >= {_operand(expr.at_least, kinds)}")
    if not parts:
        raise IndicatorError(
            f"rule on {expr.question!r} says nothing (use in, not_in, only, below or at_least)"
        )
    # NULL (not answered) never satisfies a rule.
    return "coalesce(" + " AND ".join(parts) + ", false)"


def _membership(column: str, kind: str, codes: list[str]) -> str:
    listed = ", ".join(sql_literal(c) for c in codes)
    if kind == "multiple":
        return f"list_has_any({column}, [{listed}])"
    return f"{column} IN ({listed})"


def _operand(value: float | str, kinds: dict[str, str]) -> str:
    if isinstance(value, str):
        if value not in kinds:
            raise IndicatorError(f"comparison with {value!r}: no such concept or derived value")
        return _q(value)
    return repr(float(value))


def _rule_concepts(expr: Expr) -> list[str]:
    if isinstance(expr, AnyRule):
        return [c for e in expr.any for c in _rule_concepts(e)]
    if isinstance(expr, AllRule):
        return [c for e in expr.all for c in _rule_concepts(e)]
    return [expr.question] + [v for v in (expr.below, expr.at_least) if isinstance(v, str)]


def _answered(questions: list[str]) -> str:
    return " AND ".join(f"{_q(q)} IS NOT NULL" for q in questions)


def _available(indicator: Indicator, wave_concepts: set[str], catalogue: Catalogue) -> bool:
    """Whether a wave asked what the indicator needs (scores: enough of their items)."""
    for concept in indicator.questions + ([indicator.value] if indicator.value else []):
        if concept in catalogue.scores:
            score = catalogue.scores[concept]
            if sum(item in wave_concepts for item in score.items) < score.min_items:
                return False
        elif concept not in wave_concepts:
            return False
    return True


def concepts_used(indicator: Indicator, catalogue: Catalogue) -> list[str]:
    """Every questionnaire concept an indicator depends on: scores become their items."""
    named = _rule_concepts(indicator.population) + indicator.questions + [indicator.value or ""]
    if indicator.condition is not None:
        named += _rule_concepts(indicator.condition)
    used: list[str] = []
    for concept in filter(None, named):
        if concept in catalogue.scores:
            used += catalogue.scores[concept].items
        else:
            used.append(concept)
    return list(dict.fromkeys(used))


# --- describing rules in words (the methods page and `consult indicators --list`) -------------


@dataclass(frozen=True)
class RuleWords:
    """How rules are put in words. `technical_words` (ids and codes, with the answers' wording) is
    what the warehouse stores and the open data release publishes, so it must not change; the
    methods page uses plain words (question wording and answer labels, in English or French) built
    from the templates of surveys/report_strings.yaml (`rule_words`), keys as in TECHNICAL_TEMPLATES."""

    templates: dict[str, str]
    question: Callable[[str], str]  # concept id -> how it is named
    answers: Callable[[str, list[str]], str]  # concept id, codes -> how those answers are named
    number: Callable[[float], str] = lambda value: f"{value:g}"


TECHNICAL_TEMPLATES = {
    "any": "at least one of: {parts}", "all": "all of: {parts}", "part": "({rule})", "parts_join": "; ", "and": " and ",
    "is": "{question} is {answers}", "is_one_of": "{question} is one of {answers}",
    "is_not": "{question} is not {answers}", "is_none_of": "{question} is none of {answers}",
    "includes": "{question} includes {answers}", "includes_any": "{question} includes any of {answers}",
    "excludes": "{question} does not include {answers}", "excludes_all": "{question} includes none of {answers}",
    "only": "{question} is only {answers}", "only_among": "{question} is only among {answers}",
    "at_least": "{question} is at least {number}", "below": "{question} is below {number}",
    "population": "{rule}; with an answer for {questions}", "questions_join": ", ",
    "per_answer": "One group per answer to {question}", "one_answer": " for people who gave one answer",
    "renamed": " ({labels})", "renamed_one": "{code}: {label}", "renamed_join": "; ",
    "combined": "; people who gave two or more form one group: {label}", "group": "{label}: {rule}.",
}


def technical_words(labels: dict[tuple[str, str], str]) -> RuleWords:
    def answers(q: str, codes: list[str]) -> str:
        return ", ".join(f"{c} ({labels[(q, c)]})" if (q, c) in labels else c for c in codes)

    return RuleWords(TECHNICAL_TEMPLATES, lambda q: q, answers, lambda value: _number(value))


def describe_rule(expr: Expr, kinds: dict[str, str], labels: dict[tuple[str, str], str]) -> str:
    """A rule in words, with concept ids and answer codes (and the answers' wording when known)."""
    return rule_in_words(expr, kinds, technical_words(labels))


def rule_in_words(expr: Expr, kinds: dict[str, str], words: RuleWords) -> str:
    """A rule in the given words (see RuleWords)."""
    t = words.templates
    if isinstance(expr, (AnyRule, AllRule)):
        inner = expr.any if isinstance(expr, AnyRule) else expr.all
        parts = t["parts_join"].join(t["part"].format(rule=rule_in_words(e, kinds, words)) for e in inner)
        return t["any" if isinstance(expr, AnyRule) else "all"].format(parts=parts)
    q = expr.question
    multiple = kinds.get(q) == "multiple"

    def codes(listed: list[str], one: str, several: str) -> str:
        return t[one if len(listed) == 1 else several].format(question=words.question(q), answers=words.answers(q, listed))

    parts = []
    if expr.in_ is not None:
        parts.append(codes(expr.in_, "includes" if multiple else "is", "includes_any" if multiple else "is_one_of"))
    if expr.not_in is not None:
        parts.append(codes(expr.not_in, "excludes" if multiple else "is_not", "excludes_all" if multiple else "is_none_of"))
    if expr.only is not None:
        parts.append(codes(expr.only, "only" if multiple else "is", "only_among" if multiple else "is_one_of"))
    if expr.at_least is not None:
        parts.append(t["at_least"].format(question=words.question(q), number=_rule_number(expr.at_least, words)))
    if expr.below is not None:
        parts.append(t["below"].format(question=words.question(q), number=_rule_number(expr.below, words)))
    return t["and"].join(parts)


def _rule_number(value: float | str, words: RuleWords) -> str:
    return value if isinstance(value, str) else words.number(value)


def _number(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def population_rule_text(indicator: Indicator, kinds: dict[str, str], labels: dict[tuple[str, str], str],
                         derived_notes: list[str] = ()) -> str:
    """The denominator in words; `derived_notes` say how the derived answers it uses were worked out."""
    return population_in_words(indicator, kinds, technical_words(labels), derived_notes)


def population_in_words(indicator: Indicator, kinds: dict[str, str], words: RuleWords,
                        derived_notes: list[str] = ()) -> str:
    t = words.templates
    text = t["population"].format(rule=rule_in_words(indicator.population, kinds, words),
                                  questions=t["questions_join"].join(map(words.question, indicator.questions)))
    return " ".join([text + ".", *derived_notes]) if derived_notes else text


def comparability_text(indicator: Indicator, populations: dict[int, PopulationChange] | None = None,
                       waves: Iterable[int] = ()) -> str:
    """The indicator's comparability statements in words; then each change of who is in scope
    (`populations`, by wave) that its figures (`waves`) span, as the methods page shows them."""
    spanned = population_spans(populations or {}, waves)
    return " ".join(
        [f"{c.waves[0]} to {c.waves[1]}: {c.status.replace('_', ' ')}." + (f" {c.note.strip()}" if c.note.strip() else "")
         for c in indicator.comparability]
        + [f"{before} to {after}: {p.status.replace('_', ' ')} (who is in scope changed). {p.note.strip()}"
           for before, after, p in spanned]
    )


def population_spans(populations: dict[int, PopulationChange],
                     waves: Iterable[int]) -> list[tuple[int, int, PopulationChange]]:
    """(wave before, wave, statement) for each change of who is in scope that figures in `waves` span."""
    waves = set(waves)
    return [(p.since, w, p) for w, p in sorted(populations.items())
            if any(x < w for x in waves) and any(x >= w for x in waves)]


def groups_text(breakdown: Breakdown, kinds: dict[str, str], labels: dict[tuple[str, str], str]) -> str:
    return groups_in_words(breakdown, kinds, technical_words(labels))


def groups_in_words(breakdown: Breakdown, kinds: dict[str, str], words: RuleWords) -> str:
    t = words.templates
    if breakdown.question is not None:
        combined = breakdown.more_than_one
        renamed = "" if not breakdown.labels else t["renamed"].format(labels=t["renamed_join"].join(
            t["renamed_one"].format(code=c, label=text) for c, text in breakdown.labels.items()))
        return (t["per_answer"].format(question=words.question(breakdown.question))
                + (t["one_answer"] if combined else "") + renamed
                + (t["combined"].format(label=combined.label) if combined else "") + ".")
    return " ".join(t["group"].format(label=g.label, rule=rule_in_words(g.rule, kinds, words)) for g in breakdown.groups)


def catalogue_listing(catalogue: Catalogue, surveys_dir: Path) -> str:
    """The whole catalogue as plain text, for `consult indicators --list`."""
    kinds, labels = instrument_kinds(surveys_dir), _privacy_labels(surveys_dir) | instrument_labels(surveys_dir)
    kinds.update({name: "numeric" for name in catalogue.scores})
    derived = derivation_texts([(d.question.id, instrument.wave, ", ".join(d.reads), d.reference, d.reference_year, d.note)
                                for instrument, concepts in _questionnaires(surveys_dir) for d in concepts])
    lines = [f"Indicators ({len(catalogue.indicators)}, defined in {catalogue.path})"]
    for i in catalogue.indicators:
        unit = "%" if i.kind == "proportion" else i.unit
        lines += [
            "",
            f"{i.id}  {i.title}",
            f"    domain: {i.domain}; {i.kind} ({unit}); minimum n {catalogue.min_n_of(i)}",
            f"    definition: {i.definition.strip()}",
            f"    population: {i.population_text} ({population_rule_text(i, kinds, labels)})",
            *(f"    derived: {text}" for text in _derived_notes(i, catalogue, derived)),
        ]
        if i.condition is not None:
            lines.append(f"    counted when: {describe_rule(i.condition, kinds, labels)}")
        if i.value is not None:
            lines.append(f"    value: {i.value} ({catalogue.scores[i.value].title})" if i.value in catalogue.scores
                         else f"    value: {i.value}")
        lines.append(f"    breakdowns: {', '.join(catalogue.breakdowns_of(i)) or 'none'}")
        if i.comparability:
            lines.append(f"    across waves: {comparability_text(i)}")
        if i.caveats.strip():
            lines.append(f"    caveats: {i.caveats.strip()}")
    lines.append("\nBreakdowns (groups each indicator is also shown by)")
    for name, breakdown in catalogue.breakdowns.items():
        lines += ["", f"{name}  {breakdown.title}", f"    {breakdown.definition.strip()}",
                  f"    groups: {groups_text(breakdown, kinds, labels)}"]
    return "\n".join(lines)


# --- checks against the instruments ----------------------------------------------------------


def _questionnaires(surveys_dir: Path) -> list[tuple[Instrument, list[DerivedConcept]]]:
    """Every wave's instrument with the derived answers it allows (surveys/derived.yaml), newest
    wave first: its wording is the one shown."""
    from pipeline.instrument import available_waves, instrument_path, load_instrument

    derivations = load_derivations(derived_path(surveys_dir))
    instruments = [load_instrument(instrument_path(surveys_dir, w)) for w in sorted(available_waves(surveys_dir), reverse=True)]
    return [(i, [found.concept for found in derived_concepts(i, derivations, need_rates=False)]) for i in instruments]


def instrument_kinds(surveys_dir: Path) -> dict[str, str]:
    """The type of every concept of every wave's instrument, derived answers included."""
    kinds: dict[str, str] = {}
    for instrument, derived in _questionnaires(surveys_dir):
        for question in instrument.questions + [d.question for d in derived]:
            kinds.setdefault(question.id, question.type.value)
    return kinds


def instrument_labels(surveys_dir: Path) -> dict[tuple[str, str], str]:
    """(concept, code) -> the answer's English wording, newest wave first."""
    labels: dict[tuple[str, str], str] = {}
    for instrument, derived in _questionnaires(surveys_dir):
        for question in instrument.questions + [d.question for d in derived]:
            for choice in instrument.choices_of(question):
                labels.setdefault((question.id, choice.code), choice.label.en)
    return labels


def merged_code_labels(privacy: PrivacyRules) -> dict[tuple[str, str], str]:
    """(question, merged code) -> its English label (surveys/privacy.yaml), for the rules in words."""
    return {key: label.en for key, label in privacy.microdata.group_labels().items()}


def _privacy_labels(surveys_dir: Path) -> dict[tuple[str, str], str]:
    path = surveys_dir / PRIVACY_FILE
    return merged_code_labels(load_privacy_rules(path)) if path.exists() else {}


DerivationRow = tuple[str, int, str, str, int, str]  # concept, wave, reads, reference, reference_year, note


def derivation_texts(rows: list[DerivationRow]) -> dict[str, str]:
    """Each derived answer in words: what it is worked out from and which year of its reference
    each wave is compared with (the methods page and `consult indicators --list`)."""
    described: dict[str, tuple[str, str, list[str]]] = {}
    for concept, wave, reads, reference, year, note in sorted(rows, key=lambda r: (r[0], r[1])):
        years = described.setdefault(concept, (reads, reference, []))[2]
        years.append(f"{year} rates for the {wave} wave" + (f" ({note.rstrip('.')})" if note else ""))
    return {
        concept: f"{concept} is worked out before storage from {' and '.join(reads.split(', '))} as answered (before any rounding or "
                 f"merging for privacy), compared with {reference}: {'; '.join(years)}."
        for concept, (reads, reference, years) in described.items()
    }


def _derived_notes(indicator: Indicator, catalogue: Catalogue, texts: dict[str, str]) -> list[str]:
    return [texts[c] for c in concepts_used(indicator, catalogue) if c in texts]


def check_definitions(catalogue: Catalogue, kinds: dict[str, str]) -> None:
    """Every concept an indicator, score or breakdown names must exist in some wave's instrument,
    loaded or not: a misspelt id is an error, not a figure that silently disappears."""
    for name, score in catalogue.scores.items():
        if unknown := [item for item in score.items if item not in kinds]:
            raise IndicatorError(f"score {name}: no such concept {unknown[0]!r} in any wave's instrument")
    kinds = {**kinds, **{name: "numeric" for name in catalogue.scores}}
    for name, breakdown in catalogue.breakdowns.items():
        try:
            if breakdown.question is not None and kinds.get(breakdown.question) not in _question_kinds(breakdown):
                wanted = "multiple-choice" if breakdown.more_than_one is not None else "single-choice"
                raise IndicatorError(f"{breakdown.question!r} is not a {wanted} question of any wave")
            for group in breakdown.groups or []:
                compile_rule(group.rule, kinds)
        except IndicatorError as exc:
            raise IndicatorError(f"breakdown {name}: {exc}") from None
    for indicator in catalogue.indicators:
        named = indicator.questions + ([indicator.value] if indicator.value else [])
        for concept in named:
            if concept not in kinds:
                raise IndicatorError(f"{indicator.id}: no such concept {concept!r} in any wave's instrument")
        try:
            compile_rule(indicator.population, kinds)
            if indicator.condition is not None:
                compile_rule(indicator.condition, kinds)
        except IndicatorError as exc:
            raise IndicatorError(f"{indicator.id}: {exc}") from None


# --- estimates -------------------------------------------------------------------------------


def compute(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, rules: DisclosureRules,
    group_labels: dict[tuple[str, str], str] | None = None,
) -> pd.DataFrame:
    """Rebuild respondent_wide, respondent_groups and every indicator table; return the estimates.
    `group_labels`: (question, code) -> English label of the codes surveys/privacy.yaml merges
    answers into, for the rules in words (merged_code_labels)."""
    kinds = build_wide(con, catalogue)
    build_groups(con, catalogue, kinds)
    waves = {
        wave: {c for (c,) in con.execute("SELECT concept FROM concepts WHERE wave = ?", [wave]).fetchall()}
        for (wave,) in con.execute("SELECT DISTINCT wave FROM respondents ORDER BY wave").fetchall()
    }
    usable = {
        indicator.id: [w for w, concepts in waves.items() if _available(indicator, concepts, catalogue)]
        for indicator in catalogue.indicators
    }
    computed = [i for i in catalogue.indicators if usable[i.id]]
    estimates = _aggregate(con, computed, catalogue, kinds, usable) if computed else pd.DataFrame()
    gaps = changes = pd.DataFrame()
    if not estimates.empty:
        check_partitions(estimates, catalogue)
        # figures linked across tables by their definitions are protected together (derivation.py)
        estimates = suppress_by_wave(con, add_intervals(estimates), catalogue, kinds, rules)
        gaps = suppress_gaps(gap_rows(estimates), rules)
        signatures = question_signatures(con, group_labels or {})
        changes = suppress_changes(change_rows(estimates, catalogue, signatures))
    _store(con, catalogue, kinds, estimates, gaps, changes, group_labels or {})
    con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('disclosure_sha256', ?)", [rules_sha256(rules)])
    return estimates


# What suppress() adds to each cell: a wave's outcome, as kept in suppression_memo.
SUPPRESSION_OUTCOME = ["suppression", "suppressed", "no_group", "gaps_withheld"]
# The code that decides suppression: a change to it must not reuse outcomes it did not make.
_SUPPRESSION_CODE = [Path(__file__).with_name(name) for name in ("disclosure.py", "derivation.py")]


@functools.cache
def _suppression_code_sha256() -> str:
    """The hash of the code that decides suppression, read once per process (it cannot change under it)."""
    digest = hashlib.sha256()
    for path in _SUPPRESSION_CODE:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def suppress_by_wave(con: duckdb.DuckDBPyConnection, cells: pd.DataFrame, catalogue: Catalogue,
                     kinds: dict[str, str], rules: DisclosureRules) -> pd.DataFrame:
    """suppress() wave by wave, reusing the stored outcome of every wave whose inputs are unchanged.

    Why: no hidden cell of one wave depends on another wave's figures (tables, linked indicators and
    partitions are all within a wave), and the linked families and complementary suppression are the
    costliest part of compute(): with a decade of waves, each yearly load solved all ten again although
    only the new wave changed. The result is the same as suppress() over all waves at once."""
    stored = {w: (f, o) for w, f, o in con.execute("SELECT wave, fingerprint, outcome FROM suppression_memo").fetchall()}
    parts, memo = [], []
    for wave, in_wave in cells.groupby("wave", sort=True):
        wave = int(wave)
        fingerprint = _suppression_fingerprint(con, wave, in_wave, catalogue, kinds, rules)
        if stored.get(wave, ("",))[0] == fingerprint:
            columns = zip(*json.loads(stored[wave][1]))
            done = in_wave.assign(**{name: list(values) for name, values in zip(SUPPRESSION_OUTCOME, columns)})
            done = done.astype({"suppressed": bool, "gaps_withheld": bool})
        else:
            done = suppress(in_wave, rules, linked_families(con, catalogue, kinds, in_wave))
        parts.append(done)
        outcome = [[None if v is None else (bool(v) if isinstance(v, (bool, np.bool_)) else v) for v in row]
                   for row in done[SUPPRESSION_OUTCOME].itertuples(index=False)]
        memo.append((wave, fingerprint, json.dumps(outcome)))
    con.execute("DELETE FROM suppression_memo")
    if memo:
        con.executemany("INSERT INTO suppression_memo VALUES (?, ?, ?)", memo)
    return pd.concat(parts).loc[cells.index]


def _suppression_fingerprint(con: duckdb.DuckDBPyConnection, wave: int, cells: pd.DataFrame, catalogue: Catalogue,
                             kinds: dict[str, str], rules: DisclosureRules) -> str:
    """Everything a wave's suppression is worked out from: its cells (all columns, exact values), the
    answer codes its linked families read, the indicator definitions, the concepts' types, the
    disclosure rules and the code of disclosure.py and derivation.py."""
    digest = hashlib.sha256()
    digest.update(json.dumps([catalogue.sha256, rules_sha256(rules), sorted(kinds.items()),
                              list(cells.columns), [str(t) for t in cells.dtypes]]).encode())
    digest.update(pd.util.hash_pandas_object(cells, index=False).to_numpy().tobytes())
    codes = con.execute("SELECT concept, list(code ORDER BY code) FROM choices WHERE wave = ? AND NOT missing "
                        "GROUP BY concept ORDER BY concept", [wave]).fetchall()
    digest.update(json.dumps(codes).encode())
    digest.update(_suppression_code_sha256().encode())
    return digest.hexdigest()


def _aggregate(
    con: duckdb.DuckDBPyConnection, indicators: list[Indicator], catalogue: Catalogue, kinds: dict[str, str],
    waves: dict[str, list[int]],
) -> pd.DataFrame:
    """Every indicator's cells in one query (one scan of the respondents for all of them, not one
    per indicator), in catalogue order, then by wave, breakdown and group.

    Respondents who are in the same groups (a numbered `group_set`, see _number_group_sets) are
    added up first, per indicator and wave, in one pass over respondent_wide; those sums are then
    spread to each set's groups, keeping the breakdowns each indicator is shown by (a semi join on
    the short `wanted` list). Counts and DECIMAL sums are exact, so adding them in two steps gives
    the same figures. Meeting every population with respondent_groups respondent by respondent
    instead (a row per respondent, indicator and group) took twice the CPU and spilled twice as
    much to disk within 400 MB at 200,000 responses; copying the groups once per indicator before
    that join took 3.5 GB and four times the CPU at 100,000 responses."""
    _number_group_sets(con)
    members = ", ".join(_member_sql(order, i, kinds, waves[i.id]) for order, i in enumerate(indicators))
    wanted = ", ".join(
        f"({order}, {sql_literal(b)})" for order, i in enumerate(indicators) for b in catalogue.breakdowns_of(i)
    ) or "(NULL::INTEGER, NULL::VARCHAR)"  # no breakdown at all: no row
    details = ", ".join(
        f"({order}, {sql_literal(i.id)}, {sql_literal(i.kind)}, {catalogue.min_n_of(i)}, "
        f"{sql_literal(i.partition) if i.partition else 'NULL::VARCHAR'})" for order, i in enumerate(indicators))
    sums = ("sum(p.n)::BIGINT AS {0}n, sum(p.count)::BIGINT AS {0}count, "
            "sum(p.total) AS {0}total, sum(p.total_sq) AS {0}total_sq")
    sql = f"""
        WITH sets AS (  -- per indicator, wave and set of groups: n and the count or the exact sums
            SELECT m.ord, wave, group_set, count(*) AS n,
                   CASE WHEN any_value(m.proportion) THEN count(*) FILTER (WHERE m.hit) END AS count,
                   sum(m.value) AS total, sum(m.value * m.value) AS total_sq
            FROM (SELECT w.wave, s.group_set, unnest([{members}]) AS m
                  FROM respondent_wide w LEFT JOIN (SELECT respondent_key, group_set FROM respondent_group_sets) s
                  USING (respondent_key))
            WHERE m.member
            GROUP BY m.ord, wave, group_set
        ),
        wanted AS (SELECT * FROM (VALUES {wanted}) AS w(ord, breakdown) WHERE ord IS NOT NULL),
        set_groups AS (
            SELECT group_set, breakdown, group_code, group_label FROM group_set_members JOIN group_ids USING (group_id)
        ),
        set_breakdowns AS (SELECT DISTINCT group_set, breakdown FROM set_groups),
        cells AS (
            SELECT ord, wave, 'all' AS breakdown, 'all' AS group_code, 'All respondents' AS group_label,
                   {sums.format('')}
            FROM sets p GROUP BY ord, wave
            UNION ALL
            SELECT p.ord, p.wave, g.breakdown, g.group_code, min(g.group_label), {sums.format('')}
            FROM sets p JOIN set_groups g USING (group_set)
            SEMI JOIN wanted w ON w.ord = p.ord AND w.breakdown = g.breakdown
            GROUP BY p.ord, p.wave, g.breakdown, g.group_code
        ),
        answered AS (  -- everyone in some group of the breakdown: the group plus everyone else
            SELECT p.ord, p.wave, g.breakdown, {sums.format('answered_')}
            FROM sets p JOIN set_breakdowns g USING (group_set)
            SEMI JOIN wanted w ON w.ord = p.ord AND w.breakdown = g.breakdown
            GROUP BY p.ord, p.wave, g.breakdown
        )
        SELECT d.indicator_id, d.kind, cells.* EXCLUDE (ord),
               answered_n, answered_count, answered_total, answered_total_sq, d.min_n, d.partition
        FROM cells LEFT JOIN answered USING (ord, wave, breakdown)
        JOIN (VALUES {details}) AS d(ord, indicator_id, kind, min_n, partition) USING (ord)
        ORDER BY cells.ord, wave, breakdown, group_code
    """
    cells = _frame(con.execute(sql))
    for table in ("group_ids", "respondent_group_sets", "group_set_members"):
        con.execute(f"DROP TABLE {table}")
    return cells


def _number_group_sets(con: duckdb.DuckDBPyConnection) -> None:
    """Number the groups (`group_ids`) and each distinct set of groups respondents are in
    (`respondent_group_sets`: respondent -> set; `group_set_members`: set -> its groups, as often
    as a respondent of the set is in each). Far fewer sets than respondents share the same groups."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE group_ids AS
        SELECT row_number() OVER (ORDER BY breakdown, group_code, group_label) AS group_id,
               breakdown, group_code, group_label
        FROM (SELECT DISTINCT breakdown, group_code, group_label FROM respondent_groups)
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE respondent_group_sets AS
        SELECT respondent_key, dense_rank() OVER (ORDER BY groups) AS group_set, groups
        FROM (SELECT g.respondent_key, list(i.group_id ORDER BY i.group_id) AS groups
              FROM respondent_groups g JOIN group_ids i USING (breakdown, group_code, group_label)
              GROUP BY g.respondent_key)
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE group_set_members AS
        SELECT group_set, unnest(any_value(groups)) AS group_id FROM respondent_group_sets GROUP BY group_set
    """)


def _member_sql(order: int, indicator: Indicator, kinds: dict[str, str], waves: list[int]) -> str:
    """Per respondent, as a struct: whether they are in the indicator's population (who answered,
    in the waves that asked) and whether they are counted (a proportion) or the value (a mean)."""
    population = compile_rule(indicator.population, kinds)
    member = f"{population} AND {_answered(indicator.questions)} AND wave IN ({', '.join(str(w) for w in waves)})"
    if indicator.kind == "proportion":
        condition = compile_rule(indicator.condition, kinds)
        measure = f"proportion := true, hit := {condition}, value := NULL::DECIMAL(18, 6)"
    else:
        # Exact decimal sums, not DOUBLE aggregates: parallel floating-point sums vary in their
        # last bits from run to run, and published figures must not.
        measure = f"proportion := false, hit := false, value := CAST({_q(indicator.value)} AS DECIMAL(18, 6))"
    return f"struct_pack(ord := {order}, member := {member}, {measure})"


def _frame(result: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """A query result as a DataFrame that keeps DECIMAL sums exact (as Decimal objects)."""
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    frame = pd.DataFrame({name: pd.Series([r[i] for r in rows], dtype=object) for i, name in enumerate(names)})
    for column in ("wave", "n", "min_n"):
        frame[column] = frame[column].astype("int64")
    for column in ("count", "answered_n", "answered_count"):
        frame[column] = pd.array(list(frame[column]), dtype="Int64")
    return frame


def check_partitions(cells: pd.DataFrame, catalogue: Catalogue) -> None:
    """Indicators declared to split one population must add up to it, in every cell."""
    linked = cells[cells["partition"].notna()]
    for (name, wave, breakdown, code), table in linked.groupby(["partition", "wave", "breakdown", "group_code"]):
        members = sum(1 for i in catalogue.indicators if i.partition == name)
        if len(table) != members or table["n"].nunique() != 1 or int(table["count"].sum()) != int(table["n"].iloc[0]):
            raise IndicatorError(
                f"{catalogue.path}: partition {name!r} ({', '.join(sorted(table['indicator_id']))}) does not split "
                f"its population in wave {wave}, {breakdown} {code}: counts {list(table['count'])} for n "
                f"{list(table['n'])}; check that the conditions neither overlap nor leave a gap"
            )


def wilson_interval(count: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion, as fractions (0-1)."""
    if n == 0:
        return (math.nan, math.nan)
    p = count / n
    if count in (0, n):  # the closed form, without rounding error at the ends
        bound = n / (n + z * z)
        return (0.0, 1.0 - bound) if count == 0 else (bound, 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(count1: int, n1: int, count2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (independent groups), as fractions: each
    side's Wilson interval, combined (Newcombe 1998, method 10)."""
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan)
    p1, p2 = count1 / n1, count2 / n2
    (low1, high1), (low2, high2) = wilson_interval(count1, n1), wilson_interval(count2, n2)
    difference = p1 - p2
    return (difference - math.hypot(p1 - low1, high2 - p2), difference + math.hypot(high1 - p1, p2 - low2))


def t_interval(mean: float, sd: float, n: int) -> tuple[float, float]:
    from scipy.stats import t  # a dependency of statsmodels and of our t quantiles

    if n < 2 or sd != sd:
        return (math.nan, math.nan)
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def welch_interval(mean1: float, sd1: float, n1: int, mean2: float, sd2: float, n2: int) -> tuple[float, float]:
    """95% interval for mean1 - mean2 without assuming equal variances (Welch-Satterthwaite)."""
    from scipy.stats import t

    if n1 < 2 or n2 < 2 or sd1 != sd1 or sd2 != sd2:
        return (math.nan, math.nan)
    difference = mean1 - mean2
    v1, v2 = sd1 * sd1 / n1, sd2 * sd2 / n2
    if v1 + v2 == 0:  # no spread on either side: the difference is exact
        return (difference, difference)
    df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
    half = float(t.ppf(0.975, df)) * math.sqrt(v1 + v2)
    return (difference - half, difference + half)


def mean_and_sd(total: Decimal, total_sq: Decimal, n: int) -> tuple[float, float]:
    """Mean and sample standard deviation from exact sums (deterministic to the last bit)."""
    mean = total / n
    if n < 2:
        return float(mean), math.nan
    variance = (total_sq - total * total / n) / (n - 1)
    return float(mean), math.sqrt(max(0.0, float(variance)))


def add_intervals(cells: pd.DataFrame) -> pd.DataFrame:
    cells = cells.copy()
    estimate, sd, low, high = [], [], [], []
    for row in cells.itertuples():
        if row.kind == "proportion":
            lo, hi = wilson_interval(int(row.count), int(row.n))
            estimate.append(100.0 * row.count / row.n)
            sd.append(math.nan)
            low.append(100.0 * lo)
            high.append(100.0 * hi)
        else:
            mean, spread = mean_and_sd(Decimal(row.total), Decimal(row.total_sq), int(row.n))
            lo, hi = t_interval(mean, spread, int(row.n))
            estimate.append(mean)
            sd.append(spread)
            low.append(lo)
            high.append(hi)
    cells["estimate"], cells["sd"], cells["ci_low"], cells["ci_high"] = estimate, sd, low, high
    return cells


def _verdict(low: float, high: float, up: str, down: str) -> str | None:
    """Whether an interval for a difference leaves out zero, in words."""
    if math.isnan(low) or math.isnan(high):
        return None
    return up if low > 0 else down if high < 0 else NOISE


# --- each group against everyone else ----------------------------------------------------------


def gap_rows(estimates: pd.DataFrame) -> pd.DataFrame:
    """Each group against everyone else in its breakdown (who answered it), same indicator and wave:
    the difference in percentage points (Newcombe interval) or in score points (Welch interval)."""
    overall = estimates[estimates["group_code"] == "all"]
    overall_suppressed = {(r.indicator_id, r.wave): bool(r.suppressed) for r in overall.itertuples()}
    rows = []
    for r in estimates[estimates["answered_n"].notna()].itertuples():
        rest_n = int(r.answered_n) - int(r.n)
        if rest_n == 0:
            continue  # nobody else answered: nothing to compare with
        if r.kind == "proportion":
            rest_count = int(r.answered_count) - int(r.count)
            rest_estimate = 100.0 * rest_count / rest_n
            low, high = (100.0 * x for x in newcombe_interval(int(r.count), int(r.n), rest_count, rest_n))
            gap = 100.0 * (int(r.count) / int(r.n) - rest_count / rest_n)
        else:
            rest_count = None
            rest_estimate, rest_sd = mean_and_sd(
                Decimal(r.answered_total) - Decimal(r.total), Decimal(r.answered_total_sq) - Decimal(r.total_sq), rest_n
            )
            low, high = welch_interval(r.estimate, r.sd, int(r.n), rest_estimate, rest_sd, rest_n)
            gap = r.estimate - rest_estimate
        rows.append(dict(
            indicator_id=r.indicator_id, wave=r.wave, breakdown=r.breakdown, group_code=r.group_code,
            group_label=r.group_label, kind=r.kind, min_n=r.min_n, n=int(r.n), count=r.count, estimate=r.estimate,
            rest_n=rest_n, rest_count=rest_count, rest_estimate=rest_estimate, gap=gap, gap_low=low, gap_high=high,
            statement=_verdict(low, high, GAP_UP, GAP_DOWN), group_suppressed=bool(r.suppressed),
            overall_suppressed=overall_suppressed[r.indicator_id, r.wave], no_group=getattr(r, "no_group", None),
            gaps_withheld=bool(getattr(r, "gaps_withheld", False)),
        ))
    return pd.DataFrame(rows, columns=GAP_COLUMNS + ["kind", "min_n", "group_suppressed", "overall_suppressed",
                                                     "no_group", "gaps_withheld"])


GAP_COLUMNS = ["indicator_id", "wave", "breakdown", "group_code", "group_label", "n", "count", "estimate", "rest_n",
               "rest_count", "rest_estimate", "gap", "gap_low", "gap_high", "statement"]


# --- across waves ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One answer option as the waves are compared: code, English wording, points, "no answer"."""
    code: str
    label: str
    score: float | None
    missing: bool


@dataclass(frozen=True)
class Asked:
    """How one wave asked one concept, as far as comparing waves goes: two waves asked it the same
    way exactly when these are equal. French wording is not compared. A derived answer also carries
    how each question it is worked out from was asked (`reads`, in order; their names are only for
    describing a change, not compared). `asked_of` (who is asked: the canonical show_if, "" for
    everyone) and `unit` ("" for none) are not compared between two waves stored before the
    warehouse kept them (`stored_before`: a warehouse made before keeps running), nor when unknown
    (None: such a wave not filled in yet)."""
    kind: str
    label: str
    answers: tuple[Answer, ...] = ()
    reads: tuple[Asked | None, ...] | None = None
    read_names: tuple[str, ...] = field(default=(), compare=False)
    asked_of: str | None = field(default=None, compare=False)  # compared in __eq__ (see above)
    unit: str | None = field(default=None, compare=False)
    stored_before: bool = field(default=False, compare=False)
    asked_of_words: str = field(default="", compare=False)  # for describing a change only

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Asked):
            return NotImplemented
        return ((self.kind, self.label, self.answers, self.reads) == (other.kind, other.label, other.answers, other.reads)
                and not _differ(self, other, "asked_of") and not _differ(self, other, "unit"))


def _differ(old: Asked, new: Asked, name: str) -> bool:
    """Whether two waves' `asked_of` or `unit` differ, where compared (see Asked)."""
    a, b = getattr(old, name), getattr(new, name)
    return not (old.stored_before and new.stored_before) and a is not None and b is not None and a != b


# wave -> concept -> how it was asked
Signatures = dict[int, dict[str, Asked]]


def question_signatures(con: duckdb.DuckDBPyConnection,
                        protection_codes: Iterable[tuple[str, str]] = ()) -> Signatures:
    """What each loaded wave asked, per concept: type, wording and answers (codes, wording, points).
    `protection_codes`: the (question, code) pairs k-anonymity merges answers into (surveys/privacy.yaml),
    left out: a wave stores those it used, and a smaller wave may use more, but that is not a question
    asked differently."""
    from pipeline.load import lacks_recorded_later, unrecorded_waves

    pairs = [{"concept": concept, "code": code} for concept, code in sorted(protection_codes)]
    unrecorded = unrecorded_waves(con)
    asked_of, unit = ("NULL", "NULL") if lacks_recorded_later(con) else ("c.show_if", "c.unit")
    rows = con.execute(
        f"""
        SELECT c.wave, c.concept, c.type, c.label_en, {asked_of}, {unit},
               list(struct_pack(code := ch.code, label := ch.label_en, score := ch.score, missing := ch.missing)
                    ORDER BY ch.code) FILTER (WHERE ch.code IS NOT NULL)
        FROM concepts c LEFT JOIN choices ch ON ch.wave = c.wave AND ch.concept = c.concept
            AND NOT list_contains($pairs::STRUCT(concept VARCHAR, code VARCHAR)[],
                                  {{'concept': ch.concept, 'code': ch.code}})
        GROUP BY ALL
        ORDER BY c.wave, c.concept
        """, {"pairs": pairs}
    ).fetchall()
    # each wave's question types and answer wording, for putting its skip logic in words
    kinds: dict[int, dict[str, str]] = {}
    labels: dict[int, dict[tuple[str, str], str]] = {}
    for wave, concept, kind, *_, answers in rows:
        kinds.setdefault(wave, {})[concept] = kind
        labels.setdefault(wave, {}).update({(concept, a["code"]): a["label"] for a in answers or ()})
    signatures: Signatures = {}
    for wave, concept, kind, label, shown_to, unit_of, answers in rows:
        signatures.setdefault(wave, {})[concept] = Asked(
            kind, label, tuple(Answer(**a) for a in answers or ()), asked_of=_asked_of(shown_to, labels[wave]),
            unit=unit_of, stored_before=wave in unrecorded,
            asked_of_words=_who_is_asked(shown_to, kinds[wave], labels[wave]))
    # a derived answer changes with any question it is worked out from
    for wave, concept, reads in con.execute("SELECT wave, concept, reads FROM derived_concepts ORDER BY ALL").fetchall():
        asked = signatures.get(wave, {})
        if concept in asked:
            names = tuple(reads.split(", "))
            asked[concept] = replace(asked[concept], reads=tuple(asked.get(r) for r in names), read_names=names)
    return signatures


def _asked_of(shown_to: str | None, labels: dict[tuple[str, str], str]) -> str | None:
    """Who is asked, as compared between waves: the canonical skip logic and what each answer it
    names means (its wording, punctuation aside). The same codes can name other people: "asked if
    contract is 2" asks part-timers in one wave and casual staff in the next once answer 2 is reworded,
    even when no indicator uses the contract question itself."""
    if not shown_to:
        return shown_to
    meanings = sorted({(q, code, plain_text(labels.get((q, code), ""))) for q, code in _named_answers(json.loads(shown_to))})
    return shown_to + json.dumps(meanings, separators=(",", ":"))


def _named_answers(canonical: dict[str, Any]) -> list[tuple[str, str]]:
    """The (question, code) pairs canonical skip logic names."""
    if "question" in canonical:
        return [(canonical["question"], code) for code in canonical["in"]]
    return [pair for part in canonical.get("all", canonical.get("any", [])) for pair in _named_answers(part)]


def _who_is_asked(shown_to: str | None, kinds: dict[str, str], labels: dict[tuple[str, str], str]) -> str:
    """Who a wave asks a question, in words: "everyone", or "only if" its skip logic put as the
    indicators' rules are (describe_rule: ids and codes, with the wave's answer wording)."""
    if not shown_to:
        return "everyone"
    return f"only if {describe_rule(_show_if_rule(json.loads(shown_to)), kinds, labels)}"


def _show_if_rule(canonical: dict[str, Any]) -> Expr:
    """Canonical skip logic (instrument.canonical_show_if) as the indicator rule meaning the same."""
    if "all" in canonical:
        return AllRule(all=[_show_if_rule(part) for part in canonical["all"]])
    if "any" in canonical:
        return AnyRule(any=[_show_if_rule(part) for part in canonical["any"]])
    return Rule.model_validate({"question": canonical["question"], "in": canonical["in"]})


def comparability_of(
    indicator: Indicator, catalogue: Catalogue, before: int, after: int, signatures: Signatures
) -> Comparability | None:
    """The stated comparability of two waves; unstated means comparable, which is only allowed when
    every question the indicator uses was asked the same way in both (else None: a statement is missing).
    A change of who is in scope between them (a wave's population_change) counts too: not comparable
    whatever the questions, else the less comparable of the two statements, with both notes."""
    crossed = [p for w, p in sorted(catalogue.population_changes.items()) if before < w <= after]
    broken = [p.note.strip() for p in crossed if p.status == "not_comparable"]
    if broken:
        return Comparability(waves=(before, after), status="not_comparable", note=" ".join(broken))
    own = next((stated for stated in indicator.comparability if stated.waves == (before, after)), None)
    if own is None and changed_concepts(indicator, catalogue, before, after, signatures):
        return None
    own = own or Comparability(waves=(before, after), status="comparable")
    if not crossed:
        return own
    status = max([own.status, *(p.status for p in crossed)], key=STATUS_ORDER.index)
    note = " ".join(n for n in [own.note.strip(), *(p.note.strip() for p in crossed)] if n)
    return Comparability(waves=(before, after), status=status, note=note)


STATUS_ORDER = ["comparable", "comparable_with_caveat", "not_comparable"]  # least to most different


def changed_concepts(indicator: Indicator, catalogue: Catalogue, before: int, after: int,
                     signatures: Signatures) -> list[str]:
    return [c for c in concepts_used(indicator, catalogue)
            if signatures.get(before, {}).get(c) != signatures.get(after, {}).get(c)]


def change_rows(estimates: pd.DataFrame, catalogue: Catalogue, signatures: Signatures) -> pd.DataFrame:
    """Each wave against the previous wave that has the indicator, overall and for every group in
    both: the change in percentage points (Newcombe) or score points (Welch), as far as they compare."""
    rows, unstated = [], []
    for indicator in catalogue.indicators:
        cells = estimates[estimates["indicator_id"] == indicator.id]
        waves = sorted(int(w) for w in cells["wave"].unique())
        for before, after in zip(waves, waves[1:]):
            verdict = comparability_of(indicator, catalogue, before, after, signatures)
            if verdict is None:
                unstated.append((indicator, before, after))
                continue
            pairs = cells[cells["wave"] == after].merge(
                cells[cells["wave"] == before], on=["breakdown", "group_code"], suffixes=("", "_before")
            )
            rows += [_change(p, verdict) for p in pairs.itertuples()]
    if unstated:
        # every missing statement at once: a reworded question is often used by several indicators,
        # and each run that stops here has read and checked every new export first
        raise IndicatorError(unstated_message(unstated, catalogue, signatures))
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS + ["suppressed_now", "suppressed_before"])


def unstated_comparability(catalogue: Catalogue, instruments: dict[int, Instrument],
                            derivations: Derivations, unrecorded: Iterable[int] = ()) -> str | None:
    """The message change_rows would stop a run with, foreseen from the questionnaires alone (no
    export read). `instruments`: the waves that will have responses, by wave; `unrecorded` as for
    foreseen_unstated. None when every change of wording is stated."""
    unstated, signatures = foreseen_unstated(catalogue, instruments, derivations, unrecorded)
    return unstated_message(unstated, catalogue, signatures) if unstated else None


def foreseen_unstated(catalogue: Catalogue, instruments: dict[int, Instrument], derivations: Derivations,
                      unrecorded: Iterable[int] = ()) -> tuple[list[tuple[Indicator, int, int]], Signatures]:
    """The (indicator, before, after) pairs change_rows would find without a statement, and the
    question signatures: each wave's questions written as a load writes them (catalogue_frames), in
    a database in memory, and compared as the run compares the stored ones. `unrecorded`: the waves
    a warehouse made before stored before it kept who is asked and units (unrecorded_waves)."""
    from pipeline.load import _write_catalogue, ensure_schema, mark_unrecorded

    with duckdb.connect() as con:
        ensure_schema(con)
        for instrument in instruments.values():
            # a wave whose rate year is not set yet has none: the signature does not read it
            derived = [replace(a.concept, reference_year=a.concept.reference_year or 0)
                       for a in derived_concepts(instrument, derivations, need_rates=False)]
            _write_catalogue(con, instrument, derived)
        mark_unrecorded(con, set(unrecorded))
        signatures = question_signatures(con)
    unstated = []
    for indicator in catalogue.indicators:
        waves = [w for w in sorted(signatures) if _available(indicator, set(signatures[w]), catalogue)]
        unstated += [(indicator, before, after) for before, after in zip(waves, waves[1:])
                     if comparability_of(indicator, catalogue, before, after, signatures) is None]
    return unstated, signatures


def unstated_message(unstated: list[tuple[Indicator, int, int]], catalogue: Catalogue,
                      signatures: Signatures) -> str:
    """Why the run stops (and status says it would): each indicator missing a statement, then what
    changed in each question it uses, so the analyst can judge without comparing the files by hand."""
    lines = [
        f"{catalogue.path}: {len(unstated)} indicator(s) use a question asked differently in two waves (wording, "
        "answers, items, who is asked or unit differ) without saying whether their figures still compare. Add to "
        "each indicator named below: comparability: [{waves: [BEFORE, AFTER], status: comparable, comparable_with_caveat or "
        "not_comparable, note: why}]"
    ]
    changes: dict[tuple[str, int, int], None] = {}  # each question once, however many indicators use it
    for indicator, before, after in unstated:
        changed = changed_concepts(indicator, catalogue, before, after, signatures)
        changes.update(dict.fromkeys((c, before, after) for c in changed))
        lines.append(f"  {indicator.id}: {', '.join(changed)} asked differently in {before} and {after}: "
                     f"comparability: [{{waves: [{before}, {after}], status: ..., note: ...}}]")
    lines.append(f"{WHAT_CHANGED} (English wording and answers, who is asked and units are compared; {REMOVED_MARK} "
                 f"words were removed, {ADDED_MARK} words added):")
    for concept, before, after in changes:
        score = next((s for s, d in catalogue.scores.items() if concept in d.items), None)
        item = f", an item of {score}" if score else ""
        lines.append(f"  {concept} ({before} -> {after}{item}):")
        described = describe_change(signatures.get(before, {}).get(concept), signatures.get(after, {}).get(concept),
                                    before, after)
        lines += [f"    {line}" for line in described]
    return "\n".join(lines)


# --- what changed between two waves' ways of asking a question -----------------------------------

WHAT_CHANGED = "What changed"
# Word changes marked as `git diff --word-diff` marks them: plain characters that read in any terminal.
REMOVED_MARK, ADDED_MARK = "[-...-]", "{+...+}"
CONTEXT_WORDS = 6  # unchanged words shown on each side of a change; the rest become "..."
CHANGED_WORDS = 12  # a longer run of removed or added words is shortened in its middle
LABEL_CHARS = 60  # an answer's wording longer than this is shortened
COSMETIC = "only punctuation/capitals/spaces changed: most likely `comparable`"


def describe_change(old: Asked | None, new: Asked | None, before: int, after: int) -> list[str]:
    """What differs between two waves' ways of asking one concept, a line each. Every field that
    makes two signatures unequal is described, so a difference never reads as nothing."""
    if old is None:
        return [f"added in {after} (not asked in {before})"]
    if new is None:
        return [f"removed in {after} (asked in {before}, not in {after})"]
    lines = []
    if old.kind != new.kind:
        lines.append(f"question type: {old.kind} -> {new.kind}")
    if old.label != new.label:
        lines.append(f"wording: {text_change(old.label, new.label)}")
    lines += _answer_changes(old.answers, new.answers)
    if _differ(old, new, "asked_of"):
        lines.append(f"who is asked: in {before} {old.asked_of_words}; in {after} {new.asked_of_words}")
    if _differ(old, new, "unit"):
        lines.append(f"unit: {old.unit or 'none'} -> {new.unit or 'none'}")
    lines += _read_changes(old, new, before, after)
    if not lines and old != new:  # cannot happen while the fields above are all Asked compares
        lines.append("asked differently in a way this message cannot describe: compare the two instrument.yaml files")
    if lines and only_cosmetic(old, new):
        lines.append(COSMETIC)
    return lines


def text_change(old: str, new: str) -> str:
    """A word diff of two wordings, shortened around the changes."""
    if old.split() == new.split():  # the words are the same: only spaces or line breaks moved
        return f"only spaces changed: {_clip(new.split(), 2 * CONTEXT_WORDS)}"
    old_words, new_words = old.split(), new.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(_context(old_words[i1:i2], head=i1 > 0, tail=i2 < len(old_words)))
            continue
        if i2 > i1:
            parts.append(f"[-{_clip(old_words[i1:i2], CHANGED_WORDS)}-]")
        if j2 > j1:
            parts.append(f"{{+{_clip(new_words[j1:j2], CHANGED_WORDS)}+}}")
    return " ".join(p for p in parts if p)


def _context(words: list[str], head: bool, tail: bool) -> str:
    """Unchanged words between changes: only the few next to a change (`head`: one comes before,
    `tail`: one comes after)."""
    keep_head, keep_tail = CONTEXT_WORDS * head, CONTEXT_WORDS * tail
    if len(words) <= keep_head + keep_tail + 3:  # "..." for fewer than 4 words hides nothing worth hiding
        return " ".join(words)
    return " ".join([*words[:keep_head], "...", *words[len(words) - keep_tail:]])


def _clip(words: list[str], most: int) -> str:
    if len(words) <= most:
        return " ".join(words)
    half = most // 2
    return " ".join([*words[:half], "...", *words[-half:]])


def _label(text: str) -> str:
    return f'"{text}"' if len(text) <= LABEL_CHARS else f'"{text[:LABEL_CHARS - 3].rstrip()}..."'


def _answer_changes(old: tuple[Answer, ...], new: tuple[Answer, ...]) -> list[str]:
    """Answer options added, removed, reworded, given other points or another meaning, by code."""
    was, now = {a.code: a for a in old}, {a.code: a for a in new}
    lines = []
    for code in sorted(was.keys() | now.keys(), key=code_order):
        a, b = was.get(code), now.get(code)
        if a is None:
            lines.append(f"answer {code} added: {_label(b.label)}")
        elif b is None:
            lines.append(f"answer {code} removed: {_label(a.label)}")
        else:
            if a.label != b.label:
                lines.append(f"answer {code} reworded: {_label(a.label)} -> {_label(b.label)}")
            if a.score != b.score:
                lines.append(f"answer {code} {_label(b.label)} points: {_points(a.score)} -> {_points(b.score)}")
            if a.missing != b.missing:
                meaning = "now means" if b.missing else "no longer means"
                lines.append(f"answer {code} {_label(b.label)} {meaning} \"no answer\" (missing)")
    return lines


def _points(score: float | None) -> str:
    return "none" if score is None else f"{score:g}"


def _read_changes(old: Asked, new: Asked, before: int, after: int) -> list[str]:
    """A derived answer: what changed in the questions it is worked out from."""
    if old.reads == new.reads:
        return []
    if old.reads is None or new.reads is None:
        derived = after if new.reads is not None else before
        return [f"a derived answer (surveys/derived.yaml) in {derived} only"]
    lines = []
    if old.read_names != new.read_names:
        lines.append(f"worked out from {', '.join(new.read_names)} (in {before}: {', '.join(old.read_names)})")
    for name, read_old, read_new in zip(new.read_names, old.reads, new.reads):
        if read_old != read_new:
            lines.append(f"worked out from {name}, which changed:")
            lines += [f"  {line}" for line in describe_change(read_old, read_new, before, after)]
    if len(old.reads) != len(new.reads) and not lines:
        lines.append(f"worked out from {len(new.reads)} questions (in {before}: {len(old.reads)})")
    return lines


def only_cosmetic(old: Asked | None, new: Asked | None) -> bool:
    """Whether two ways of asking differ at most in the punctuation, capitals or spaces of their
    wording (the question's and its answers') and unit: the same codes, points and meanings."""
    if old is None or new is None or old.kind != new.kind or plain_text(old.label) != plain_text(new.label):
        return False
    if _differ(old, new, "asked_of"):  # other people
        return False
    if _differ(old, new, "unit") and plain_text(old.unit or "") != plain_text(new.unit or ""):  # another scale
        return False
    if [(a.code, a.score, a.missing) for a in old.answers] != [(a.code, a.score, a.missing) for a in new.answers]:
        return False
    if any(plain_text(a.label) != plain_text(b.label) for a, b in zip(old.answers, new.answers)):
        return False
    if old.reads is None or new.reads is None:
        return old.reads is None and new.reads is None
    return len(old.reads) == len(new.reads) and all(
        a == b or only_cosmetic(a, b) for a, b in zip(old.reads, new.reads))


def _change(p: Any, verdict: Comparability) -> dict[str, Any]:
    change = low = high = math.nan
    if verdict.status != "not_comparable":
        if p.kind == "proportion":
            low, high = (100.0 * x for x in newcombe_interval(int(p.count), int(p.n), int(p.count_before), int(p.n_before)))
            change = 100.0 * (int(p.count) / int(p.n) - int(p.count_before) / int(p.n_before))
        else:
            low, high = welch_interval(p.estimate, p.sd, int(p.n), p.estimate_before, p.sd_before, int(p.n_before))
            change = p.estimate - p.estimate_before
    statement = NOT_COMPARABLE if verdict.status == "not_comparable" else _verdict(low, high, CHANGE_UP, CHANGE_DOWN)
    return dict(
        indicator_id=p.indicator_id, wave=p.wave, previous_wave=p.wave_before, breakdown=p.breakdown,
        group_code=p.group_code, group_label=p.group_label, comparability=verdict.status,
        comparability_note=verdict.note.strip(), n=int(p.n), estimate=p.estimate, previous_n=int(p.n_before),
        previous_estimate=p.estimate_before, change=change, change_low=low, change_high=high, statement=statement,
        suppressed_now=bool(p.suppressed), suppressed_before=bool(p.suppressed_before),
    )


CHANGE_COLUMNS = ["indicator_id", "wave", "previous_wave", "breakdown", "group_code", "group_label", "comparability",
                  "comparability_note", "n", "estimate", "previous_n", "previous_estimate", "change", "change_low",
                  "change_high", "statement"]


# --- storing -------------------------------------------------------------------------------------


def score_rows(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> list[tuple]:
    """indicator_scores: every item of every score, with its wording and points as the loaded
    questionnaires give them (the choices table) or as the score sets them (`points`). Kept with
    the figures, so what a score is made of is read from the warehouse, like the catalogue."""
    wording: dict[str, dict[int, str]] = {}
    for wave, concept, label in con.execute("SELECT wave, concept, label_en FROM concepts ORDER BY wave").fetchall():
        wording.setdefault(concept, {})[wave] = label
    choices: dict[str, dict[int, list[tuple]]] = {}
    for wave, concept, code, label, points, missing in con.execute(
            "SELECT wave, concept, code, label_en, score, missing FROM choices ORDER BY wave, concept, "
            "TRY_CAST(code AS INTEGER) NULLS LAST, code").fetchall():
        choices.setdefault(concept, {}).setdefault(wave, []).append((code, label, points, missing))
    rows, order = [], 0
    for name, score in catalogue.scores.items():
        for item in score.items:
            asked = wording.get(item, {})
            points = {wave: _points_text(answers, score.points) for wave, answers in choices.get(item, {}).items()}
            rows.append((name, score.title, score.definition.strip(), item, _by_wave(asked), _by_wave(points),
                         ", ".join(str(w) for w in sorted(asked)), score.item_max, score.min_items,
                         _scaling_text(score), order))
            order += 1
    return rows


def _points_text(answers: list[tuple], points: dict[str, float] | None) -> str:
    """One wave's answers to an item with their points: the score's own, else the questionnaire's.
    An answer without points is not counted (as _item_points computes it)."""
    parts = []
    for code, label, asked_points, missing in answers:
        value = points.get(code) if points is not None else (None if missing else asked_points)
        parts.append(f"{code} ({label}) = {_number(value)} points" if value is not None
                     else f"{code} ({label}) not counted")
    return ", ".join(parts)


def _by_wave(texts: dict[int, str]) -> str:
    # One text when every wave says the same (the usual case), else each wave's.
    if len(set(texts.values())) <= 1:
        return next(iter(texts.values()), "")
    return "; ".join(f"in {wave}: {text}" for wave, text in sorted(texts.items()))


def _scaling_text(score: Score) -> str:
    # The words of _score_sql: 100 x the average points of the items answered / item_max.
    return (f"The average points of the items answered, divided by {_number(score.item_max)} (the most an item "
            f"gives) and multiplied by 100, so from 0 to 100; someone who answered fewer than {score.min_items} "
            f"of the {len(score.items)} items has no score. Items a year did not ask count as not answered.")


ESTIMATE_COLUMNS = ["indicator_id", "wave", "breakdown", "group_code", "group_label", "n", "count", "estimate",
                    "ci_low", "ci_high", "suppressed", "suppression"]


def _store(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, kinds: dict[str, str],
    estimates: pd.DataFrame, gaps: pd.DataFrame, changes: pd.DataFrame, group_labels: dict[tuple[str, str], str],
) -> None:
    for table, frame, columns in (
        ("indicator_estimates", estimates, ESTIMATE_COLUMNS),
        ("indicator_gaps", gaps, GAP_COLUMNS + ["suppressed", "suppression"]),
        ("indicator_changes", changes, CHANGE_COLUMNS + ["suppressed", "suppression"]),
    ):
        con.execute(f"DELETE FROM {table}")
        if not frame.empty:
            con.register("incoming", frame[columns])
            con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM incoming")
            con.unregister("incoming")
    # a merged code a rule names is labelled even in waves whose stored answers were not merged
    labels = group_labels | {
        (concept, code): label
        for concept, code, label in con.execute(
            "SELECT concept, code, label_en FROM choices "
            "QUALIFY row_number() OVER (PARTITION BY concept, code ORDER BY wave DESC) = 1"
        ).fetchall()
    }
    waves = estimates.groupby("indicator_id")["wave"].unique().to_dict() if not estimates.empty else {}
    derived = derivation_texts(con.execute(
        "SELECT concept, wave, reads, reference, reference_year, note FROM derived_concepts").fetchall())
    rows = [
        (i.id, i.title, i.domain, i.kind, i.unit, i.definition.strip(), i.population_text, ", ".join(i.questions),
         i.caveats.strip(), order, population_rule_text(i, kinds, labels, _derived_notes(i, catalogue, derived)),
         describe_rule(i.condition, kinds, labels) if i.condition is not None else "",
         i.value or "", ", ".join(catalogue.breakdowns_of(i)), catalogue.min_n_of(i),
         comparability_text(i, catalogue.population_changes, waves.get(i.id, [])),
         ", ".join(str(w) for w in sorted(waves.get(i.id, []))))
        for order, i in enumerate(catalogue.indicators)
    ]
    breakdowns = [(name, b.title, b.definition.strip(), groups_text(b, kinds, labels), order)
                  for order, (name, b) in enumerate(catalogue.breakdowns.items())]
    con.execute("DELETE FROM indicator_catalogue")
    con.execute("DELETE FROM indicator_breakdowns")
    con.execute("DELETE FROM indicator_scores")
    if scores := score_rows(con, catalogue):
        con.executemany("INSERT INTO indicator_scores (score, title, definition, item, wording, points, waves, "
                        "item_max, min_items, scaling, sort_order) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", scores)
    if rows:
        con.executemany(
            "INSERT INTO indicator_catalogue (indicator_id, title, domain, kind, unit, definition, population, "
            "questions, caveats, sort_order, population_rule, condition_rule, value, breakdowns, min_n, "
            "comparability, waves) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    if breakdowns:
        con.executemany("INSERT INTO indicator_breakdowns VALUES (?, ?, ?, ?, ?)", breakdowns)
    con.execute(
        "INSERT OR REPLACE INTO warehouse_meta VALUES ('indicators_sha256', ?)", [catalogue.sha256]
    )
    # only once a wave states a population change: a warehouse made before needs no recomputing
    con.execute("DELETE FROM warehouse_meta WHERE key = 'population_sha256'")
    if catalogue.population_changes:
        con.execute("INSERT INTO warehouse_meta VALUES ('population_sha256', ?)", [population_sha256(catalogue)])
