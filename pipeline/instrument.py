"""The survey instrument, as data: load and validate `surveys/<wave>/instrument.yaml`.

An instrument lists the questions of one wave. Each question has a stable concept id (what links
waves), a type, bilingual labels, choices with codes, a required flag, skip logic, a disclosure
class, and aliases: the column names survey platforms use for it. Everything downstream (ingest,
validation, de-identification, the warehouse, indicators) is driven by this file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONCEPT_ID = r"^[a-z][a-z0-9_]*$"


class InstrumentError(ValueError):
    """An instrument file that cannot be used; the message names the file and the field."""


class QuestionType(str, Enum):
    single = "single"  # one choice
    multiple = "multiple"  # any number of choices
    likert = "likert"  # one choice on an ordered scale
    numeric = "numeric"
    text = "text"  # open answer: scrubbed before storage
    date = "date"


class Disclosure(str, Enum):
    direct = "direct"  # identifies a person by itself: never stored
    quasi = "quasi"  # identifies in combination: generalised, k-anonymity
    sensitive = "sensitive"  # harmful if linked to a person: l-diversity
    none = "none"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Labels(Strict):
    en: str
    fr: str


class Choice(Strict):
    code: str
    label: Labels
    # Points this answer contributes to a scored scale (e.g. the Employment Precarity Index).
    score: float | None = None
    # Answers that mean "no answer given" (prefer not to say, don't know): never count as a yes or no.
    missing: bool = False

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> str:
        return str(value)


class Range(Strict):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class Condition(Strict):
    """Skip logic: `question` answered with one of `in` (any selected, for multiple choice)."""

    question: str
    in_: list[str] = Field(alias="in")

    @field_validator("in_", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class AllOf(Strict):
    all: list["ShowIf"]


class AnyOf(Strict):
    any: list["ShowIf"]


ShowIf = Annotated[Union[Condition, AllOf, AnyOf], Field(union_mode="left_to_right")]
AllOf.model_rebuild()
AnyOf.model_rebuild()


class Question(Strict):
    id: str = Field(pattern=CONCEPT_ID)
    type: QuestionType
    label: Labels
    choices: list[Choice] | str | None = None  # a list, or the name of a shared choice set
    required: bool = False
    show_if: ShowIf | None = None
    disclosure: Disclosure = Disclosure.none
    range: Range | None = None
    unit: str | None = None
    aliases: list[str] = Field(default_factory=list)
    # Column names that only one platform uses, by platform (limesurvey, surveymonkey, kobo, ...):
    # e.g. `{limesurvey: ["Q21[SQ001]"]}` when that export names the column differently.
    platform_aliases: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("aliases", mode="before")
    @classmethod
    def _aliases_as_text(cls, value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("platform_aliases", mode="before")
    @classmethod
    def _platform_aliases_as_text(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {str(k): [str(v) for v in vs] if isinstance(vs, list) else [str(vs)] for k, vs in value.items()}

    def aliases_for(self, platform: str) -> list[str]:
        """Every name this question's column may have in an export of `platform`."""
        return [self.id, *self.aliases, *self.platform_aliases.get(platform, [])]

    @model_validator(mode="after")
    def _type_rules(self) -> "Question":
        choice_types = {QuestionType.single, QuestionType.multiple, QuestionType.likert}
        if self.type in choice_types and not self.choices:
            raise ValueError(f"question {self.id!r} is {self.type.value} but has no choices")
        if self.type not in choice_types and self.choices:
            raise ValueError(f"question {self.id!r} is {self.type.value} and cannot have choices")
        if self.range is not None and self.type is not QuestionType.numeric:
            raise ValueError(f"question {self.id!r}: only numeric questions take a range")
        return self


class Section(Strict):
    id: str = Field(pattern=CONCEPT_ID)
    title: Labels
    questions: list[Question]


class CollectionWindow(Strict):
    start: dt.date
    end: dt.date


class Instrument(Strict):
    wave: int = Field(ge=2000, le=2100)
    title: Labels
    languages: list[Literal["en", "fr"]]
    collection_window: CollectionWindow
    # Who is in scope: each named condition must hold, or the response is excluded with that name
    # as its reason (e.g. no_consent, ineligible). Checked in the order written.
    inclusion: dict[str, Condition] = Field(default_factory=dict)
    choice_sets: dict[str, list[Choice]] = Field(default_factory=dict)
    sections: list[Section]
    # Filled in by load_instrument: the file it came from and a hash of its bytes.
    source: str = ""
    sha256: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "Instrument":
        seen: set[str] = set()
        aliases: dict[str, str] = {}
        for question in self.questions:
            if question.id in seen:
                raise ValueError(f"concept id {question.id!r} is used twice")
            seen.add(question.id)
            if isinstance(question.choices, str) and question.choices not in self.choice_sets:
                raise ValueError(
                    f"question {question.id!r} uses choice set {question.choices!r}, "
                    f"which is not under choice_sets (known: {', '.join(sorted(self.choice_sets))})"
                )
            for alias in [question.id, *question.aliases]:
                other = aliases.setdefault(alias.lower(), question.id)
                if other != question.id:
                    raise ValueError(f"alias {alias!r} names both {other!r} and {question.id!r}")
        for platform in {p for q in self.questions for p in q.platform_aliases}:
            named: dict[str, str] = {}
            for question in self.questions:
                for alias in question.aliases_for(platform):
                    other = named.setdefault(alias.lower(), question.id)
                    if other != question.id:
                        raise ValueError(
                            f"{platform} alias {alias!r} names both {other!r} and {question.id!r}"
                        )
        rules = [(q.id, c) for q in self.questions for c in _conditions(q.show_if)]
        rules += [(f"inclusion {name}", c) for name, c in self.inclusion.items()]
        for owner, condition in rules:
            if condition.question not in seen:
                raise ValueError(
                    f"{owner}: the condition refers to unknown question {condition.question!r}"
                )
            known = {c.code for c in self.choices_of(self.question(condition.question))}
            unknown = [code for code in condition.in_ if known and code not in known]
            if unknown:
                raise ValueError(
                    f"{owner}: the condition uses codes {unknown} that "
                    f"{condition.question!r} does not have"
                )
        return self

    @property
    def questions(self) -> list[Question]:
        return [q for section in self.sections for q in section.questions]

    def question(self, concept_id: str) -> Question:
        for question in self.questions:
            if question.id == concept_id:
                return question
        raise KeyError(concept_id)

    def choices_of(self, question: Question) -> list[Choice]:
        if question.choices is None:
            return []
        if isinstance(question.choices, str):
            return self.choice_sets[question.choices]
        return question.choices

    def by_disclosure(self, *classes: Disclosure) -> list[Question]:
        return [q for q in self.questions if q.disclosure in classes]

    def alias_map(self) -> dict[str, str]:
        """Lower-cased platform column name (or concept id) -> concept id."""
        mapping: dict[str, str] = {}
        for question in self.questions:
            for alias in [question.id, *question.aliases]:
                mapping[alias.lower()] = question.id
        return mapping


def _conditions(show_if: ShowIf | None) -> list[Condition]:
    if show_if is None:
        return []
    if isinstance(show_if, Condition):
        return [show_if]
    parts = show_if.all if isinstance(show_if, AllOf) else show_if.any
    return [c for part in parts for c in _conditions(part)]


def conditions_of(question: Question) -> list[Condition]:
    """Every elementary condition in a question's skip logic."""
    return _conditions(question.show_if)


def code_order(code: str) -> tuple:
    """Answer codes in questionnaire (numeric) order, text codes after."""
    return (0, int(code), code) if code.isdigit() else (1, 0, code)


def canonical_show_if(show_if: ShowIf) -> dict[str, Any]:
    """Skip logic as plain data that is equal when the meaning is: each condition's codes sorted and
    once, the parts of an all/any sorted and once, an all/any inside an all/any of the same kind
    spread into it, the conditions of an `any` on one question made one (either code is one of
    them), an all/any of one part that part. How the YAML was written (flow or block style,
    quotes, the order of codes) does not count."""
    if isinstance(show_if, Condition):
        return {"question": show_if.question, "in": sorted(set(show_if.in_), key=code_order)}
    key = "all" if isinstance(show_if, AllOf) else "any"
    parts: list[dict[str, Any]] = []
    for part in map(canonical_show_if, getattr(show_if, key)):
        parts += part[key] if key in part else [part]
    if key == "any":  # not for `all`: of a multiple choice question, "1 and 2 selected" is not "1 or 2"
        codes: dict[str, set[str]] = {}
        for part in parts:
            if "question" in part:
                codes.setdefault(part["question"], set()).update(part["in"])
        parts = [p for p in parts if "question" not in p] + [
            {"question": q, "in": sorted(c, key=code_order)} for q, c in codes.items()]
    # conditions first, by the question they depend on (the order they are described in), then groups
    unique = {(p.get("question", "\uffff"), json.dumps(p, sort_keys=True)): p for p in parts}
    ordered = [unique[k] for k in sorted(unique)]
    return ordered[0] if len(ordered) == 1 else {key: ordered}


def show_if_text(show_if: ShowIf | None) -> str:
    """Who is asked a question, as the warehouse stores it: "" for everyone, else the canonical
    skip logic as compact JSON (two waves ask the same people exactly when these are equal)."""
    if show_if is None:
        return ""
    return json.dumps(canonical_show_if(show_if), sort_keys=True, separators=(",", ":"))


def plain_text(text: str) -> str:
    """A wording without its punctuation, capitals and spaces: equal when only those changed."""
    return "".join(ch for ch in text.casefold() if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def unit_text(unit: str | None) -> str:
    """A numeric answer's unit as stored: "" for none; spaces do not count."""
    return " ".join((unit or "").split())


Model = TypeVar("Model", bound=BaseModel)
# libyaml's safe loader when PyYAML was built with it: same results, about 6x faster on instruments.
class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader; a date that cannot exist (2025-30-05) is a YAML error with its line, not a ValueError."""


def _timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a date ({exc}); write dates as YYYY-MM-DD", node.start_mark) from None


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    """A mapping that names a key twice is an error with both lines: YAML would keep the last one
    silently, and a second `inclusion:` or `population_change:` typed lower down would quietly
    replace the first (merge keys, `<<:`, may still be overridden)."""
    first: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        if key in first:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"{key!r} is written twice (first on line {first[key].line + 1}): keep one", key_node.start_mark)
        first[key] = key_node.start_mark
    return yaml.constructor.SafeConstructor.construct_yaml_map(loader, node)


_SafeLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
_SafeLoader.add_constructor("tag:yaml.org,2002:map", _mapping)
SAFE_LOADER = _SafeLoader


def parse_yaml(text: str | bytes) -> Any:
    """yaml.safe_load, with libyaml when available (every YAML file the pipeline reads goes through here)."""
    return yaml.load(text, Loader=SAFE_LOADER)


class DefinitionError(ValueError):
    """A definition file under surveys/ that cannot be read as YAML (the message names it and the line)."""


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message without the stream name it gives text it was handed (the caller names the file)."""
    return str(exc).replace('in "<byte string>", ', "").replace('in "<unicode string>", ', "")


def read_yaml(path: str | Path, error: type[Exception] = DefinitionError, what: str = "") -> Any:
    """A YAML file as data; unreadable, invalid or with a key written twice, `error` names the file and line."""
    return _read_yaml_bytes(Path(path), error, what)[0]


def _read_yaml_bytes(path: Path, error: type[Exception], what: str) -> tuple[Any, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what + ' ' if what else ''}file ({exc.strerror})") from None
    try:
        return parse_yaml(raw), raw
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {yaml_problem(exc)}") from None


def read_yaml_model(path: str | Path, model: type[Model], error: type[Exception], what: str,
                    expected: str) -> tuple[Model, bytes]:
    """Read a YAML definition file into a pydantic model, with the raw bytes (for hashing).

    Every failure is `error` with one message that names the file and, for content errors, the
    place in it: "cannot read", "not valid YAML", "expected a mapping with ...", "invalid <what>".
    """
    path = Path(path)
    data, raw = _read_yaml_bytes(path, error, what)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping with {expected}")
    try:
        return model.model_validate(data), raw
    except ValidationError as exc:
        raise error(f"{path}: invalid {what}\n{_explain(exc, data)}") from None


def load_instrument(path: str | Path) -> Instrument:
    """Read and validate an instrument YAML file; errors name the file and the field."""
    instrument, raw = read_yaml_model(path, Instrument, InstrumentError, "instrument", "wave, title, sections, ...")
    return instrument.model_copy(update={"source": str(path), "sha256": hashlib.sha256(raw).hexdigest()})


def _explain(exc: ValidationError, data: dict) -> str:
    """Turn pydantic's error list into lines a person can act on: where, then what."""
    lines = []
    for error in exc.errors():
        lines.append(f"  - at {_readable_location(error['loc'], data)}: {error['msg']}")
    return "\n".join(dict.fromkeys(lines))  # union branches repeat the same place


def _readable_location(loc: tuple, data: Any) -> str:
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            ident = node.get("id") if isinstance(node, dict) else None
            parts.append(f"[{key}]" + (f" (id {ident})" if ident else ""))
        elif isinstance(key, str) and isinstance(node, dict) and key in node:
            node = node[key]
            parts.append(f".{key}")
        else:
            parts.append(f".{key}")  # a union branch name or a missing key
    return "".join(parts).lstrip(".") or "top level"


def instrument_path(surveys_dir: Path, wave: int) -> Path:
    return surveys_dir / str(wave) / "instrument.yaml"


def available_waves(surveys_dir: Path) -> list[int]:
    return sorted(
        int(p.parent.name) for p in surveys_dir.glob("*/instrument.yaml") if p.parent.name.isdigit()
    )
