"""Extra validation rules and data-quality settings of one wave: `surveys/<wave>/rules.yaml`.

The instrument generates most checks by itself (codes, ranges, required answers, skip logic). This
file adds what the instrument cannot say: rules across questions (`rules:`), how a person answering
twice is recognised (`duplicates:`), the thresholds of the data-quality flags (`quality:`), and
how the wave's exports write dates when they cannot show it themselves (`date_order:`).
The file is optional: without it a wave gets no cross-question rules and the defaults below.
The format is documented in the comments of surveys/2025/rules.yaml.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.instrument import (
    CONCEPT_ID,
    Instrument,
    InstrumentError,
    QuestionType,
    ShowIf,
    Strict,
    _conditions,
    _explain,
    available_waves,
    parse_yaml,
    yaml_problem,
)

RULES_FILE = "rules.yaml"
# Names the pipeline gives its own flags and checks; a declared rule cannot reuse them.
RESERVED_IDS = {
    "speeder", "straightlining", "mostly_empty", "invalid_code", "not_a_number", "out_of_range",
    "not_a_date", "required_missing", "skip_logic", "outside_collection_window",
}


class RulesError(InstrumentError):
    """A rules file that cannot be used; the message names the file and the field."""


class Requirement(Strict):
    """What must hold of one question when a rule's `when` holds. Exactly one kind of test:
    a numeric bound (`at_least` and/or `at_most`), allowed codes (`in`), forbidden codes (`not_in`),
    or `answered: true|false`. An unanswered question passes every test but `answered: true`."""

    question: str
    at_least: float | None = None
    at_most: float | None = None
    in_: list[str] | None = Field(None, alias="in")
    not_in: list[str] | None = None
    answered: bool | None = None

    @field_validator("in_", "not_in", mode="before")
    @classmethod
    def _codes_as_text(cls, value: object) -> object:
        if value is None:
            return None
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    @model_validator(mode="after")
    def _one_kind(self) -> "Requirement":
        kinds = [
            name
            for name, given in [
                ("at_least/at_most", self.at_least is not None or self.at_most is not None),
                ("in", self.in_ is not None),
                ("not_in", self.not_in is not None),
                ("answered", self.answered is not None),
            ]
            if given
        ]
        if len(kinds) != 1:
            raise ValueError(
                "require needs exactly one test (at_least/at_most, in, not_in or answered); "
                f"found {', '.join(kinds) or 'none'}"
            )
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"at_least {self.at_least} is above at_most {self.at_most}")
        return self

    @property
    def codes(self) -> list[str]:
        return self.in_ or self.not_in or []


class CrossRule(Strict):
    id: str = Field(pattern=CONCEPT_ID)
    when: ShowIf | None = None  # the instrument's show_if syntax; absent = every row
    require: Requirement
    message: str
    # quarantine: the row is set aside (a reason code per failed rule); flag: reported only.
    severity: Literal["quarantine", "flag"] = "quarantine"


class SameEmail(Strict):
    """Two responses with the same email are one person answering twice when they agree on at
    least `min_agreement` of the coded questions either of them answered."""

    min_agreement: float = Field(0.9, gt=0, le=1)


class SameIp(Strict):
    """Two responses from the same IP address are one person answering twice only when every coded
    answer is identical, there are at least `min_answers` of them, and the second response started
    after the first ended (at most `max_days_apart` days later; None: any time in the wave). Many
    people share an address (an agency network, a drop-in centre), so this is stricter than the
    email rule."""

    min_answers: int = Field(15, ge=1)
    max_days_apart: float | None = Field(None, gt=0)


class Duplicates(Strict):
    same_email: SameEmail = SameEmail()
    same_ip: SameIp = SameIp()


class Speeder(Strict):
    """Durations under `fraction_of_median` of the median duration of the file's in-scope
    responses. With fewer than `min_responses` durations the median says little, so the threshold
    becomes `seconds_per_question` times the number of questions of the instrument."""

    fraction_of_median: float = Field(1 / 3, gt=0, lt=1)
    min_responses: int = Field(20, ge=1)
    seconds_per_question: float = Field(3, gt=0)


class Straightlining(Strict):
    """The same answer to every item of a Likert grid with at least `min_items` items."""

    min_items: int = Field(4, ge=2)


class MostlyEmpty(Strict):
    """Fewer than `min_share_answered` of the questions shown to the respondent answered."""

    min_share_answered: float = Field(0.5, gt=0, le=1)


class Quality(Strict):
    speeder: Speeder = Speeder()
    straightlining: Straightlining = Straightlining()
    mostly_empty: MostlyEmpty = MostlyEmpty()


# How dates that are not year first (03/06/2025) are written in the wave's exports: a Google
# Sheet writes them in its locale (month first in the US, day first in Canada or the UK), which
# nothing in the file says when no day is above 12. None: worked out from the file (see
# validate._timestamps).
DateOrder = Literal["day_first", "month_first"]


class PopulationChange(Strict):
    """The analyst's word on a change of who is in scope (the instrument's `inclusion:` rules) since
    the wave before (`since`): whether this wave's figures still compare with that wave's. It
    applies to every indicator's change across the two (as an indicator's `comparability:` does).
    `note_fr`: the note in French, for the French report (which names it when it is missing, as it
    does any missing translation: pipeline/translations.py)."""
    since: int
    status: Literal["comparable", "comparable_with_caveat", "not_comparable"]
    note: str
    note_fr: str = ""

    @model_validator(mode="after")
    def _explained(self) -> "PopulationChange":
        if not self.note.strip():
            raise ValueError("population_change needs a note saying who is in scope now and why the figures "
                             "do or do not compare")
        return self


class WaveRules(Strict):
    rules: list[CrossRule] = Field(default_factory=list)
    duplicates: Duplicates = Duplicates()
    quality: Quality = Quality()
    date_order: DateOrder | None = None
    # Who is in scope changed since the wave before: do the figures still compare (pipeline/population.py)?
    population_change: PopulationChange | None = None
    source: str = ""  # filled in by load_wave_rules
    sha256: str = ""

    @model_validator(mode="after")
    def _unique_ids(self) -> "WaveRules":
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in RESERVED_IDS:
                raise ValueError(f"rule id {rule.id!r} is a name the pipeline uses for its own checks")
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    def by_severity(self, severity: str) -> list[CrossRule]:
        return [r for r in self.rules if r.severity == severity]


def rules_path(instrument: Instrument) -> Path | None:
    return Path(instrument.source).with_name(RULES_FILE) if instrument.source else None


def load_wave_rules(instrument: Instrument) -> WaveRules:
    """The rules file beside the instrument, checked against it; defaults when there is none."""
    path = rules_path(instrument)
    if path is None or not path.exists():
        return WaveRules()
    raw = path.read_bytes()
    try:
        data = parse_yaml(raw) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{path}: expected a mapping with rules, duplicates and quality")
    try:
        rules = WaveRules.model_validate(data)
    except ValidationError as exc:
        raise RulesError(f"{path}: invalid rules\n{_explain(exc, data)}") from None
    for number, rule in enumerate(rules.rules):
        problem = _mismatch(rule, instrument)
        if problem:
            raise RulesError(f"{path}: rules[{number}] (id {rule.id}): {problem}")
    stated = rules.population_change
    if stated is not None:
        # it applies to the changes from the wave before: it must name that one (not be copied from another wave)
        before = max((w for w in available_waves(path.parent.parent) if w < instrument.wave), default=None)
        if stated.since != before:
            raise RulesError(f"{path}: population_change: since: {stated.since}, but the wave before "
                             f"{instrument.wave} is {before}: write since: {before}, or remove the statement if it "
                             "was meant for another wave")
    return rules.model_copy(update={"source": str(path), "sha256": hashlib.sha256(raw).hexdigest()})


def _mismatch(rule: CrossRule, instrument: Instrument) -> str | None:
    """Why a rule cannot apply to this instrument (unknown question, code or test), or None."""
    known = {q.id for q in instrument.questions}
    for condition in _conditions(rule.when):
        if condition.question not in known:
            return f"when: unknown question {condition.question!r}"
        unknown = _unknown_codes(instrument, condition.question, condition.in_)
        if unknown:
            return f"when: {condition.question!r} has no codes {unknown}"
    target = rule.require
    if target.question not in known:
        return f"require: unknown question {target.question!r}"
    question = instrument.question(target.question)
    if (target.at_least is not None or target.at_most is not None) and question.type is not QuestionType.numeric:
        return f"require: at_least/at_most need a numeric question; {question.id!r} is {question.type.value}"
    if target.codes and not instrument.choices_of(question):
        return f"require: {question.id!r} has no choices to test with in/not_in"
    unknown = _unknown_codes(instrument, target.question, target.codes)
    if unknown:
        return f"require: {target.question!r} has no codes {unknown}"
    return None


def _unknown_codes(instrument: Instrument, concept: str, codes: list[str]) -> list[str]:
    known = {c.code for c in instrument.choices_of(instrument.question(concept))}
    return [code for code in codes if known and code not in known]
